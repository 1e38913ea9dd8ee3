"""Choose the offload level: the most layers whose estimated GPU memory fits what is free now.

For mixture-of-experts models and several devices, :func:`choose_placement` chooses the pair
(layers on the GPUs, expert layers in RAM) the way llama.cpp's ``--fit`` does: dense weights and
the KV cache on the GPUs first, the experts spilled to RAM, then whole layers.

A safety margin stays free on the GPU, like llama.cpp's ``--fit`` (1 GiB), but scaled down on
small cards where 1 GiB would be most of the memory. Before any load, the host side is checked
too: when even the best level needs more RAM than is available, the choice says so with the
shortfall instead of letting the load fail (or the machine swap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui_llm.catalog.metadata import human_bytes
from tui_llm.fit.estimate import Estimate, LevelEstimate

GIB = 1 << 30
MIB = 1 << 20
DEFAULT_MARGIN = GIB  # llama.cpp's --fit keeps 1 GiB free per device
_SMALL_CARD_SHARE = 8  # on cards under 8 GiB, keep 1/8 of the memory free instead
_MIN_MARGIN = 128 * MIB


def safety_margin(total_gpu_bytes: int | None, free_gpu_bytes: int | None = None) -> int:
    """Bytes to keep free on the GPU: 1 GiB, or 1/8 of a smaller card (at least 128 MiB)."""
    size = total_gpu_bytes or free_gpu_bytes
    if not size:
        return DEFAULT_MARGIN
    return max(_MIN_MARGIN, min(DEFAULT_MARGIN, size // _SMALL_CARD_SHARE))


def host_available_bytes() -> int | None:
    """RAM available to a new process now (page cache included), or None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return None


@dataclass(frozen=True)
class OffloadChoice:
    """The offload level to load with and why."""

    offload_layers: int
    max_level: int
    reason: str
    fits: bool  # False: not even this level fits the host's RAM
    gpu_bytes: int
    cpu_bytes: int
    margin_bytes: int
    shortfall_bytes: int = 0  # RAM missing when ``fits`` is False

    @property
    def label(self) -> str:
        """The browser's fit column: "full GPU", "18/33 layers", "CPU only" or "too big"."""
        if not self.fits:
            return "too big"
        if self.offload_layers >= self.max_level:
            return "full GPU"
        if self.offload_layers == 0:
            return "CPU only"
        return f"{self.offload_layers}/{self.max_level} layers"


def _layers(count: int, max_level: int) -> str:
    if count >= max_level:
        return f"all {max_level} layers"
    return f"{count} layer" if count == 1 else f"{count} layers"


def choose_offload(
    estimate: Estimate,
    free_gpu_bytes: int | None,
    *,
    total_gpu_bytes: int | None = None,
    margin_bytes: int | None = None,
    host_bytes: int | None = None,
    check_host: bool = True,
) -> OffloadChoice:
    """The largest level whose GPU bytes fit ``free_gpu_bytes`` less the margin.

    ``free_gpu_bytes`` None (or an estimate for a machine without a GPU) means CPU only.
    ``host_bytes`` defaults to the RAM available now; ``check_host=False`` skips that check.
    """
    max_level = estimate.max_level
    no_gpu = free_gpu_bytes is None or not estimate.device.present
    margin = (
        0
        if no_gpu
        else (
            margin_bytes
            if margin_bytes is not None
            else safety_margin(total_gpu_bytes, free_gpu_bytes)
        )
    )
    if no_gpu:
        level = 0
        reason = f"no GPU found: CPU only, {human_bytes(estimate.level(0).cpu.total)} of RAM"
    else:
        assert free_gpu_bytes is not None
        budget = free_gpu_bytes - margin
        fitting = [lv.offload_layers for lv in estimate.levels if lv.gpu.total <= budget]
        level = max(fitting, default=0)
        free_text = (
            f"{human_bytes(free_gpu_bytes)} free on the GPU, keeping {human_bytes(margin)} free"
        )
        if level >= max_level:
            used = estimate.level(level).gpu.total
            reason = f"all {max_level} layers fit: {human_bytes(used)} of {free_text}"
        elif level == 0:
            first = estimate.level(1).gpu.total
            reason = f"no layer fits: 1 layer needs {human_bytes(first)}, {free_text}"
        else:
            used = estimate.level(level).gpu.total
            more = estimate.level(level + 1).gpu.total
            reason = (
                f"{level} of {max_level} layers fit: {human_bytes(used)} of {free_text}; "
                f"{level + 1} would need {human_bytes(more)}"
            )
    chosen = estimate.level(level)
    host = (
        host_bytes if host_bytes is not None else (host_available_bytes() if check_host else None)
    )
    cpu_needed = chosen.cpu.total
    if check_host and host is not None and cpu_needed > host:
        shortfall = cpu_needed - host
        where = (
            "on the CPU alone"
            if level == 0
            else f"even with {_layers(level, max_level)} on the GPU"
        )
        reason = (
            f"too big: needs {human_bytes(cpu_needed)} of RAM {where}, "
            f"{human_bytes(host)} available (short by {human_bytes(shortfall)})"
        )
        return OffloadChoice(
            level, max_level, reason, False, chosen.gpu.total, cpu_needed, margin, shortfall
        )
    return OffloadChoice(level, max_level, reason, True, chosen.gpu.total, cpu_needed, margin)


