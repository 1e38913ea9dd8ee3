"""The Textual app: screens, global commands, themes; the core objects are injected."""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import threading
from collections.abc import Callable, Iterable, Sequence
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
from tui_llm.engine.protocol import LoadedEvent, SamplingParams
from tui_llm.messages import (
    FitLabelsChanged,
    GpuSampled,
    LoadModelRequested,
    ModelsOpened,
    ModelsScanned,
)
from tui_llm.screens.help import HelpScreen
from tui_llm.screens.main import MainScreen
from tui_llm.session import ModelSession, PlacementRequest
from tui_llm.theme_files import DEFAULT_THEME, load_themes
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.offload import AutoPlacement, OffloadPanel

FIT_SLACK = 256 * 1024 * 1024  # free-memory moves smaller than this leave the fit column as it is


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
        session: ModelSession | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        # The one owner of what is loaded and of the memory figures (tui_llm/session.py).
        self.session = session or ModelSession(engine, settings, monitor)
        self.monitor = monitor
        self.scanner = scanner
        self.initial_model = initial_model
        self.settings_warning = settings_warning
        self.save_enabled = save_settings
        self.sample_interval_s = sample_interval_s
        self.store = store
        self._save_lock = threading.Lock()
        self._told_unsaved = False
        self.sampling = settings.sampling
        self.system_prompt = settings.system_prompt  # for new conversations
        self.autostart_engine = True
        # UI state, changed by message handlers only: models found (for the picker and F7/F8),
        # those with metadata (for the fit column), the fit labels and the free GPU memory they
        # assume.
        self.found_models: list[Path] = []
        self.fit_models: list[Any] = []
        self.fit_labels: dict[str, str] = {}
        self._fit_free: int | None = None
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
    def engine(self) -> EngineClient:
        return self.session.engine

    @property
    def load_overrides(self) -> dict[str, Any]:
        """Load options from the command line for this run (they win over saved profiles)."""
        return self.session.load_overrides

    @load_overrides.setter
    def load_overrides(self, overrides: dict[str, Any]) -> None:
        self.session.load_overrides = dict(overrides)

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
        """Thread worker: stream found models to the browser in small batches, each with its
        fit labels (the estimate takes 0.1-0.4 s a model: worked out here, off the UI thread);
        then the models opened from elsewhere that the scan did not find."""
        assert self.scanner is not None
        batch: list[Any] = []
        batch_ids: list[FileId] = []
        labels: dict[str, str] = {}
        found: set[FileId] = set()
        screen = self.main_screen
        for model in self.scanner():
            model_file = file_id(model.path)
            found.add(model_file)
            batch.append(model)
            batch_ids.append(model_file)
            if model.info is not None:
                labels[str(model.path)] = self.session.fit_label(model.info)
            if len(batch) >= 8:
                screen.post_message(ModelsScanned(batch, False, batch_ids, labels))
                batch, batch_ids, labels = [], [], {}
        screen.post_message(ModelsScanned(batch, True, batch_ids, labels))
        self._read_opened_models(screen, self._opened_paths(), frozenset(found))

    def models_listed(
        self, models: Sequence[Any], labels: dict[str, str], scanned: bool = True
    ) -> None:
        """Handlers of the scan's and the opened models' messages: keep what they found."""
        for model in models:
            if model.info is not None:
                if scanned:
                    self.found_models.append(Path(model.path))
                self.fit_models.append(model)
        self.fit_labels.update(labels)
        if self._fit_free is None:
            self._fit_free = self.session.free_gpu_bytes()

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
        labels: dict[str, str] = {}
        for path in paths:
            if not os.path.isfile(path):
                continue
            model_file = file_id(path)
            if model_file in known or model_file in model_files:
                continue
            model = read_local_model(path)
            if model.info is not None:
                labels[str(model.path)] = self.session.fit_label(model.info)
            models.append(model)
            model_files.append(model_file)
        if models:
            screen.post_message(ModelsOpened(models, model_files, labels))

    def _engine_crashed(self, error: EngineError) -> None:
        with contextlib.suppress(LookupError):
            self.main_screen.on_engine_crashed(error)

    # ---- the offload panel and the fit column ------------------------------------------------

    def configure_offload_panel(self, panel: OffloadPanel) -> None:
        """The panel's estimate and auto placement, from the session (called from its
        threads)."""

        def auto(request: PlacementRequest) -> AutoPlacement | None:
            choice = self.session.auto_placement(request)
            if choice is None:
                return None
            return AutoPlacement(
                choice.offload_layers, choice.n_cpu_moe, choice.tensor_split, choice.reason
            )

        panel.estimator = self.session.estimate_placement
        panel.auto_placement = auto

    def refresh_fit_labels(self) -> None:
        """Work the fit column out again when the free GPU memory moved (the first NVML sample,
        the engine's devices, another program taking VRAM): in a thread, which posts them."""
        free = self.session.free_gpu_bytes()
        old = self._fit_free
        if free == old or not self.fit_models:
            return
        if free is not None and old is not None and abs(free - old) < max(FIT_SLACK, old // 20):
            return
        self._fit_free = free
        models = list(self.fit_models)
        self.run_worker(
            partial(self._compute_fit_labels, models), thread=True, group="fit", exclusive=True
        )

    def _compute_fit_labels(self, models: list[Any]) -> None:
        labels = {str(model.path): self.session.fit_label(model.info) for model in models}
        with contextlib.suppress(LookupError):
            self.main_screen.post_message(FitLabelsChanged(labels))

    def fit_labels_changed(self, labels: dict[str, str]) -> bool:
        """Handler side of ``FitLabelsChanged``: keep the labels; whether any changed."""
        changed = any(self.fit_labels.get(key, "") != label for key, label in labels.items())
        self.fit_labels.update(labels)
        return changed

    def fit_label(self, model: Any) -> str:
        """The browser's fit column, from what a thread worked out (never computed here)."""
        return self.fit_labels.get(str(model.path), "")

    def remember_loaded(self, loaded: LoadedEvent) -> None:
        """A model loaded: first in the recent list, and listed in the browser wherever it lies."""
        self.session.remember(loaded)
        self.save()
        self.list_opened_models([Path(loaded.settings.model_path)])

    def _write_settings(self, snapshot: config_mod.Settings) -> None:
        """Thread worker: the atomic write fsyncs, which must not stall the event loop. It
        writes a copy taken on the UI thread: the handlers go on changing the live settings."""
        try:
            with self._save_lock:
                elsewhere = config_mod.save_settings(snapshot)
            if elsewhere is not None and not self._told_unsaved:
                self._told_unsaved = True  # once a run: every save goes there until it is fixed
                self.call_from_thread(
                    notify_literal,
                    self,
                    f"{config_mod.settings_path()} does not parse, so it is left as is: this "
                    f"run's settings are saved in {elsewhere} until it is fixed.",
                    title="Settings",
                    severity="warning",
                    timeout=15,
                )
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
        snapshot = copy.deepcopy(self.settings)
        self.run_worker(
            partial(self._write_settings, snapshot),
            thread=True,
            group="save-settings",
            exclusive=False,
        )

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
