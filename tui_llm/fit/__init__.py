"""Will it fit: memory per offload level, automatic offload, recovery, learned corrections.

The core is :func:`tui_llm.fit.estimate.estimate` (GPU and CPU bytes at every level 0 ..
n_layer+1, following llama.cpp's own allocation). The helpers here are what the app and the CLI
call with a model path and ``LoadSettings``; they cache estimates per file and apply what earlier
loads of the same file taught (:mod:`tui_llm.fit.learned`). Nothing here imports Textual.
"""

from __future__ import annotations

from pathlib import Path

from tui_llm.engine.protocol import LoadSettings
from tui_llm.fit.auto import OffloadChoice, choose_offload, safety_margin
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
    "auto_offload_for_path",
    "choose_offload",
    "device_for",
    "estimate",
    "estimate_file",
    "estimate_level",
    "fit_label",
    "safety_margin",
    "too_big_reason",
]


def device_for(settings: LoadSettings | None, gpu_present: bool = True) -> DeviceProfile:
    """The device profile a load would offload to: an RPC server, a CUDA GPU, or none."""
    if settings is not None and settings.rpc_servers:
        return RPC
    return CUDA if gpu_present else NO_GPU


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
