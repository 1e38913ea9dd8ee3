"""The one main screen: model browser, chat, offload control and GPU gauge."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, TabbedContent, TabPane

from tui_llm.config import model_file_identity
from tui_llm.engine.client import EngineError
from tui_llm.messages import (
    ApplyLoadSettings,
    FitLabelsChanged,
    GpuSampled,
    LoadModelRequested,
    ModelsOpened,
    ModelsScanned,
)
from tui_llm.screens.chat_screen import ChatScreen
from tui_llm.screens.engine_screen import EMPTY_CHAT, StatusBar
from tui_llm.screens.sweep_run import SweepRun
from tui_llm.store.recorder import ConversationRecorder
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.hub import HubPanel
from tui_llm.widgets.hub_messages import HubModelDownloaded
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.offload import OffloadPanel
from tui_llm.widgets.prompt import PromptInput
from tui_llm.widgets.textline import TextLine


class MainScreen(ChatScreen):
    """Chat with the loaded model while the offload and the gauge stay in view."""

    # Below 140 columns the browser would leave the chat under 50 columns: it opens on Ctrl+B.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]
    AUTO_FOCUS = "#prompt"

    # Priority: the message box (a TextArea) binds Ctrl+E/K/Y itself; ours win everywhere.
    BINDINGS = [
        Binding("f1", "app.help", "Help", priority=True),
        Binding("escape", "stop", "Stop", show=False),
        Binding("ctrl+r", "regenerate", "Regenerate", show=False),
        Binding("ctrl+e", "edit_last", "Edit last", show=False, priority=True),
        Binding("ctrl+y", "copy_reply", "Copy reply", show=False, priority=True),
        Binding("ctrl+k", "copy_code", "Copy code", show=False, priority=True),
        Binding("ctrl+n", "new_chat", "New chat", show=False, priority=True),
        Binding("ctrl+t", "sampling", "Sampling", priority=True),
        Binding("ctrl+b", "toggle_browser", "Models", priority=True),
        Binding("f4", "toggle_hub", "Hub", priority=True),
        Binding("ctrl+o", "focus_offload", "Offload", priority=True),
        Binding("ctrl+l", "pick_model", "Pick model", show=False, priority=True),
        Binding("f2", "recent", "Recent", show=False, priority=True),
        Binding("f3", "history", "History", show=False, priority=True),
        Binding("f7", "cycle_model(-1)", "Prev model", show=False, priority=True),
        Binding("f8", "cycle_model(1)", "Next model", show=False, priority=True),
        Binding("f5", "restart_engine", "Restart engine", show=False, priority=True),
        Binding("f6", "toggle_thinking", "Thinking", show=False, priority=True),
        *[Binding(str(n), f"recent_model({n})", show=False) for n in range(1, 10)],
    ]

    DEFAULT_CSS = """
    MainScreen #body { height: 1fr; }
    MainScreen #sidebar { width: 2fr; min-width: 40; }
    MainScreen #sources { height: 1fr; }
    MainScreen #sources > ContentSwitcher { height: 1fr; }
    MainScreen TabPane { height: 1fr; padding: 0; }
    MainScreen #center { width: 3fr; }
    MainScreen #right { width: 52; }
    MainScreen.-narrow #sidebar { display: none; }
    MainScreen.-narrow #right { width: 34; }
    MainScreen.-narrow.-show-browser #sidebar { display: block; width: 1fr; }
    MainScreen.-narrow.-show-browser #center { display: none; }
    MainScreen.-wide.-hide-browser #sidebar { display: none; }
    MainScreen #banner { height: auto; padding: 0 1; background: $warning 30%; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            with Vertical(id="sidebar"), TabbedContent(id="sources"):
                with TabPane("Local", id="tab-local"):
                    yield ModelBrowser(id="browser")
                with TabPane("Hugging Face", id="tab-hub"):
                    yield HubPanel(id="hub")
            with Vertical(id="center"):
                yield TextLine(id="banner")
                yield ChatView(EMPTY_CHAT, id="chat")
                yield PromptInput(id="prompt")
            with Vertical(id="right"):
                yield OffloadPanel(id="offload")
                yield GpuGauge(id="gauge")
        yield StatusBar(id="status", hide_empty=False)
        yield Footer()

    async def on_mount(self) -> None:
        self.recorder = ConversationRecorder(
            self.tui.store,
            on_error=lambda text: notify_literal(self, text, severity="warning", timeout=10),
        )
        self.query_one(PromptInput).focus()
        self.conversation.system_prompt = self.tui.system_prompt
        panel = self.query_one(OffloadPanel)
        self.tui.configure_offload_panel(panel)
        browser = self.query_one(ModelBrowser)
        browser.fit_for = self.tui.fit_label
        self.query_one(HubPanel).free_memory = self.tui.session.free_memory
        reason = getattr(self.tui.monitor, "reason", None)
        if reason:
            self.query_one(GpuGauge).set_unavailable(reason)
        self.update_status()
        if self.tui.autostart_engine:
            self.start_engine()

    # ---- panels and models ----------------------------------------------------------------------

    def action_toggle_browser(self) -> None:
        """Ctrl+B: the local model browser, its filter focused; again, back to the chat."""
        self._toggle_source("tab-local")

    def action_toggle_hub(self) -> None:
        """F4: the Hugging Face tab, its search box focused; again, back to the chat."""
        self._toggle_source("tab-hub")

    def show_hub(self) -> None:
        """Open the Hugging Face tab with its search box focused (the palette's command)."""
        self._show_source("tab-hub")

    def _toggle_source(self, tab: str) -> None:
        """Show the sidebar on ``tab`` ("tab-local" or "tab-hub"), or back to the chat when it
        is shown there already (narrow: over the chat; wide: with the focus in it)."""
        pane = self.query_one(f"#{tab}", TabPane)
        if self.has_class("-narrow"):
            shown = self.has_class("-show-browser")
        else:
            shown = not self.has_class("-hide-browser") and pane.has_focus_within
        if shown and self.query_one(TabbedContent).active == tab:
            self.remove_class("-show-browser")
            self.query_one(PromptInput).focus()
        else:
            self._show_source(tab)

    def _show_source(self, tab: str) -> None:
        if self.has_class("-narrow"):
            self.add_class("-show-browser")
        self.remove_class("-hide-browser")
        self.query_one(TabbedContent).active = tab
        if tab == "tab-hub":
            self.query_one(HubPanel).focus_search()
        else:
            self.query_one(ModelBrowser).focus_filter()

    def action_focus_offload(self) -> None:
        panel = self.query_one(OffloadPanel)
        if panel.has_focus:
            self.query_one(PromptInput).focus()
        else:
            panel.focus()

    @on(LoadModelRequested)
    def on_load_requested(self, event: LoadModelRequested) -> None:
        if self.has_class("-show-browser"):
            self.remove_class("-show-browser")
        self.focus_prompt()
        self.load_model(event.path)

    @on(HubModelDownloaded)
    def on_hub_downloaded(self, event: HubModelDownloaded) -> None:
        """A finished download joins the local list at once, ready to load."""
        from tui_llm.catalog.discovery import LocalModel, file_id

        info = event.result.info
        name = f"{event.result.request.repo_id}/{event.path.name}"
        # One stat of the file just written: it names the file, so a later load is not listed
        # again by another path (the blob behind the snapshot link).
        self.query_one(ModelBrowser).add_models(
            [LocalModel(event.path, "huggingface", name, info, None)], [file_id(event.path)]
        )
        self.tui.found_models.append(event.path)

    @on(ApplyLoadSettings)
    def on_apply(self, event: ApplyLoadSettings) -> None:
        self.focus_prompt()
        if self._sweep_holds_engine(say=True):
            return
        if self.loaded is None or self.model_loading:
            self.notify("Nothing loaded to apply the change to.", severity="warning")
            return
        settings = replace(
            self.loaded.settings,
            offload_layers="all" if event.offload_layers == "all" else int(event.offload_layers),
            n_ctx=event.n_ctx,
            flash_attn=event.flash_attn,
            kv_cache_type=event.kv_cache_type,
            n_cpu_moe=event.n_cpu_moe,
            tensor_split=event.tensor_split,
            split_mode=event.split_mode,
            main_gpu=event.main_gpu,
        )
        self.run_load(settings)

    @on(OffloadPanel.SplitRequested)
    def on_split_requested(self, _event: OffloadPanel.SplitRequested) -> None:
        """``s`` in the offload panel: type the split between the devices."""
        from tui_llm.screens.split import SplitScreen

        panel = self.query_one(OffloadPanel)

        def chosen(split: tuple[float, ...] | None) -> None:
            panel.focus()
            if split is not None:
                panel.set_split(split)

        self.app.push_screen(SplitScreen(panel.devices, panel.tensor_split), chosen)

    # ---- the offload sweep -------------------------------------------------------------------

    sweep_run: SweepRun | None = None

    @on(OffloadPanel.SweepRequested)
    def on_sweep_requested(self, _event: OffloadPanel.SweepRequested) -> None:
        self.action_offload_sweep()

    def action_offload_sweep(self) -> None:
        """The sweep screen: the running sweep's, else a new one for the loaded model."""
        from tui_llm.screens.sweep import SweepScreen

        run = self.sweep_run
        if run is None or not (run.holds_engine or run.is_for(self.loaded)):
            if self.loaded is None:
                self.notify("Load a model first: the sweep measures the loaded model.")
                return
            run = self.sweep_run = SweepRun(self, self.loaded)
        # Back from the sweep, the message box has the focus (the sweep was opened from the
        # offload panel, whose single-letter keys would take what the user types next).
        self.app.push_screen(SweepScreen(run), lambda _result: self.focus_prompt())

    def _sweep_holds_engine(self, say: bool = False) -> bool:
        """Whether a sweep is using the engine (``say``: tell the user their load must wait)."""
        holds = self.sweep_run is not None and self.sweep_run.holds_engine
        if holds and say:
            self.notify(
                "An offload sweep is using the model: wait for it or stop it (b in the offload "
                "panel shows it).",
                severity="warning",
            )
        return holds

    def start_reply(self) -> None:
        """A reply waits while a sweep holds the engine: it starts when the model is back."""
        if self._sweep_holds_engine():
            self._send_when_loaded = True
            self.notify("An offload sweep is running; your message is sent when it ends.")
            return
        super().start_reply()

    def load_model(self, path: Path, offload: int | str | None = None) -> None:
        if not self._sweep_holds_engine(say=True):
            super().load_model(path, offload)

    def on_engine_crashed(self, error: EngineError) -> None:
        """A level that crashed the engine is the sweep's: it notes the level and goes on."""
        if not self._sweep_holds_engine():
            super().on_engine_crashed(error)

    @on(ModelsScanned)
    def on_models_scanned(self, event: ModelsScanned) -> None:
        self.tui.models_listed(event.models, event.fit_labels)
        browser = self.query_one(ModelBrowser)
        browser.add_models(event.models, event.file_ids)
        browser.set_scanning(not event.done)

    @on(ModelsOpened)
    def on_models_opened(self, event: ModelsOpened) -> None:
        self.tui.models_listed(event.models, event.fit_labels, scanned=False)
        self.query_one(ModelBrowser).add_models(event.models, event.file_ids, opened=True)

    @on(GpuSampled)
    def on_gpu_sampled(self, event: GpuSampled) -> None:
        self.query_one(GpuGauge).update_snapshot(event.snapshot, self.tui.sample_interval_s)
        self.tui.refresh_fit_labels()

    @on(FitLabelsChanged)
    def on_fit_labels_changed(self, event: FitLabelsChanged) -> None:
        if self.tui.fit_labels_changed(event.labels):
            self.query_one(ModelBrowser).refresh_fit()

    def action_pick_model(self) -> None:
        self.tui.action_pick_model()

    def action_recent(self) -> None:
        self.tui.action_recent_models()

    def action_recent_model(self, number: int) -> None:
        recent = self.tui.recent_models()
        if 0 < number <= len(recent):
            self.load_model(recent[number - 1])
        else:
            notify_literal(self, f"No recent model number {number}.")

    def action_cycle_model(self, step: int) -> None:
        models = [Path(m.path) for m in self.query_one(ModelBrowser).models if m.info is not None]
        if not models:
            self.notify("No models found yet.")
            return
        current = model_file_identity(self.model_path) if self.model_path else None
        identities = [model_file_identity(m) for m in models]
        index = identities.index(current) if current in identities else -1 if step > 0 else 0
        self.load_model(models[(index + step) % len(models)])
