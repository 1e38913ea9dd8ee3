"""The engine side of the main screen: starting the engine, loading and reloading models.

``MainScreen`` builds on this; keeping the load lifecycle here keeps each part readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual import work
from textual.screen import Screen

from tui_llm.catalog.demo import DEMO_NOTE, is_demo_model
from tui_llm.config import model_file_identity
from tui_llm.conversation import Conversation
from tui_llm.engine.client import STOP_WAIT_S, EngineError
from tui_llm.engine.protocol import LoadedEvent, LoadSettings
from tui_llm.placement import experts_text
from tui_llm.store.recorder import ConversationRecorder
from tui_llm.textsafe import make_inert
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.offload import OffloadPanel
from tui_llm.widgets.prompt import PromptInput
from tui_llm.widgets.textline import TextLine

if TYPE_CHECKING:
    from tui_llm.app import TuiLlmApp

EMPTY_CHAT = (
    "No model loaded yet. Pick one in the model browser (Ctrl+B) or the picker (Ctrl+L); "
    "the built-in demo model is always there. F1 lists every key."
)


def file_name(path: str | Path) -> str:
    """A model's file name for a line of text: inert, on one line (a name may hold a newline)."""
    return make_inert(Path(path).name, max_chars=500, one_line=True)


def collect_all_and_freeze() -> None:
    """Collect every generation, frozen objects included, then freeze the survivors.

    A frozen object is never collected: without the unfreeze, what an earlier freeze kept and
    has since been dropped (a replaced model's objects, cleared messages) stayed in memory for
    good, about 0.6 MiB per reload with a reply (docs/reliability.md, "Reload soak").
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class StatusBar(TextLine):
    """One line: model, GPU split, context meter, what the engine is doing."""

    FIXED_HEIGHT = True

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    StatusBar.-warn { background: $warning 40%; }
    StatusBar.-error { background: $error 40%; }
    """


