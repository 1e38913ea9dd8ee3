"""Where llama.cpp puts each block and each tensor for one load: devices, splits, overrides.

Follows ``llama_model::load_tensors``: blocks ``n_layer + 1 - offload`` .. ``n_layer - 1`` and the
output layer go to the GPUs, cut between devices by the cumulative proportions of
``tensor_split`` (a block goes to the first device whose cumulative share exceeds its position
among the offloaded blocks); the input layer always stays on the CPU. Then the tensor overrides
(``-ot PATTERN=DEVICE``, first match wins, then ``--n-cpu-moe``'s patterns on the expert
tensors of the first N blocks) move single tensors elsewhere.

Device indexes: ``0 .. n_gpu - 1`` are the GPUs in llama.cpp's order, ``n_gpu`` is the CPU.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

# llama.cpp's --n-cpu-moe / --cpu-moe pattern for one block's expert matrices
EXPERT_TENSORS = r"ffn_(up|down|gate|gate_up)_(ch|)exps"


def expert_pattern(il: int) -> str:
    """The override pattern that keeps block ``il``'s expert matrices in host memory."""
    return rf"blk\.{il}\.{EXPERT_TENSORS}"


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def cumulative_splits(tensor_split: Sequence[float], n_gpu: int) -> tuple[float, ...]:
    """llama.cpp's split points: cumulative proportions, normalised to end at 1.

    An empty or all-zero ``tensor_split`` means equal shares (llama.cpp uses each device's free
    memory then; pass those as the split to follow it).
    """
    shares = [float(v) for v in tensor_split[:n_gpu]] + [0.0] * max(0, n_gpu - len(tensor_split))
    if not any(v > 0 for v in shares):
        shares = [1.0] * n_gpu
    total = 0.0
    out = []
    for value in shares:
        total += max(value, 0.0)
        out.append(total)
    return tuple(v / total for v in out)


def block_devices(n_layer: int, offload: int, splits: Sequence[float]) -> tuple[int, ...]:
    """Device of each block 0 .. n_layer (the last is the output layer); ``len(splits)`` = CPU.

    ``offload`` is llama.cpp's ``n_gpu_layers`` (values past ``n_layer + 1`` mean all).
    """
    n_gpu = len(splits)
    cpu = n_gpu
    if n_gpu == 0:
        return (cpu,) * (n_layer + 1)
    gpu_start = max(n_layer + 1 - offload, 0)
    act = min(offload, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < gpu_start or il - gpu_start >= act:
            out.append(cpu)
        else:
            position = (il - gpu_start) / act
            out.append(min(bisect.bisect_right(splits, position), n_gpu - 1))
    return tuple(out)


@dataclass(frozen=True)
class Layout:
    """One load's placement: each block's device, its experts' and KV cache's, the output's,
    and every tensor's (overrides applied)."""

    n_gpu: int
    layer_device: tuple[int, ...]  # blocks 0 .. n_layer-1
    output_device: int
    expert_device: tuple[int, ...]  # where each block's expert matrices are
    kv_device: tuple[int, ...]
    tensor_device: Mapping[str, int]

    @property
    def cpu(self) -> int:
        return self.n_gpu

    def compute_key(self) -> tuple[tuple[int, int, int], ...]:
        """Per block (device, experts' device, KV device), then the output's device."""
        blocks = tuple(zip(self.layer_device, self.expert_device, self.kv_device, strict=True))
        return (*blocks, (self.output_device, self.output_device, self.output_device))


def override_device(target: str, device_names: Sequence[str]) -> int | None:
    """The device index an override's target names ("CPU", "CUDA0", "RPC0[host:port]"),
    or None for a name no device has."""
    cpu = len(device_names)
    name = target.strip()
    if name.upper().startswith("CPU"):
        return cpu
    for index, device in enumerate(device_names):
        if name == device or device.startswith(name) or name.startswith(device):
            return index
    return None


def layout(
    *,
    n_layer: int,
    tensor_layers: Mapping[str, int | None],
    expert_tensors: frozenset[str],
    offload: int,
    splits: Sequence[float],
    n_cpu_moe: int,
    overrides: Sequence[tuple[str, str]],
    device_names: Sequence[str],
    offload_kqv: bool,
) -> Layout:
    """Place every tensor as llama.cpp would.

    ``tensor_layers`` maps each tensor to its block (-1 the input layer, ``n_layer`` the output,
    None a tensor repeated on every device that holds a block); ``expert_tensors`` are the
    tensors ``--n-cpu-moe`` moves. Overrides to a device name no device has are ignored.
    """
    n_gpu = len(splits)
    cpu = n_gpu
    blocks = block_devices(n_layer, offload, splits)
    layer_device = blocks[:n_layer]
    rules: list[tuple[re.Pattern[str], int]] = []
    for pattern, target in overrides:
        compiled = _compiled(pattern)
        device = override_device(target, device_names)
        if compiled is not None and device is not None:
            rules.append((compiled, device))
    moe_layers = min(max(n_cpu_moe, 0), n_layer)
    tensor_device: dict[str, int] = {}
    experts = list(layer_device)
    for name, layer in tensor_layers.items():
        if layer is None:
            continue
        device = cpu if layer < 0 else blocks[min(layer, n_layer)]
        for compiled, rule_device in rules:
            if compiled.search(name):
                device = rule_device
                break
        else:
            if name in expert_tensors and layer is not None and 0 <= layer < moe_layers:
                device = cpu
        tensor_device[name] = device
        if name in expert_tensors and layer is not None and 0 <= layer < n_layer:
            experts[layer] = device
    kv = layer_device if offload_kqv else (cpu,) * n_layer
    return Layout(n_gpu, layer_device, blocks[n_layer], tuple(experts), kv, tensor_device)
