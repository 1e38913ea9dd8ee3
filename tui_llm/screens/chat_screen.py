"""The chat half of the main screen: sending, streaming replies (thinking apart), stopping,
regenerating, editing, copying, and saved conversations.

``MainScreen`` lays the widgets out and adds the model browser and the panels; the engine's
lifecycle (start, loads, crashes) is ``EngineScreen``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from textual import on
from textual.css.query import NoMatches

from tui_llm.context_fit import ContextOverflow, ContextPlan, engine_counter, plan_context
from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import DoneEvent, LoadedEvent, TokensEvent
from tui_llm.markdown_code import code_blocks
from tui_llm.messages import PromptSubmitted
from tui_llm.screens.engine_screen import EngineScreen, collect_all_and_freeze
from tui_llm.widgets.literal import notify_literal
from tui_llm.widgets.message_view import format_stats
from tui_llm.widgets.prompt import PromptInput


class ChatScreen(EngineScreen):
    """The conversation with the loaded model; a reply streams while the UI stays live."""

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
        """Stream a reply into the chat; ``generating`` stays true until all of it is shown,
        saved and counted (the context meter, the figures), so nothing waits on half of it."""
        try:
            await self._stream_reply()
        finally:
            self.generating = False
            self._reply_task = None
            if self.app.is_running:
                self.update_status()
                # What the reply left: its garbage collected, its survivors frozen, so the
                # collections of later replies do not walk them again.
                self.call_after_refresh(self._collect_and_freeze)

    async def _plan_context(self) -> ContextPlan | None:
        """What of the conversation the next reply is prompted with (``tui_llm.context_fit``);
        ``None`` when nothing can be sent (said on screen, the message back in the box).
        Raises ``EngineError`` (the chat template failed, the engine is gone)."""
        conversation = self.conversation
        try:
            plan = await plan_context(
                conversation.system_prompt,
                conversation.turns,
                engine_counter(self.tui.engine),
                self.tui.sampling.max_tokens,
                self.tui.settings.context_overflow,
                conversation.first_sent_turn,
            )
        except ContextOverflow as exc:
            advice = (
                "start a new chat (Ctrl+N) or raise the context size (c, then Enter)"
                if self.tui.settings.context_overflow == "stop"
                else "shorten it, or raise the context size (c, then Enter)"
            )
            notify_literal(
                self,
                f"Not sent: {exc}. Your message is back in the box: {advice}.",
                title="Context full",
                severity="error",
                timeout=12,
            )
            await self._take_back_last_message()
            return None
        was_trimmed = conversation.first_sent_turn > 0
        if plan.first_turn != conversation.first_sent_turn:
            conversation.first_sent_turn = plan.first_turn
            shown = sum(
                1 for turn in conversation.turns[: plan.first_turn] if turn.role != "system"
            )
            await self.chat_view.mark_cut(shown)
        if plan.trimmed and not was_trimmed:
            notify_literal(
                self,
                f"The conversation outgrew the context ({plan.n_ctx} tokens): the earliest "
                "messages are no longer sent to the model (the divider in the chat marks where). "
                'Set [chat] context_overflow = "stop" in settings.toml to stop instead.',
                title="Context full",
                severity="warning",
                timeout=12,
            )
        return plan

    async def _take_back_last_message(self) -> None:
        """Put the last user message back in the box, out of the chat and the saved copy."""
        text = self.conversation.take_last_user()
        if text is None:
            return
        self.recorder.truncate(len(self.conversation.turns))
        views = self.chat_view.messages()
        while views:
            view = views.pop()
            await view.remove()
            if view.role == "user":
                break
        self.query_one(PromptInput).restore(text)

    async def _stream_reply(self) -> None:
        plan: ContextPlan | None = None
        failed: EngineError | None = None
        try:
            plan = await self._plan_context()
            if plan is None:
                return
        except EngineError as exc:
            failed = exc  # shown on the reply, as a failure to generate is
        show_thinking = self.tui.settings.show_thinking
        view = await self.chat_view.add_message("assistant", show_thinking=show_thinking)
        text = reasoning = ""
        done: DoneEvent | None = None
        self.recorder.reply_started(
            self.loaded.settings.model_path if self.loaded else None, self.tui.sampling
        )
        try:
            if failed is not None:
                raise failed
            assert plan is not None
            async for event in self.tui.engine.generate(plan.messages, self.tui.sampling):
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
            if text or reasoning:  # first: nothing streamed is lost, whatever saving does
                self.conversation.add_reply(text, reasoning)
            self._record_interrupted(text, reasoning)
            if self.app.is_running:
                await view.finish(text)
                view.set_stats(f"interrupted: {exc}")
                view.add_class("-error")
                if exc.kind == "bad_request":
                    notify_literal(self, str(exc), severity="error", timeout=10)
        except NoMatches:
            # Quitting: the widgets went before this task was cancelled. Keep what streamed.
            if text or reasoning:
                self.conversation.add_reply(text, reasoning)
            self._record_interrupted(text, reasoning)
            return
        except asyncio.CancelledError:
            if text or reasoning:
                self.conversation.add_reply(text, reasoning)
            self._record_interrupted(text, reasoning)
            if self.app.is_running:
                await view.finish(text)
                view.set_stats("stopped")
            raise
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
                then = (
                    "your next message is sent without the earliest ones"
                    if self.tui.settings.context_overflow == "trim"
                    else "start a new chat (Ctrl+N) or raise the context size in the offload "
                    "panel (c, then Enter)"
                )
                notify_literal(
                    self,
                    f"The context is full: the reply stopped there; {then}.",
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
        await self.chat_view.show_end()  # the newest may be unmounted if scrolled far back
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
        await self.chat_view.show_end()  # the newest may be unmounted if scrolled far back
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
        # The old chat's widgets were frozen with the survivors of its replies.
        self.call_after_refresh(collect_all_and_freeze)

    def action_history(self) -> None:
        """Saved conversations (F3): pick one to carry on with the loaded model."""
        from tui_llm.screens.history import HistoryPick, HistoryScreen

        store = self.recorder.store
        if store is None:
            self.notify("Conversations are not being saved (see the earlier warning).")
            return

        def opened(pick: HistoryPick | None) -> None:
            if pick is not None:
                self.run_worker(
                    self.open_conversation(pick.conversation_id, at_position=pick.position),
                    group="history",
                    exclusive=True,
                )

        self.app.push_screen(HistoryScreen(store), opened)

    async def open_conversation(self, conversation_id: int, at_position: int | None = None) -> None:
        """Show a saved conversation to carry on; ``at_position``: scrolled to that message
        (a search's match) instead of its end. Says which model will answer."""
        from tui_llm.screens.resume import history_specs, resume_line
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
        await self.chat_view.show_history(history_specs(stored), self.tui.settings.show_thinking)
        # The replaced chat's objects go; the conversation's live as long as it is open: out of
        # every full collection.
        self.call_after_refresh(collect_all_and_freeze)
        self._n_past = 0
        self.update_status()
        if at_position is not None:
            await self.show_message(
                sum(1 for m in stored.messages if m.position < at_position and m.role != "system")
            )
        loaded = self.loaded.settings.model_path if self.loaded is not None else None
        line, warn = resume_line(stored.title, stored.model_path, loaded)
        notify_literal(self, line, severity="warning" if warn else "information", timeout=10)

    async def show_message(self, index: int) -> None:
        """Scroll the chat so that its ``index``-th message (counting the ones not mounted) is
        at the top, mounting the messages from it on first."""
        await self.chat_view.show_position(index)

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
