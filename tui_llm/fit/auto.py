"""Choose the offload level: the most layers whose estimated GPU memory fits what is free now.

A safety margin stays free on the GPU, like llama.cpp's ``--fit`` (1 GiB), but scaled down on
small cards where 1 GiB would be most of the memory. Before any load, the host side is checked
too: when even the best level needs more RAM than is available, the choice says so with the
shortfall instead of letting the load fail (or the machine swap).
"""

from __future__ import annotations

from dataclasses import dataclass

from tui_llm.catalog.metadata import human_bytes
from tui_llm.fit.estimate import Estimate

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
