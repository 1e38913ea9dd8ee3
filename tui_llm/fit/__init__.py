"""Will it fit: memory per offload level, automatic offload, recovery, learned corrections.

The core is :func:`tui_llm.fit.estimate.estimate` (GPU and CPU bytes at every level 0 ..
n_layer+1, following llama.cpp's own allocation). The helpers here are what the app and the CLI
call with a model path and ``LoadSettings``; they cache estimates per file and apply what earlier
loads of the same file taught (:mod:`tui_llm.fit.learned`). Nothing here imports Textual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tui_llm.engine.protocol import LoadSettings
from tui_llm.fit.auto import (
    OffloadChoice,
    PlacementChoice,
    choose_offload,
    choose_placement,
    safety_margin,
    spread_by_free_memory,
)
from tui_llm.fit.estimate import (
    CUDA,
    NO_GPU,
    RPC,
    DeviceProfile,
    Estimate,
    EstimateError,
    EstimateSettings,
    LevelEstimate,
    MemorySplit,
    estimate,
    estimate_file,
)

__all__ = [
    "CUDA",
    "NO_GPU",
    "RPC",
    "DeviceProfile",
    "Estimate",
    "EstimateError",
    "EstimateSettings",
    "LevelEstimate",
    "MemorySplit",
    "OffloadChoice",
    "PlacementChoice",
    "auto_offload_for_path",
    "auto_placement_for_path",
    "choose_offload",
    "choose_placement",
    "device_for",
    "devices_for_settings",
    "estimate",
    "estimate_file",
    "estimate_level",
    "estimate_pair",
    "fit_label",
    "safety_margin",
    "spread_by_free_memory",
    "too_big_reason",
]


def device_for(settings: LoadSettings | None, gpu_present: bool = True) -> DeviceProfile:
    """The device profile a load would offload to: an RPC server, a CUDA GPU, or none."""
    if settings is not None and settings.rpc_servers:
        return RPC
    return CUDA if gpu_present else NO_GPU


def devices_for_settings(
    settings: LoadSettings | None, gpu_present: bool = True, gpu_count: int = 1
) -> tuple[DeviceProfile, ...]:
    """The offload devices a load would use, in llama.cpp's order: each RPC server (named as
    llama.cpp names its buffers, ``RPC0[host:port]``), else ``gpu_count`` GPUs (``CUDA0``…),
    else none."""
    if settings is not None and settings.rpc_servers:
        return tuple(replace(RPC, name=f"RPC0[{server}]") for server in settings.rpc_servers)
    if not gpu_present:
        return (NO_GPU,)
    return tuple(replace(CUDA, name=f"CUDA{index}") for index in range(max(1, gpu_count)))


def _corrected(path: Path, settings: LoadSettings, est: Estimate) -> Estimate:
    from dataclasses import replace

    from tui_llm.fit.learned import correction_for

    correction = correction_for(path, settings)
    if correction.samples == 0:
        return est
    return replace(est, levels=tuple(correction.apply(level) for level in est.levels))


def _estimate_for(path: Path, settings: LoadSettings, gpu_present: bool) -> Estimate | None:
    try:
        est = estimate_file(
            path, EstimateSettings.from_load_settings(settings), device_for(settings, gpu_present)
        )
    except (OSError, ValueError):
        return None
    return _corrected(path, settings, est)


def estimate_pair(
    path: Path,
    settings: LoadSettings,
    layers: int,
    n_cpu_moe: int,
    gpu_present: bool = True,
    gpu_count: int = 1,
) -> tuple[tuple[int, ...], int] | None:
    """(bytes on each GPU, CPU bytes) with ``layers`` offloaded and the experts of the first
    ``n_cpu_moe`` layers in RAM; None when the model cannot be read. ``gpu_count`` GPUs (without
    RPC servers) share the layers by ``settings.tensor_split`` (empty: equally)."""
    try:
        est = estimate_file(
            path,
            EstimateSettings.from_load_settings(settings),
            devices_for_settings(settings, gpu_present, gpu_count),
        )
    except (OSError, ValueError):
        return None
    chosen = est.pair(layers, n_cpu_moe)
    return chosen.device_totals(), chosen.cpu.total


def auto_placement_for_path(
    path: Path,
    settings: LoadSettings,
    free_bytes: Sequence[int] | None,
    margin_bytes: int | None = None,
    total_bytes: Sequence[int] | None = None,
) -> PlacementChoice | None:
    """Layers, expert layers in RAM and (for several devices without a split) the tensor_split
    to load with, and why; None when the model cannot be estimated.

    ``free_bytes`` is each offload device's free memory in llama.cpp's order (None: no GPU).
    Without a split in ``settings``, several devices share the layers by free memory.
    """
    load = settings
    if free_bytes and len(free_bytes) > 1 and not settings.tensor_split:
        load = replace(settings, tensor_split=spread_by_free_memory(free_bytes))
    try:
        est = estimate_file(
            path,
            EstimateSettings.from_load_settings(load),
            devices_for_settings(load, free_bytes is not None, len(free_bytes or ())),
        )
    except (OSError, ValueError):
        return None
    return choose_placement(est, free_bytes, total_bytes=total_bytes, margin_bytes=margin_bytes)


def too_big_reason(path: Path, settings: LoadSettings, free_gpu_bytes: int | None) -> str | None:
    """Why a model cannot load even at the best offload level (RAM short), or None if it can."""
    est = _estimate_for(Path(path), settings, free_gpu_bytes is not None)
    if est is None:
        return None
    choice = choose_offload(est, free_gpu_bytes)
    return choice.reason if choice.shortfall_bytes > 0 else None


def auto_offload_for_path(
    path: Path,
    settings: LoadSettings,
    free_gpu_bytes: int | None,
    margin_bytes: int | None = None,
) -> tuple[int, str] | None:
    """(layers, reason) for ``--offload auto``, or None when the model cannot be estimated.

    ``margin_bytes`` is the GPU memory to keep free (``None``: the automatic margin).
    """
    est = _estimate_for(Path(path), settings, free_gpu_bytes is not None)
    if est is None:
        return None
    choice = choose_offload(est, free_gpu_bytes, margin_bytes=margin_bytes)
    return choice.offload_layers, choice.reason


def estimate_level(
    path: Path, settings: LoadSettings, level: int, gpu_present: bool = True
) -> tuple[int, int] | None:
    """(GPU bytes, CPU bytes) at one offload level, or None when the model cannot be read.

    Without a GPU everything is on the CPU, whatever the level.
    """
    est = _estimate_for(Path(path), settings, gpu_present)
    if est is None:
        return None
    chosen = est.level(level)
    return chosen.gpu.total, chosen.cpu.total


def fit_label(
    info: object, free_gpu_bytes: int | None, settings: LoadSettings | None = None
) -> str:
    """The browser's fit column for a model: "full GPU", "18/33 layers", "CPU only", "too big".

    ``info`` is a ModelInfo (or anything with a ``path``); default load settings when none.
    """
    path = getattr(info, "path", None)
    if path is None:
        return ""
    chosen = settings or LoadSettings(model_path=str(path))
    est = _estimate_for(Path(path), chosen, free_gpu_bytes is not None)
    if est is None:
        return ""
    return choose_offload(est, free_gpu_bytes).label