class EngineScreen(Screen[None]):
    """Owns what is loaded: the engine start, loads in the background, crash and restart."""

    def __init__(self, initial_model: Path | None = None) -> None:
        super().__init__()
        self.initial_model = initial_model
        self.conversation = Conversation()
        self.generating = False
        self.model_loading = False
        self._reply_task: asyncio.Task[None] | None = None
        self._send_when_loaded = False
        self.recorder = ConversationRecorder(None)
        self._n_past = 0

    @property
    def tui(self) -> TuiLlmApp:
        """The app, typed: screens never import the app module (it imports them)."""
        return cast("TuiLlmApp", self.app)

    @property
    def loaded(self) -> LoadedEvent | None:
        """What the engine has loaded (the session owns it)."""
        return self.tui.session.loaded

    @property
    def model_path(self) -> Path | None:
        """The model loaded last, kept after a crash (the session owns it)."""
        return self.tui.session.model_path

    def focus_prompt(self) -> None:
        """Focus the message box; focusing it again would repaint it for nothing."""
        prompt = self.query_one(PromptInput)
        if self.focused is not prompt:
            prompt.focus()

    # ---- engine lifecycle ---------------------------------------------------------------------

    @work(group="engine", exclusive=False)
    async def start_engine(self) -> None:
        try:
            ready = await self.tui.engine.start()
        except (EngineError, OSError) as exc:
            if self.app.is_running:
                self.show_banner(f"The engine did not start: {exc}")
            return
        if not self.app.is_running:
            return  # quit while the engine started: the widgets are being taken down
        warning = self.tui.session.offload_warning(ready)
        if warning:
            self.query_one(OffloadPanel).warning = warning
        self.query_one(GpuGauge).set_engine(ready.pid, ready.devices, (), 0)
        self.tui.monitor_engine_pid(ready.pid)
        if self.initial_model is not None:
            self.load_model(self.initial_model)
        elif self.tui.settings.last_model and Path(self.tui.settings.last_model).exists():
            self.chat_view.set_empty_text(
                EMPTY_CHAT + f"\nLast model: {file_name(self.tui.settings.last_model)} "
                "(press 1 or F2 to load it)."
            )

    @property
    def chat_view(self) -> ChatView:
        return self.query_one(ChatView)

    def show_banner(self, text: str) -> None:
        self.query_one("#banner", TextLine).show(text)

    def settings_for(self, path: Path, offload: int | str | None = None) -> LoadSettings:
        """Load settings for a model: its saved profile, else the defaults; Auto resolved."""
        settings = self.tui.session.load_settings_for(path)
        if offload is not None:
            layers = self.tui.session.resolve_offload(path, offload, settings)
            settings = replace(settings, offload_layers=layers)
        return settings

    def load_model(self, path: Path, offload: int | str | None = None) -> None:
        new_model = self.model_path is None or model_file_identity(path) != model_file_identity(
            self.model_path
        )
        self.run_load_path(path, offload, new_model)

    @work(group="load-path", exclusive=True)
    async def run_load_path(self, path: Path, offload: int | str | None, new_model: bool) -> None:
        """Resolve the settings (``auto`` runs the estimate) in a thread, then load."""
        settings = await asyncio.to_thread(self.settings_for, path, offload)
        too_big = await asyncio.to_thread(self.tui.session.too_big_reason, path, settings)
        if not self.app.is_running:
            return
        if too_big is not None:
            notify_literal(
                self,
                f"{file_name(path)} cannot load here: {too_big}",
                title="Too big",
                severity="error",
                timeout=12,
            )
            return
        self.run_load(settings, new_model=new_model)

    @work(group="load", exclusive=True)
    async def run_load(
        self, settings: LoadSettings, new_model: bool = False, restoring: bool = False
    ) -> None:
        """Reload in the background: stop a running reply first, keep the chat on screen.

        A load that fails brings back the model that was loaded before, once: ``restoring``
        marks that attempt, whose failure leaves nothing loaded rather than trying again.
        """
        await self.stop_reply()
        panel = self.query_one(OffloadPanel)
        self.model_loading = True
        previous = self.loaded.settings if self.loaded is not None and not restoring else None
        name = file_name(settings.model_path)
        panel.status = f"Loading {name}…"
        panel.show_progress(0.0)
        self.update_status()

        def on_progress(progress: float) -> None:
            panel.show_progress(progress)
            if progress >= 1.0:
                # llama.cpp's progress covers the weights; the context (KV cache, compute
                # buffers) comes after, and takes a while on a GPU or a remote device.
                panel.status = f"Loading {name}: weights in, setting up the context…"

        try:
            loaded, note = await self.tui.session.load(settings, on_progress=on_progress)
        except EngineError as exc:
            if not self.app.is_running:
                return
            panel.show_progress(None)
            self.model_loading = False
            panel.status = ""
            notify_literal(self, str(exc), title="Load failed", severity="error", timeout=10)
            if previous is not None and exc.kind not in ("cancelled", "not_answering"):
                panel.status = f"Reloading {file_name(previous.model_path)}…"
                self.run_load(previous, restoring=True)
            else:
                self.update_status()
            return
        finally:
            if self.app.is_running:
                panel.show_progress(None)
        self.model_loading = False
        if not self.app.is_running:
            return
        self.on_loaded(loaded, note, new_model)
        collect_all_and_freeze()  # the loaded model's Python objects are long-lived too

    def on_loaded(self, loaded: LoadedEvent, note: str | None, new_model: bool) -> None:
        self._show_loaded(loaded, note)
        # The chat column changes one frame later: painted together with the panel, the gauge
        # and the status line, a model switch was one 20-30 ms frame on a small machine.
        self.call_after_refresh(self._show_model_notes, loaded, new_model)

    def _show_loaded(self, loaded: LoadedEvent, note: str | None) -> None:
        panel = self.query_one(OffloadPanel)
        if any(d.kind != "cpu" for d in loaded.devices) and panel.warning.startswith("No GPU"):
            panel.warning = ""
        self.tui.remember_loaded(loaded)
        panel.set_loaded(
            loaded.offloaded_layers,
            loaded.total_layers,
            loaded.settings.n_ctx,
            loaded.settings.flash_attn,
            loaded.settings.kv_cache_type,
            moe_layers=self.tui.session.moe_layers,
            n_cpu_moe=loaded.settings.n_cpu_moe,
            devices=tuple(device.name for device in self.tui.session.offload_devices()),
            tensor_split=loaded.settings.tensor_split,
            split_mode=loaded.settings.split_mode,
            main_gpu=loaded.settings.main_gpu,
        )
        took = f"{loaded.load_seconds:.1f} s"
        kept = (
            f", {loaded.kv_restored_tokens} tokens of context kept"
            if (loaded.kv_restored_tokens)
            else ""
        )
        panel.status = note or f"Loaded in {took}{kept}"
        self.query_one(GpuGauge).set_engine(
            self.tui.engine.pid,
            loaded.devices,
            loaded.buffers,
            loaded.offloaded_layers,
            loaded.layers_by_device,
            experts=(
                experts_text(loaded.n_layer, loaded.offloaded_layers, loaded.settings.n_cpu_moe)
                if self.tui.session.moe_layers
                else ""
            ),
            tensor_split=loaded.settings.tensor_split,
        )
        self.update_status()

    def _show_model_notes(self, loaded: LoadedEvent, new_model: bool) -> None:
        """The banner (demo model, chat template) and the empty chat's text."""
        if self.loaded is not loaded:
            return  # another load came in between
        path = Path(loaded.settings.model_path)
        banner = []
        if is_demo_model(path):
            banner.append(DEMO_NOTE)
        if loaded.chat_template_warning:
            banner.append(loaded.chat_template_warning)
        self.show_banner("\n".join(banner))
        if new_model:
            self.chat_view.set_empty_text(f"{file_name(path)} is loaded. Say something.")

    @work(group="engine-restart", exclusive=True)
    async def action_restart_engine(self) -> None:
        """After a crash: a fresh engine, the same model with half the GPU layers. After the
        engine stopped answering: the silent one killed, a fresh one with the same layers."""
        if self.tui.engine.running and self.loaded is not None:
            notify_literal(self, "The engine is running.")
            return
        settings = self.tui.session.last_settings
        crash = self.tui.engine.crash
        stalled = crash is not None and crash.kind == "not_answering"
        if settings is None and not stalled:
            return
        self.show_banner("")
        try:
            await self.tui.engine.start()
        except (EngineError, OSError) as exc:
            if self.app.is_running:
                self.show_banner(f"The engine did not start: {exc}")
            return
        if not self.app.is_running:
            return
        self.tui.monitor_engine_pid(self.tui.engine.pid)
        self.update_status()
        if settings is None:
            return  # nothing was loaded: the new engine is all there is to do
        layers = settings.offload_layers
        total = self.query_one(OffloadPanel).total_layers or 1
        current = total if layers == "all" else int(layers)
        fewer = current if stalled else max(0, current // 2)
        self.run_load(replace(settings, offload_layers=fewer), new_model=False)

    def on_engine_crashed(self, error: EngineError) -> None:
        self.tui.session.crashed()
        if error.kind == "not_answering":
            action = "Press F5 to kill it and start a new one."
        else:
            action = "Press F5 to restart the engine with fewer GPU layers."
        self.show_banner(f"{error} — the conversation is kept. {action}")
        self.update_status()

    async def stop_reply(self) -> None:
        """Stop a streaming reply: the engine's own end (with its figures) when it comes within
        ``STOP_WAIT_S``, else the reply is cut here and the engine finishes in the background."""
        task = self._reply_task
        if task is None:
            return
        await self.tui.engine.cancel_all()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_S)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, STOP_WAIT_S)

    # ---- status line --------------------------------------------------------------------------

    def update_status(self) -> None:
        status = self.query_one(StatusBar)
        parts = []
        if self.loaded is not None:
            parts.append(file_name(self.loaded.settings.model_path))
            parts.append(f"GPU {self.loaded.offloaded_layers}/{self.loaded.total_layers}")
            n_ctx = self.loaded.settings.n_ctx
            used = min(self._n_past, n_ctx)
            parts.append(f"ctx {used}/{n_ctx} ({used * 100 // max(n_ctx, 1)}%)")
            status.set_class(used >= 0.85 * n_ctx, "-warn")
        else:
            parts.append("no model")
            status.remove_class("-warn")
        if self.model_loading:
            parts.append("loading…")
        elif self.generating:
            parts.append("generating… (Esc stops)")
        elif self.tui.engine.crash is not None:
            parts.append("engine stopped (F5 restarts)")
        status.set_class(self.tui.engine.crash is not None, "-error")
        status.show(" · ".join(parts))
