"""Where a load puts a model, in words: expert layers in RAM, the split between devices.

Shared by the offload panel, the gauge and the offload sweep; Textual-free. The layer arithmetic
is llama.cpp's: with ``n_gpu_layers`` offloaded, the blocks from ``n_layer + 1 - n_gpu_layers``
on are on the GPU (the output layer counts as the last), and ``n_cpu_moe = N`` keeps the expert
tensors of blocks 0 .. N-1 in host memory, so the two ranges start at block 0 and overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

from tui_llm.engine.protocol import OffloadValue


def expert_layers_in_ram(n_layer: int, offloaded_layers: int, n_cpu_moe: OffloadValue) -> int:
    """How many blocks keep their expert weights in host memory (0 .. ``n_layer``).

    ``offloaded_layers`` is llama.cpp's count (0 .. ``n_layer + 1``, the output layer included);
    ``n_cpu_moe`` a block count or ``"all"``. Blocks left on the CPU keep their experts there too.
    """
    moe = n_layer if n_cpu_moe == "all" else max(0, min(int(n_cpu_moe), n_layer))
    gpu_blocks = max(0, min(n_layer, offloaded_layers - 1)) if offloaded_layers > 0 else 0
    return max(moe, n_layer - gpu_blocks)


def experts_text(n_layer: int, offloaded_layers: int, n_cpu_moe: OffloadValue) -> str:
    """``experts: CPU for 12/24 layers``, ``experts: all on the CPU`` or ``experts: with their
    layers`` (none kept in RAM by n_cpu_moe beyond the layers that are on the CPU anyway)."""
    in_ram = expert_layers_in_ram(n_layer, offloaded_layers, n_cpu_moe)
    if in_ram >= n_layer:
        return "experts: all on the CPU"
    if in_ram == 0:
        return "experts: on the GPU with their layers"
    return f"experts: CPU for {in_ram}/{n_layer} layers"


def n_cpu_moe_value(pending: int, n_layer: int) -> OffloadValue:
    """The ``LoadSettings.n_cpu_moe`` for a panel value: ``"all"`` at ``n_layer``."""
    return "all" if pending >= n_layer > 0 else max(0, pending)


def n_cpu_moe_count(value: OffloadValue, n_layer: int) -> int:
    """``LoadSettings.n_cpu_moe`` as a block count (``"all"`` is ``n_layer``)."""
    return n_layer if value == "all" else max(0, min(int(value), n_layer))


def placement_label(layers: int, total_layers: int, n_cpu_moe: OffloadValue) -> str:
    """A sweep row's placement: ``12``, ``all``, ``all, experts CPU 12``, ``all, experts CPU
    all`` (``total_layers`` is ``n_layer + 1``, llama.cpp's highest level)."""
    shown = "all" if layers >= total_layers else str(layers)
    if n_cpu_moe:
        return f"{shown}, experts CPU {n_cpu_moe}"
    return shown


class SplitSyntaxError(ValueError):
    """A split that cannot be read; ``str()`` says why."""


def parse_split(text: str, devices: int) -> tuple[float, ...]:
    """Proportions per device from ``1:3``, ``1,3`` or ``1 3``; empty means by free memory
    (``()``). Raises ``SplitSyntaxError`` for other text or a count other than ``devices``."""
    cleaned = text.replace(":", " ").replace(",", " ").replace("/", " ").split()
    if not cleaned:
        return ()
    try:
        parts = tuple(float(part) for part in cleaned)
    except ValueError:
        raise SplitSyntaxError(f"{text!r}: the split is numbers such as 1:3") from None
    if any(part < 0 or part != part or part == float("inf") for part in parts) or not any(parts):
        raise SplitSyntaxError(f"{text!r}: proportions of 0 or more, at least one above 0")
    if len(parts) != devices:
        raise SplitSyntaxError(f"{text!r}: one proportion per device ({devices} devices)")
    return parts


def split_text(split: Sequence[float]) -> str:
    """``1:3`` for (1.0, 3.0); ``by free memory`` for ``()``."""
    if not split:
        return "by free memory"
    return ":".join(f"{part:g}" for part in split)


def split_shares(split: Sequence[float], devices: int) -> tuple[float, ...]:
    """Each device's share (0..1) of the split; equal shares for ``()`` (llama.cpp then splits
    by free memory, which the shares do not know)."""
    if devices <= 0:
        return ()
    if not split or len(split) != devices or not sum(split):
        return tuple(1 / devices for _ in range(devices))
    total = sum(split)
    return tuple(part / total for part in split)