# ---- mixture-of-experts and several devices ---------------------------------------------------


@dataclass(frozen=True)
class PlacementChoice:
    """Layers on the GPUs and expert layers kept in RAM, with the bytes per device and why.

    ``device_bytes`` and ``device_budgets`` follow ``device_names`` (the GPUs in llama.cpp's
    order; the budgets are free memory less the margin). ``tensor_split`` is the split the
    estimate used (free memory per device when the settings gave none).
    """

    offload_layers: int
    n_cpu_moe: int
    max_level: int
    reason: str
    fits: bool  # False: not even this placement fits the host's RAM
    device_names: tuple[str, ...]
    device_bytes: tuple[int, ...]
    device_budgets: tuple[int, ...]
    cpu_bytes: int
    margin_bytes: int
    shortfall_bytes: int = 0
    tensor_split: tuple[float, ...] = ()

    @property
    def gpu_bytes(self) -> int:
        return sum(self.device_bytes)


def _fits(level: LevelEstimate, budgets: Sequence[int]) -> bool:
    return all(used <= budget for used, budget in zip(level.device_totals(), budgets, strict=False))


def _smallest_moe(estimate: Estimate, level: int, budgets: Sequence[int]) -> int | None:
    """The fewest expert layers in RAM with which ``level`` layers fit, or None.

    GPU bytes fall as expert layers leave, so this is a binary search over 0 .. n_layer;
    blocks already on the CPU (below the offloaded ones) gain nothing from the override.
    """
    if not estimate.is_moe:
        return 0 if _fits(estimate.pair(level, 0), budgets) else None
    n_layer = estimate.n_layer
    if not _fits(estimate.pair(level, n_layer), budgets):
        return None
    on_cpu_anyway = max(n_layer + 1 - level, 0)
    low, high = 0, n_layer
    while low < high:
        middle = (low + high) // 2
        if _fits(estimate.pair(level, middle), budgets):
            high = middle
        else:
            low = middle + 1
    return 0 if low <= on_cpu_anyway else low


def _where(names: Sequence[str], used: Sequence[int], budgets: Sequence[int]) -> str:
    parts = [
        f"{human_bytes(u)} of {human_bytes(b)} on {name}"
        for name, u, b in zip(names, used, budgets, strict=True)
    ]
    return ", ".join(parts)


def _experts_text(n_cpu_moe: int, level: int, n_layer: int) -> str:
    if n_cpu_moe <= 0:
        return "the experts with their layers"
    if n_cpu_moe >= n_layer:
        return "every layer's experts in RAM"
    return f"the experts of the first {n_cpu_moe} of {n_layer} layers in RAM"


