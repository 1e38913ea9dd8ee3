"""Keeps the conversation on screen saved as it happens: each message, and a streaming reply.

A reply is written as partial when it starts and refreshed at most once a second, so a crash of
the app or the engine loses at most a second of text. A store that fails (corrupt, too new, disk
full) switches saving off and says why once; the chat goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tui_llm.engine.protocol import ReplyStats, SamplingParams
from tui_llm.store.conversations import ConversationStore
from tui_llm.store.records import StoredConversation, StoreError

PARTIAL_SAVE_INTERVAL_S = 1.0


class ConversationRecorder:
    """Mirrors one conversation into the store; every call is one short transaction."""

    def __init__(
        self, store: ConversationStore | None, on_error: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self.on_error = on_error
        self.conversation_id: int | None = None
        self._positions: list[int] = []  # message ids in order of position
        self._reply_id: int | None = None
        self._last_partial_save = 0.0

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def _fail(self, error: StoreError) -> None:
        self.store = None
        if self.on_error is not None:
            self.on_error(f"Conversations are not being saved: {error}")

    def new(self) -> None:
        """The next message starts a new saved conversation."""
        self.conversation_id = None
        self._positions = []
        self._reply_id = None

    def _ensure(self, model_path: str | None, system_prompt: str) -> int | None:
        if self.store is None:
            return None
        if self.conversation_id is None:
            self.conversation_id = self.store.new_conversation(model_path, system_prompt)
            self._positions = []
        return self.conversation_id

    def user(self, text: str, model_path: str | None, system_prompt: str) -> None:
        try:
            conv = self._ensure(model_path, system_prompt)
            if conv is None or self.store is None:
                return
            self.store.set_system_prompt(conv, system_prompt)
            if model_path:
                self.store.set_model_path(conv, model_path)
            self._positions.append(self.store.add_message(conv, "user", text))
        except StoreError as exc:
            self._fail(exc)

    def reply_started(
        self, model_path: str | None = None, settings: SamplingParams | None = None
    ) -> None:
        """A reply begins, written by ``model_path`` with ``settings`` (both kept with it)."""
        try:
            if self.store is None or self.conversation_id is None:
                return
            self._reply_id = self.store.add_message(
                self.conversation_id,
                "assistant",
                "",
                partial=True,
                model_path=model_path,
                settings=settings,
            )
            self._positions.append(self._reply_id)
            self._last_partial_save = time.monotonic()
        except StoreError as exc:
            self._fail(exc)

    def reply_progress(self, text: str, reasoning: str = "") -> None:
        """Save the streamed answer and thinking so far, at most once a second."""
        now = time.monotonic()
        if now - self._last_partial_save < PARTIAL_SAVE_INTERVAL_S:
            return
        self._last_partial_save = now
        self._update_reply(text, reasoning, partial=True, stats=None)

    def reply_finished(
        self, text: str, stats: ReplyStats | None, partial: bool, reasoning: str = ""
    ) -> None:
        self._update_reply(text, reasoning, partial=partial, stats=stats)
        self._reply_id = None

    def _update_reply(
        self, text: str, reasoning: str, partial: bool, stats: ReplyStats | None
    ) -> None:
        try:
            if self.store is None or self._reply_id is None:
                return
            self.store.update_message(
                self._reply_id, text, partial=partial, stats=stats, reasoning=reasoning
            )
        except StoreError as exc:
            self._fail(exc)

    def truncate(self, keep: int) -> None:
        """Forget every message from position ``keep`` on (regenerate, edit)."""
        try:
            if self.store is None or self.conversation_id is None:
                return
            self.store.delete_messages_from(self.conversation_id, keep)
            del self._positions[keep:]
        except StoreError as exc:
            self._fail(exc)

    def resume(self, stored: StoredConversation) -> None:
        """Carry on saving into a conversation loaded from the store."""
        self.conversation_id = stored.id
        self._positions = [m.id for m in stored.messages]
        self._reply_id = None
