"""The Textual app: screens, global commands, themes; the core objects are injected."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen
from textual.theme import Theme

from tui_llm import config as config_mod
from tui_llm.catalog.discovery import FileId, file_id, read_local_model
from tui_llm.commands import ModelCommands, system_commands
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.logparse import totals_by_device
from tui_llm.engine.protocol import (
    LoadedEvent,
    LoadSettings,
    OffloadValue,
    ReadyEvent,
    SamplingParams,
)
from tui_llm.messages import (
    FitLabelsChanged,
    GpuSampled,
    LoadModelRequested,
    ModelsOpened,
    ModelsScanned,
)
from tui_llm.screens.help import HelpScreen
from tui_llm.screens.main import MainScreen
from tui_llm.theme_files import DEFAULT_THEME, load_themes
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.offload import LevelEstimate, OffloadPanel

FIT_SLACK = 256 * 1024 * 1024  # free-memory moves smaller than this leave the fit column as it is

CUDA_FIX = (
    'reinstall with CMAKE_ARGS="-DGGML_CUDA=on -DGGML_RPC=on" pip install --no-cache-dir '
    "--force-reinstall llama-cpp-python"
)


class TuiLlmApp(App[None]):
    """tui-llm: chat with local GGUF models, tune the GPU offload, watch VRAM."""

    TITLE = "tui-llm"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ModelCommands}
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        settings: config_mod.Settings,
        engine: EngineClient,
        monitor: Any = None,
        scanner: Callable[[], Iterable[Any]] | None = None,
        initial_model: Path | None = None,
        settings_warning: str | None = None,
        save_settings: bool = True,
        sample_interval_s: float = 1.0,
        store: Any = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine = engine
        self.monitor = monitor
        self.scanner = scanner
        self.initial_model = initial_model
        self.settings_warning = settings_warning
        self.save_enabled = save_settings
        self.sample_interval_s = sample_interval_s
        self.store = store
        self._save_lock = threading.Lock()
        self.sampling = settings.sampling
        self.system_prompt = settings.system_prompt  # for new conversations
        self.load_overrides: dict[str, Any] = {}
        self.autostart_engine = True
        self.last_settings: LoadSettings | None = None
        self.found_models: list[Path] = []
        self.fit_labels: dict[str, str] = {}
        self._fit_models: list[Any] = []
        self._fit_free: int | None = None  # the free GPU memory the fit labels assume
        self._theme_errors: list[str] = []
        self.engine.on_crash = self._engine_crashed
        self._register_themes()

    # ---- lifecycle --------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.initial_model)

    def on_mount(self) -> None:
        # Long-lived objects (Textual's widgets, styles, imported modules) would be rescanned by
        # every full collection; freezing them keeps collections short while replies stream.
        self.call_after_refresh(gc.freeze)
        wanted = self.settings.theme or DEFAULT_THEME
        self.theme = wanted if wanted in self.available_themes else DEFAULT_THEME
        for error in self._theme_errors:
            notify_literal(self, f"Theme file skipped: {error}", severity="warning", timeout=8)
        if self.settings_warning:
            notify_literal(
                self, self.settings_warning, title="Settings", severity="warning", timeout=10
            )
        if self.monitor is not None:
            self.monitor.on_sample = self._on_sample
            self.monitor.start()
        if self.scanner is not None:
            self.run_worker(self._scan_models, thread=True, group="scan", exclusive=True)
        else:
            self.list_opened_models(self._opened_paths())

    async def on_unmount(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self.store is not None:
            self.store.close()
        await self.engine.close()

    @property
    def main_screen(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("main screen not mounted")

    def watch_theme(self, theme: str) -> None:
        if self.settings.theme != theme:
            self.settings.theme = theme
            self.save()

    def _register_themes(self) -> None:
        specs, errors = load_themes()
        self._theme_errors = errors
        for spec in specs:
            try:
                colors: dict[str, Any] = dict(spec.colors)
                self.register_theme(
                    Theme(name=spec.name, dark=spec.dark, variables=spec.variables, **colors)
                )
            except Exception as exc:  # a colour Textual cannot parse
                self._theme_errors.append(f"{spec.source}: {exc}")

    # ---- background sources -----------------------------------------------------------------

    def _on_sample(self, snapshot: Any) -> None:
        """Called on the monitor thread: hand the sample to the UI thread as a message."""
        with contextlib.suppress(LookupError):
            self.main_screen.post_message(GpuSampled(snapshot))

    def monitor_engine_pid(self, pid: int | None) -> None:
        if self.monitor is not None and hasattr(self.monitor, "set_engine_pid"):
            self.monitor.set_engine_pid(pid)

    def _scan_models(self) -> None:
        """Thread worker: stream found models to the browser in small batches; then the models
        opened from elsewhere (the command line's, the recent ones) that the scan did not find."""
        assert self.scanner is not None
        batch: list[Any] = []
        batch_ids: list[FileId] = []
        found: set[FileId] = set()
        screen = self.main_screen
        self._fit_free = self.free_gpu_bytes()
        for model in self.scanner():
            model_file = file_id(model.path)
            found.add(model_file)
            batch.append(model)
            batch_ids.append(model_file)
            if model.info is not None:
                self.found_models.append(Path(model.path))
                self._fit_models.append(model)
                # The estimate takes ~0.1-0.4 s per model: compute it here, off the UI thread.
                self.fit_labels[str(model.path)] = self.compute_fit_label(model)
            if len(batch) >= 8:
                screen.post_message(ModelsScanned(batch, False, batch_ids))
                batch, batch_ids = [], []
        screen.post_message(ModelsScanned(batch, True, batch_ids))
        self._read_opened_models(screen, self._opened_paths(), frozenset(found))

    def _opened_paths(self) -> list[Path]:
        """The command line's model and the recent ones: the browser lists them wherever they
        lie (files that are gone are left out when they are read)."""
        recent = [Path(p) for p in self.settings.recent_models]
        return [self.initial_model, *recent] if self.initial_model is not None else recent

    def list_opened_models(self, paths: Sequence[Path]) -> None:
        """List models opened from outside the scanned folders in the browser: read in a
        thread, like the scan's; a file listed already (by any path) is not read again."""
        if not paths:
            return
        try:
            screen = self.main_screen
        except LookupError:
            return  # quitting: the main screen is gone
        browsers = screen.query(ModelBrowser)  # none yet while the app mounts
        known = browsers.first().file_ids if browsers else frozenset[FileId]()
        self.run_worker(
            partial(self._read_opened_models, screen, list(paths), known),
            thread=True,
            group="opened-models",
        )

    def _read_opened_models(
        self, screen: MainScreen, paths: Sequence[Path], known: frozenset[FileId]
    ) -> None:
        """Thread worker: read the models ``paths`` name, the files not in ``known`` once each,
        and post them (with their fit labels worked out here, as the scan does)."""
        models: list[Any] = []
        model_files: list[FileId] = []
        for path in paths:
            if not os.path.isfile(path):
                continue
            model_file = file_id(path)
            if model_file in known or model_file in model_files:
                continue
            model = read_local_model(path)
            if model.info is not None:
                self._fit_models.append(model)
                self.fit_labels[str(model.path)] = self.compute_fit_label(model)
            models.append(model)
            model_files.append(model_file)
        if models:
            screen.post_message(ModelsOpened(models, model_files))

    def _engine_crashed(self, error: EngineError) -> None:
        with contextlib.suppress(LookupError):
            self.main_screen.on_engine_crashed(error)

    # ---- load settings, fit, recovery -------------------------------------------------------

    def load_settings_for(self, path: Path) -> LoadSettings:
        """The model's saved profile (or the defaults), with command-line overrides on top.

        ``auto`` offload is resolved by ``resolve_offload`` when the load starts.
        """
        profile = config_mod.profile_for(self.settings, path)
        values: dict[str, Any] = {
            "model_path": config_mod.model_key(path),
            "offload_layers": 0,
            "n_ctx": profile.n_ctx,
            "kv_cache_type": profile.kv_cache_type,
            "flash_attn": profile.flash_attn,
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
        try:
            from tui_llm.fit import auto_offload_for_path
        except ImportError:
            return None
        return auto_offload_for_path(path, settings, self.free_gpu_bytes())

    def free_gpu_bytes(self) -> int | None:
        """GPU memory a new load can use: free now, plus what the loaded model holds there.

        A load (another model, or this one with other settings) frees the current model first,
        so its buffers count as free. NVML is asked first; without it, llama.cpp's devices.
        """
        loaded = self.engine.loaded
        held: dict[str, int] = {}
        if loaded is not None and not self.engine.load_in_flight:  # mid-load it is freed already
            held = totals_by_device(loaded.buffers, loaded.devices)
        snapshot = getattr(self.monitor, "latest", None)
        gpus = getattr(snapshot, "gpus", ()) if snapshot is not None else ()
        measured = [g for g in gpus if g.memory_total is not None and g.memory_used is not None]
        on_cuda = sum(size for name, size in held.items() if name.startswith("CUDA"))

        def held_on(gpu: Any) -> int:
            # One GPU holds all of it; with several, NVML's index is taken as the CUDA ordinal
            # (true unless CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER reorder them).
            return on_cuda if len(measured) == 1 else held.get(f"CUDA{gpu.index}", 0)

        frees = [g.memory_total - g.memory_used + held_on(g) for g in measured]
        if frees:
            return int(max(frees))
        devices = self.engine.ready.devices if self.engine.ready else ()
        if loaded is not None:
            devices = loaded.devices
        accel = [d.memory_free + held.get(d.name, 0) for d in devices if d.kind != "cpu"]
        return max(accel) if accel else None

    def too_big_reason(self, path: Path, settings: LoadSettings) -> str | None:
        """Thread-safe: the estimate's reason when even the CPU lacks the RAM for the model."""
        try:
            from tui_llm.fit import too_big_reason
        except ImportError:
            return None
        return too_big_reason(path, settings, self.free_gpu_bytes())

    def free_memory(self) -> tuple[int | None, int | None]:
        """(free VRAM, free RAM) for the Hub's fit badges; called from a worker thread."""
        import psutil

        return self.free_gpu_bytes(), int(psutil.virtual_memory().available)

    async def load_with_recovery(
        self, settings: LoadSettings, on_progress: Callable[[float], None]
    ) -> tuple[LoadedEvent, str | None]:
        self.last_settings = settings
        try:
            from tui_llm.fit.recovery import load_with_recovery
        except ImportError:
            loaded = await self.engine.load(settings, on_progress=on_progress)
            return loaded, None
        result = await load_with_recovery(
            self.engine, settings, self.free_gpu_bytes(), on_progress=on_progress
        )
        self.last_settings = result[0].settings
        return result

    def configure_offload_panel(self, panel: OffloadPanel) -> None:
        screen_ref = panel

        def estimate(level: int, n_ctx: int, flash: bool, kv: str) -> LevelEstimate | None:
            loaded = self.engine.loaded
            if loaded is None:
                return None
            try:
                from tui_llm.fit import estimate_level
            except ImportError:
                return None
            settings = replace(loaded.settings, n_ctx=n_ctx, flash_attn=flash, kv_cache_type=kv)
            free = self.free_gpu_bytes()
            path = Path(settings.model_path)
            result = estimate_level(path, settings, level, gpu_present=free is not None)
            if result is None:
                return None
            gpu, cpu = result
            return LevelEstimate(gpu, cpu, None if free is None else gpu <= free)

        def auto() -> tuple[int, str] | None:
            loaded = self.engine.loaded
            if loaded is None:
                return None
            settings = replace(
                loaded.settings,
                n_ctx=screen_ref.n_ctx,
                flash_attn=screen_ref.flash_attn,
                kv_cache_type=screen_ref.kv_cache_type,
            )
            return self.auto_offload(Path(settings.model_path), settings)

        panel.estimator = estimate
        panel.auto_level = auto

    def refresh_fit_labels(self) -> None:
        """Work the fit column out again when the free GPU memory moved (the first NVML sample,
        the engine's devices, another program taking VRAM); in a thread, like the scan."""
        free = self.free_gpu_bytes()
        old = self._fit_free
        if free == old or not self._fit_models:
            return
        if free is not None and old is not None and abs(free - old) < max(FIT_SLACK, old // 20):
            return
        self._fit_free = free
        self.run_worker(self._compute_fit_labels, thread=True, group="fit", exclusive=True)

    def _compute_fit_labels(self) -> None:
        labels = {str(model.path): self.compute_fit_label(model) for model in self._fit_models}
        if labels != {key: self.fit_labels.get(key, "") for key in labels}:
            self.fit_labels.update(labels)
            with contextlib.suppress(LookupError):
                self.main_screen.post_message(FitLabelsChanged())

    def fit_label(self, model: Any) -> str:
        """The browser's fit column, from what the scan thread computed (never computed here)."""
        return self.fit_labels.get(str(model.path), "")

    def compute_fit_label(self, model: Any) -> str:
        try:
            from tui_llm.fit import fit_label
        except ImportError:
            return ""
        return str(fit_label(model.info, self.free_gpu_bytes()))

    def offload_warning(self, ready: ReadyEvent) -> str:
        """Say so when an NVIDIA GPU is here but the installed llama.cpp cannot use it."""
        has_accel = any(d.kind in ("gpu", "igpu", "accel") for d in ready.devices)
        nvidia = False
        try:
            from tui_llm.gpu import nvidia_gpu_present

            nvidia = nvidia_gpu_present()
        except ImportError:
            pass
        if nvidia and not any(d.name.startswith("CUDA") for d in ready.devices):
            return f"An NVIDIA GPU is present but this llama.cpp build cannot use it: {CUDA_FIX}"
        if not ready.supports_gpu_offload or not has_accel:
            return "No GPU device in this llama.cpp build: layers stay on the CPU."
        return ""

    def remember_loaded(self, loaded: LoadedEvent) -> None:
        """A model loaded: first in the recent list, and listed in the browser wherever it lies."""
        config_mod.remember_load(self.settings, loaded.settings)
        self.save()
        self.list_opened_models([Path(loaded.settings.model_path)])

    def _write_settings(self) -> None:
        """Thread worker: the atomic write fsyncs, which must not stall the event loop."""
        try:
            with self._save_lock:
                config_mod.save_settings(self.settings)
        except (OSError, ValueError) as exc:
            self.call_from_thread(
                notify_literal, self, f"Settings not saved: {exc}", severity="warning"
            )

    def set_sampling(self, sampling: SamplingParams, system_prompt: str) -> None:
        self.sampling = sampling
        self.system_prompt = system_prompt
        config_mod.store_sampling(self.settings, sampling, system_prompt)
        self.save()

    def save(self) -> None:
        """Save the settings in a thread (the latest state wins; writes never overlap)."""
        if not self.save_enabled:
            return
        self.run_worker(self._write_settings, thread=True, group="save-settings", exclusive=False)

    # ---- models -----------------------------------------------------------------------------

    def recent_models(self) -> list[Path]:
        return [Path(p) for p in self.settings.recent_models if Path(p).exists()]

    def picker_models(self) -> list[Path]:
        seen: dict[tuple[int, int] | str, Path] = {}
        for path in [*self.recent_models(), *self.found_models]:
            seen.setdefault(config_mod.model_file_identity(path), path)
        return list(seen.values())

    def request_load(self, path: Path) -> None:
        self.main_screen.post_message(LoadModelRequested(path))

    def action_pick_model(self) -> None:
        from textual.command import CommandPalette

        self.push_screen(CommandPalette(providers=[ModelCommands], placeholder="Search models…"))

    def action_recent_models(self) -> None:
        from tui_llm.screens.recent import RecentScreen

        self.push_screen(RecentScreen(self.recent_models()), self._recent_chosen)

    def _recent_chosen(self, path: Path | None) -> None:
        if path is not None:
            self.request_load(path)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        if main is not None:
            yield from system_commands(self, main)


def make_app(
    settings: config_mod.Settings,
    engine: EngineClient | None = None,
    monitor: Any = None,
    scanner: Callable[[], Iterable[Any]] | None = None,
    **kwargs: Any,
) -> TuiLlmApp:
    """Build the app from injected parts (tests pass their own monitor, scanner, engine)."""
    return TuiLlmApp(settings, engine or EngineClient(), monitor, scanner, **kwargs)