def choose_placement(
    estimate: Estimate,
    free_bytes: Sequence[int] | None,
    *,
    total_bytes: Sequence[int] | None = None,
    margin_bytes: int | None = None,
    host_bytes: int | None = None,
    check_host: bool = True,
) -> PlacementChoice:
    """The placement ``--offload auto`` loads with, as llama.cpp's ``--fit`` would choose it,
    plus a check of the host's RAM.

    The order of preference: the most layers on the GPUs (dense weights and KV cache first),
    and for that many layers the fewest expert layers in RAM (experts spill before layers do).
    ``free_bytes`` is each GPU's free memory in the estimate's device order (None: no GPU);
    each keeps ``margin_bytes`` free (default: ``safety_margin`` of its size).
    ``host_bytes`` defaults to the RAM available now; ``check_host=False`` skips that check.
    """
    max_level = estimate.max_level
    n_layer = estimate.n_layer
    no_gpu = not free_bytes or not estimate.device.present
    names = tuple(d.name for d in estimate.devices if d.present)
    if no_gpu:
        level, moe, margin = 0, 0, 0
        budgets: tuple[int, ...] = ()
        reason = f"no GPU found: CPU only, {human_bytes(estimate.level(0).cpu.total)} of RAM"
    else:
        assert free_bytes is not None
        totals = list(total_bytes or [])
        margins = [
            margin_bytes
            if margin_bytes is not None
            else safety_margin(totals[i] if i < len(totals) else None, free)
            for i, free in enumerate(free_bytes)
        ]
        margin = max(margins)
        budgets = tuple(free - m for free, m in zip(free_bytes, margins, strict=True))
        level, moe = 0, 0
        for candidate in range(max_level, 0, -1):
            found = _smallest_moe(estimate, candidate, budgets)
            if found is not None:
                level, moe = candidate, found
                break
        reason = _placement_reason(estimate, level, moe, names, budgets, margin)
    chosen = estimate.pair(level, moe)
    device_bytes = chosen.device_totals() if not no_gpu else ()
    host = (
        host_bytes if host_bytes is not None else (host_available_bytes() if check_host else None)
    )
    cpu_needed = chosen.cpu.total
    split = estimate.settings.tensor_split
    common = dict(
        device_names=names if not no_gpu else (),
        device_bytes=tuple(device_bytes),
        device_budgets=budgets,
        cpu_bytes=cpu_needed,
        margin_bytes=margin,
        tensor_split=split,
    )
    if check_host and host is not None and cpu_needed > host:
        shortfall = cpu_needed - host
        where = "on the CPU alone" if level == 0 else f"even with {_layers(level, max_level)}"
        if level and moe and estimate.is_moe:
            where += f" and {_experts_text(moe, level, n_layer)}"
        reason = (
            f"too big: needs {human_bytes(cpu_needed)} of RAM {where}, "
            f"{human_bytes(host)} available (short by {human_bytes(shortfall)})"
        )
        return PlacementChoice(
            level,
            moe,
            max_level,
            reason,
            False,
            shortfall_bytes=shortfall,
            **common,  # type: ignore[arg-type]
        )
    if host is not None and not no_gpu:
        reason += f"; {human_bytes(cpu_needed)} of {human_bytes(host)} RAM available"
    return PlacementChoice(level, moe, max_level, reason, True, **common)  # type: ignore[arg-type]


def _placement_reason(
    estimate: Estimate,
    level: int,
    moe: int,
    names: Sequence[str],
    budgets: Sequence[int],
    margin: int,
) -> str:
    max_level, n_layer = estimate.max_level, estimate.n_layer
    keeping = f"keeping {human_bytes(margin)} free"
    if level == 0:
        first = estimate.pair(1, n_layer)
        room = _where(names, first.device_totals(), budgets)
        return f"no layer fits, even with its experts in RAM: 1 layer needs {room} ({keeping})"
    chosen = estimate.pair(level, moe)
    used = _where(names, chosen.device_totals(), budgets)
    layers = _layers(level, max_level)
    if not estimate.is_moe:
        text = f"{layers} on the GPU: {used} ({keeping})"
        if level < max_level:
            more = estimate.pair(level + 1, 0).device_totals()
            text += f"; {level + 1} would need {human_bytes(sum(more))}"
        return text
    text = f"{layers} on the GPU with {_experts_text(moe, level, n_layer)}: {used} ({keeping})"
    if moe > 0:
        fewer = estimate.pair(level, moe - 1).device_totals()
        text += f"; {moe - 1} expert layers in RAM would need {human_bytes(sum(fewer))}"
    elif level < max_level:
        nxt = estimate.pair(level + 1, n_layer).device_totals()
        text += (
            f"; {level + 1} layers would need {human_bytes(sum(nxt))} even with every expert in RAM"
        )
    return text


def spread_by_free_memory(free_bytes: Sequence[int]) -> tuple[float, ...]:
    """A tensor_split that gives each device a share of the layers in proportion to its free
    memory (what llama.cpp does when no split is given), in GiB with two decimals."""
    return tuple(round(max(free, 0) / GIB, 2) for free in free_bytes)
