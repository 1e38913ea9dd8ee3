"""The one main screen: model browser, chat, offload control and GPU gauge."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, TabbedContent, TabPane

from tui_llm.config import model_file_identity
from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import DoneEvent, LoadedEvent, TokensEvent
from tui_llm.markdown_code import code_blocks
from tui_llm.messages import (
    ApplyLoadSettings,
    FitLabelsChanged,
    GpuSampled,
    LoadModelRequested,
    ModelsOpened,
    ModelsScanned,
    PromptSubmitted,
)
from tui_llm.screens.engine_screen import EMPTY_CHAT, EngineScreen, StatusBar
from tui_llm.store.recorder import ConversationRecorder
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.chat import ChatView, format_stats, thinking_title
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.hub import HubPanel
from tui_llm.widgets.hub_messages import HubModelDownloaded
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.offload import OffloadPanel
from tui_llm.widgets.prompt import PromptInput
from tui_llm.widgets.textline import TextLine

if TYPE_CHECKING:
    pass


class MainScreen(EngineScreen):
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

    # ---- chat ------------------------------------------------------------------------------

    @on(PromptSubmitted)
    async def send_prompt(self, event: PromptSubmitted) -> None:
        if self.loaded is None and not self.model_loading and not self._engine_starting():
            self.query_one(PromptInput).restore(event.text)
            self.notify("Load a model first (Ctrl+B or Ctrl+L).", severity="warning")
            return
        if self.generating:
            self.query_one(PromptInput).restore(event.text)
            self.notify("A reply is still streaming (Esc stops it).", severity="warning")
            return
        self.conversation.add_user(event.text)
        model = self.loaded.settings.model_path if self.loaded else None
        self.recorder.user(event.text, model, self.conversation.system_prompt)
        await self.chat_view.add_message("user", event.text)
        if self.loaded is None:
            # Sent while the model loads: the reply starts as soon as it is ready.
            self._send_when_loaded = True
            self.notify("The model is still loading; your message is sent when it is ready.")
            return
        self.start_reply()

    def _engine_starting(self) -> bool:
        return (
            self.initial_model is not None
            and self.tui.engine.crash is None
            and (self.loaded is None and self.model_path is None)
        )

    def on_loaded(self, loaded: LoadedEvent, note: str | None, new_model: bool) -> None:
        super().on_loaded(loaded, note, new_model)
        self.tui.refresh_fit_labels()  # the engine's devices are known now
        if self._send_when_loaded and self.conversation.last_role == "user":
            self._send_when_loaded = False
            self.start_reply()

    def _collect_and_freeze(self) -> None:
        """Collect what a reply left behind and freeze the survivors (about 5 ms)."""
        if self.generating:
            return  # the next reply has begun; its own end collects
        gc.collect()
        gc.freeze()

    def start_reply(self) -> None:
        self.generating = True
        self.update_status()
        self._reply_task = asyncio.create_task(self.stream_reply())

    async def on_unmount(self) -> None:
        """Quit while a reply streams: stop it, and let it save what it had (the app closes the
        store after its screens)."""
        task = self._reply_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(task, 5)

    async def stream_reply(self) -> None:
        show_thinking = self.tui.settings.show_thinking
        view = await self.chat_view.add_message("assistant", show_thinking=show_thinking)
        text = reasoning = ""
        done: DoneEvent | None = None
        self.recorder.reply_started()
        try:
            async for event in self.tui.engine.generate(
                self.conversation.for_model(), self.tui.sampling
            ):
                if isinstance(event, TokensEvent):
                    text += event.text
                    reasoning += event.reasoning
                    self.recorder.reply_progress(text, reasoning)
                    if event.reasoning:
                        await view.append_reasoning(event.reasoning)
                    if event.text:
                        await view.append(event.text)
                    self.chat_view.scroll_end(animate=False)
                else:
                    done = event
        except EngineError as exc:
            self._record_interrupted(text, reasoning)
            if text or reasoning:
                self.conversation.add_reply(text, reasoning)
            if self.app.is_running:
                await view.finish(text)
                view.set_stats(f"interrupted: {exc}")
                view.add_class("-error")
                if exc.kind == "bad_request":
                    notify_literal(self, str(exc), severity="error", timeout=10)
        except asyncio.CancelledError:
            self._record_interrupted(text, reasoning)
            if text or reasoning:
                self.conversation.add_reply(text, reasoning)
            if self.app.is_running:
                await view.finish(text)
                view.set_stats("stopped")
            raise
        finally:
            self.generating = False
            self._reply_task = None
            if self.app.is_running:
                self.update_status()
                # What the reply left: its garbage collected, its survivors frozen, so the
                # collections of later replies do not walk them again.
                self.call_after_refresh(self._collect_and_freeze)
        if done is not None:
            self.conversation.add_reply(done.text, done.reasoning)
            self.recorder.reply_finished(
                done.text,
                done.stats,
                partial=done.finish_reason == "cancelled",
                reasoning=done.reasoning,
            )
            self._n_past = done.n_past
            if not self.app.is_running:
                return
            await view.finish(done.text, done.reasoning, done.stats)
            view.set_stats(format_stats(done.stats, done.finish_reason))
            self.update_status()
            if done.finish_reason == "context":
                self.notify(
                    "The context is full: start a new chat (Ctrl+N) or raise the context size "
                    "in the offload panel (c, then Enter).",
                    severity="warning",
                    timeout=10,
                )
        if self.app.is_running:
            self.chat_view.scroll_end(animate=False)

    def _record_interrupted(self, text: str, reasoning: str) -> None:
        """Keep an interrupted reply's text; one with nothing at all is not kept."""
        self.recorder.reply_finished(text, None, partial=True, reasoning=reasoning)
        if not (text or reasoning):
            self.recorder.truncate(len(self.conversation.turns))

    async def action_stop(self) -> None:
        if self.generating:
            await self.stop_reply()

    async def _remove_last_views(self, roles: tuple[str, ...]) -> None:
        views = self.chat_view.messages()
        while views and views[-1].role in roles:
            await views.pop().remove()

    async def action_regenerate(self) -> None:
        if self.generating or self.loaded is None:
            return
        if not self.conversation.drop_last_reply():
            self.notify("No reply to regenerate.")
            return
        self.recorder.truncate(len(self.conversation.turns))
        await self._remove_last_views(("assistant",))
        self.start_reply()

    async def action_edit_last(self) -> None:
        if self.generating:
            return
        text = self.conversation.take_last_user()
        if text is None:
            self.notify("No message to edit.")
            return
        self.recorder.truncate(len(self.conversation.turns))
        views = self.chat_view.messages()
        while views:
            view = views.pop()
            await view.remove()
            if view.role == "user":
                break
        prompt = self.query_one(PromptInput)
        prompt.text = text
        prompt.focus()

    def action_copy_reply(self) -> None:
        reply = self.conversation.last_reply()
        if not reply:
            self.notify("No reply to copy.")
            return
        self.app.copy_to_clipboard(reply)
        notify_literal(self, f"Copied the last reply ({len(reply)} characters).")

    def action_copy_code(self) -> None:
        reply = self.conversation.last_reply() or ""
        blocks = code_blocks(reply)
        if not blocks:
            self.notify("The last reply has no code block.")
            return
        self.app.copy_to_clipboard(blocks[-1])
        self.notify("Copied the last code block.")

    def action_toggle_thinking(self) -> None:
        """Open or close the thinking of the last reply that has some (F6)."""
        for view in reversed(self.chat_view.messages()):
            if view.toggle_thinking():
                return
        self.notify("No reply with thinking in this conversation.")

    async def action_new_chat(self) -> None:
        await self.stop_reply()
        self.conversation.clear()
        self.recorder.new()
        self._n_past = 0
        await self.chat_view.clear_messages()
        self.update_status()

    def action_history(self) -> None:
        """Saved conversations (F3): pick one to carry on with the loaded model."""
        from tui_llm.screens.history import HistoryScreen

        store = self.recorder.store
        if store is None:
            self.notify("Conversations are not being saved (see the earlier warning).")
            return

        def opened(conversation_id: int | None) -> None:
            if conversation_id is not None:
                self.run_worker(
                    self.open_conversation(conversation_id), group="history", exclusive=True
                )

        self.app.push_screen(HistoryScreen(store), opened)

    async def open_conversation(self, conversation_id: int) -> None:
        from tui_llm.store import StoreError

        store = self.recorder.store
        if store is None:
            return
        await self.stop_reply()
        try:
            stored = store.load(conversation_id)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
            return
        self.conversation = stored.to_conversation()
        self.recorder.resume(stored)
        await self.chat_view.clear_messages()
        for message in stored.messages:
            if message.role == "system":
                continue
            view = await self.chat_view.add_message(
                message.role, message.content, message.reasoning, self.tui.settings.show_thinking
            )
            stats = message.reply_stats()
            if stats is not None:
                view.thinking.title = thinking_title(stats)
                view.set_stats(format_stats(stats, "stopped" if message.partial else "stop"))
            elif message.partial:
                view.set_stats("interrupted")
        self._n_past = 0
        self.update_status()
        notify_literal(self, f"Opened “{stored.title}”.")

    def action_sampling(self) -> None:
        from tui_llm.screens.sampling import SamplingScreen

        def done(result: Any) -> None:
            if result is not None:
                sampling, system = result
                self.tui.set_sampling(sampling, system)
                self.conversation.system_prompt = system

        self.app.push_screen(
            SamplingScreen(self.tui.sampling, self.conversation.system_prompt), done
        )

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
        if self.loaded is None or self.model_loading:
            self.notify("Nothing loaded to apply the change to.", severity="warning")
            return
        settings = replace(
            self.loaded.settings,
            offload_layers="all" if event.offload_layers == "all" else int(event.offload_layers),
            n_ctx=event.n_ctx,
            flash_attn=event.flash_attn,
            kv_cache_type=event.kv_cache_type,
        )
        self.run_load(settings)

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
