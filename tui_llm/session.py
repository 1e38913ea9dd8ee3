"""The model session: the one owner of what is loaded, how, and the memory figures around it.

The app, its screens and the command palette ask this object, and only this object, which model is
loaded (``loaded``), with which settings (``last_settings``, kept across a crash for F5), how much
GPU memory a load can use (``free_gpu_bytes``, one rule in ``tui_llm.gpu.free``) and what the
estimate says (auto offload, "too big", fit labels, the offload panel's per-level figures). It
drives the engine (``EngineClient``) and imports no Textual: the UI posts results from its
threads and shows them, this object decides.

Thread safety: the estimate methods (``auto_offload``, ``too_big_reason``, ``fit_label``,
``estimate_level``) read only immutable state (a snapshot of the monitor, the loaded event) and
may run in worker threads; ``load``, ``crashed`` and ``remember`` run on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import EllipsisType
from typing import Any

import psutil

from tui_llm import config as config_mod
from tui_llm import fit
from tui_llm.catalog.metadata import ModelInfo, read_model_info
from tui_llm.engine.client import EngineClient
from tui_llm.engine.logparse import totals_by_device
from tui_llm.engine.protocol import (
    DeviceInfo,
    LoadedEvent,
    LoadSettings,
    OffloadValue,
    ReadyEvent,
    SplitMode,
)
from tui_llm.fit.recovery import load_with_recovery
from tui_llm.gpu import nvidia_gpu_present
from tui_llm.gpu.free import free_for_load

CUDA_FIX = (
    'reinstall with CMAKE_ARGS="-DGGML_CUDA=on -DGGML_RPC=on" pip install --no-cache-dir '
    "--force-reinstall llama-cpp-python"
)


@dataclass(frozen=True)
class LevelFigures:
    """The estimate for one offload level: bytes on the GPU and in RAM, and whether it fits
    the GPU memory free now (``None`` without a GPU)."""

    gpu_bytes: int
    cpu_bytes: int
    fits: bool | None


@dataclass(frozen=True)
class PlacementFigures:
    """The estimate for a placement (layers, expert layers in RAM, split between devices):
    bytes on each offload device as (llama.cpp's device name, bytes) in its order, bytes in
    RAM, and whether every device's share fits its free memory (``None`` without a GPU)."""

    device_bytes: tuple[tuple[str, int], ...]
    cpu_bytes: int
    fits: bool | None

    @property
    def gpu_bytes(self) -> int:
        return sum(size for _, size in self.device_bytes)


@dataclass(frozen=True)
class PlacementRequest:
    """What the offload panel asks the estimate about: the load settings that need a reload."""

    offload_layers: int
    n_cpu_moe: OffloadValue
    n_ctx: int
    flash_attn: bool
    kv_cache_type: str
    tensor_split: tuple[float, ...] = ()
    split_mode: SplitMode = "layer"
    main_gpu: int = 0


class ModelSession:
    """What is loaded in the engine and everything worked out from it; see the module docstring.

    ``settings`` is the user's settings (profiles, recent models), changed in place by
    ``remember``; ``load_overrides`` are the command line's load options for this run;
    ``monitor`` is the GPU monitor whose ``latest`` snapshot gives NVML's figures (or ``None``).
    """

    def __init__(
        self,
        engine: EngineClient,
        settings: config_mod.Settings,
        monitor: Any = None,
        load_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.monitor = monitor
        self.load_overrides: dict[str, Any] = dict(load_overrides or {})
        self.loaded: LoadedEvent | None = None
        self.model_path: Path | None = None  # the last model loaded; kept after a crash
        self.last_settings: LoadSettings | None = None  # the last load asked for (F5 retries it)
        # Blocks of the loaded model with expert weights (its n_layer; 0 for a dense model).
        self.moe_layers = 0

    # ---- memory ---------------------------------------------------------------------------

    def free_gpu_bytes(self, held_by: LoadedEvent | EllipsisType | None = ...) -> int | None:
        """GPU memory a new load can use: free now plus what the loaded model holds there.

        ``held_by`` is the model whose buffers the next load frees (default: the session's; the
        offload sweep passes the level its engine holds). Mid-load the old model is freed
        already, so nothing counts as held then.
        """
        loaded = self.loaded if isinstance(held_by, EllipsisType) else held_by
        held: dict[str, int] = {}
        if loaded is not None and not self.engine.load_in_flight:
            held = totals_by_device(loaded.buffers, loaded.devices)
        snapshot = getattr(self.monitor, "latest", None)
        gpus = getattr(snapshot, "gpus", ()) if snapshot is not None else ()
        ready = self.engine.ready
        devices = loaded.devices if loaded is not None else (ready.devices if ready else ())
        return free_for_load(gpus, devices, held)

    def free_memory(self) -> tuple[int | None, int | None]:
        """(free GPU bytes for a load, available RAM bytes): the Hub's fit badges."""
        return self.free_gpu_bytes(), int(psutil.virtual_memory().available)

    def safety_margin_bytes(self) -> int | None:
        """The user's ``gpu_safety_margin_mib`` in bytes, or ``None`` for the automatic margin."""
        mib = self.settings.gpu_safety_margin_mib
        return None if mib is None else mib * 1024 * 1024

    # ---- settings for a load --------------------------------------------------------------

    def load_settings_for(self, path: Path) -> LoadSettings:
        """The model's saved profile (or the defaults) with the command line's options on top;
        ``auto`` offload resolved by the estimate."""
        profile = config_mod.profile_for(self.settings, path)
        values: dict[str, Any] = {
            "model_path": config_mod.model_key(path),
            "offload_layers": 0,
            "n_ctx": profile.n_ctx,
            "kv_cache_type": profile.kv_cache_type,
            "flash_attn": profile.flash_attn,
            "n_cpu_moe": profile.n_cpu_moe,
        }
        values.update(self.load_overrides)
        offload = values.pop("offload", profile.offload)
        settings = LoadSettings(**values)
        return replace(settings, offload_layers=self.resolve_offload(path, offload, settings))

    def resolve_offload(
        self, path: Path, offload: int | str, settings: LoadSettings
    ) -> OffloadValue:
        """``auto`` becomes a layer count from the estimate; other values pass through."""
        if offload == "all":
            return "all"
        if offload != "auto":
            return int(offload)
        choice = self.auto_offload(path, settings)
        return choice[0] if choice is not None else 0

    def auto_offload(self, path: Path, settings: LoadSettings) -> tuple[int, str] | None:
        """(layers, why) for the most layers that fit, or ``None`` without an estimate."""
        return fit.auto_offload_for_path(
            path, settings, self.free_gpu_bytes(), self.safety_margin_bytes()
        )

    def too_big_reason(self, path: Path, settings: LoadSettings) -> str | None:
        """Why the model cannot load here even on the CPU, or ``None``."""
        return fit.too_big_reason(path, settings, self.free_gpu_bytes())

    def estimate_level(
        self, level: int, n_ctx: int, flash_attn: bool, kv_cache_type: str
    ) -> LevelFigures | None:
        """The offload panel's figures for a level of the loaded model with these settings."""
        loaded = self.loaded
        if loaded is None:
            return None
        settings = replace(
            loaded.settings, n_ctx=n_ctx, flash_attn=flash_attn, kv_cache_type=kv_cache_type
        )
        free = self.free_gpu_bytes()
        result = fit.estimate_level(
            Path(settings.model_path), settings, level, gpu_present=free is not None
        )
        if result is None:
            return None
        gpu, cpu = result
        return LevelFigures(gpu, cpu, None if free is None else gpu <= free)

    def offload_devices(self) -> tuple[DeviceInfo, ...]:
        """The loaded model's offload devices (GPUs, RPC servers) in llama.cpp's order."""
        loaded = self.loaded
        if loaded is None:
            return ()
        return tuple(device for device in loaded.devices if device.kind != "cpu")

    def free_per_device(self) -> tuple[int, ...] | None:
        """Free bytes for a load on each offload device (what the loaded model holds counted
        free), in llama.cpp's order; one figure (``free_gpu_bytes``) for a single device;
        ``None`` without a GPU."""
        devices = self.offload_devices()
        if len(devices) < 2:
            free = self.free_gpu_bytes()
            return None if free is None else (free,)
        loaded = self.loaded
        held: dict[str, int] = {}
        if loaded is not None and not self.engine.load_in_flight:
            held = totals_by_device(loaded.buffers, loaded.devices)
        return tuple(device.memory_free + held.get(device.name, 0) for device in devices)

    def _request_settings(self, request: PlacementRequest) -> LoadSettings | None:
        loaded = self.loaded
        if loaded is None:
            return None
        return replace(
            loaded.settings,
            n_ctx=request.n_ctx,
            flash_attn=request.flash_attn,
            kv_cache_type=request.kv_cache_type,
            n_cpu_moe=request.n_cpu_moe,
            tensor_split=request.tensor_split,
            split_mode=request.split_mode,
            main_gpu=request.main_gpu,
        )

    def estimate_placement(self, request: PlacementRequest) -> PlacementFigures | None:
        """The offload panel's figures for a placement of the loaded model, per device.

        A dense model on one device takes ``estimate_level`` (with what earlier loads taught);
        expert layers in RAM or several devices take the pair estimate (``fit.estimate_pair``).
        """
        settings = self._request_settings(request)
        if settings is None:
            return None
        devices = self.offload_devices()
        free = self.free_per_device()
        n_cpu_moe = request.n_cpu_moe
        if not self.moe_layers and len(devices) < 2:
            level = self.estimate_level(
                request.offload_layers, request.n_ctx, request.flash_attn, request.kv_cache_type
            )
            if level is None:
                return None
            name = devices[0].name if devices else "GPU"
            return PlacementFigures(((name, level.gpu_bytes),), level.cpu_bytes, level.fits)
        moe = self.moe_layers if n_cpu_moe == "all" else int(n_cpu_moe)
        if len(devices) > 1 and not settings.tensor_split and free is not None:
            # llama.cpp splits by free memory when no split is given.
            settings = replace(settings, tensor_split=fit.spread_by_free_memory(free))
        pair = fit.estimate_pair(
            Path(settings.model_path),
            settings,
            request.offload_layers,
            moe,
            gpu_present=free is not None,
            gpu_count=len(devices),
        )
        if pair is None:
            return None
        per_device, cpu = pair
        names = [device.name for device in devices]
        if len(names) != len(per_device):
            names = [f"GPU{index}" for index in range(len(per_device))]
        fits = None
        if free is not None and len(per_device) == 1:
            fits = per_device[0] <= max(free)
        elif free is not None and len(free) == len(per_device):
            fits = all(used <= room for used, room in zip(per_device, free, strict=True))
        return PlacementFigures(tuple(zip(names, per_device, strict=True)), cpu, fits)

    def auto_placement(self, request: PlacementRequest) -> fit.PlacementChoice | None:
        """The estimate's placement for the loaded model with the panel's pending context
        settings: layers, expert layers in RAM, the split (several devices), and why."""
        settings = self._request_settings(replace(request, tensor_split=()))
        if settings is None:
            return None
        return fit.auto_placement_for_path(
            Path(settings.model_path),
            settings,
            self.free_per_device(),
            margin_bytes=self.safety_margin_bytes(),
        )

    def auto_level(
        self, n_ctx: int, flash_attn: bool, kv_cache_type: str
    ) -> tuple[int, str] | None:
        """The auto level for the loaded model with the offload panel's pending settings."""
        loaded = self.loaded
        if loaded is None:
            return None
        settings = replace(
            loaded.settings, n_ctx=n_ctx, flash_attn=flash_attn, kv_cache_type=kv_cache_type
        )
        return self.auto_offload(Path(settings.model_path), settings)

    def fit_label(self, info: ModelInfo | None) -> str:
        """The browser's fit column for a model ("" when it cannot be read)."""
        if info is None:
            return ""
        return str(fit.fit_label(info, self.free_gpu_bytes()))

    def offload_warning(self, ready: ReadyEvent) -> str:
        """Say so when an NVIDIA GPU is here but the installed llama.cpp cannot use it."""
        has_accel = any(d.kind in ("gpu", "igpu", "accel") for d in ready.devices)
        if nvidia_gpu_present() and not any(d.name.startswith("CUDA") for d in ready.devices):
            return f"An NVIDIA GPU is present but this llama.cpp build cannot use it: {CUDA_FIX}"
        if not ready.supports_gpu_offload or not has_accel:
            return "No GPU device in this llama.cpp build: layers stay on the CPU."
        return ""

    # ---- loading --------------------------------------------------------------------------

    async def load(
        self, settings: LoadSettings, on_progress: Callable[[float], None]
    ) -> tuple[LoadedEvent, str | None]:
        """Load with out-of-memory recovery; returns the loaded event and a note on what the
        recovery did. Raises ``EngineError``; then nothing is loaded."""
        self.last_settings = settings
        try:
            loaded, note = await load_with_recovery(
                self.engine,
                settings,
                self.free_gpu_bytes(),
                on_progress=on_progress,
                margin_bytes=self.safety_margin_bytes(),
            )
        except BaseException:
            self.loaded = None
            raise
        self.last_settings = loaded.settings
        self.moe_layers = await asyncio.to_thread(expert_blocks, Path(loaded.settings.model_path))
        self.loaded = loaded
        self.model_path = Path(loaded.settings.model_path)
        return loaded, note

    def crashed(self) -> None:
        """The engine died: nothing is loaded; the last settings stay for a restart."""
        self.loaded = None

    def remember(self, loaded: LoadedEvent) -> None:
        """A load succeeded: its model goes first in the recent list, its settings become its
        profile (the caller saves the settings)."""
        config_mod.remember_load(self.settings, loaded.settings)


def expert_blocks(path: Path) -> int:
    """The blocks whose expert weights ``n_cpu_moe`` can keep in RAM: the model's ``n_layer``
    for a mixture-of-experts model (``*.expert_count`` above 0), else 0 (also when the file
    cannot be read)."""
    try:
        info = read_model_info(path)
    except (OSError, ValueError):
        return 0
    return (info.n_layer or 0) if (info.expert_count or 0) > 0 else 0
