"""Saved conversations: pick one to carry on, or delete it."""

from __future__ import annotations

from textual.binding import Binding
from textual.content import Content

from tui_llm.screens.stored_list import StoredListScreen, local_minute
from tui_llm.store import ConversationStore, ConversationSummary
from tui_llm.widgets.literal import literal

SHOWN_MAX_CHARS = 200  # a longer title or model name (a pasted page) is cut, with a marker


def summary_prompt(summary: ConversationSummary) -> Content:
    """Two lines for one conversation: its title as typed, then when, how long, which model."""
    model = (
        Content(" · ") + literal(summary.model_name, max_chars=SHOWN_MAX_CHARS, one_line=True)
        if summary.model_name
        else Content()
    )
    return (
        literal(summary.title, max_chars=SHOWN_MAX_CHARS, one_line=True)
        + Content(f"\n  {local_minute(summary.updated)} · {summary.message_count} messages")
        + model
    )


class HistoryScreen(StoredListScreen):
    """Newest first; Enter opens, Delete removes, Esc closes. Returns a conversation id."""

    BINDINGS = [Binding("escape,f3", "close", "Close")]

    def __init__(self, store: ConversationStore) -> None:
        super().__init__(
            title="Conversations",
            hint="Enter open · Delete remove · Esc close",
            empty="No saved conversations yet.",
            list_id="conversations",
            load=lambda: store.list_conversations(limit=200),
            prompt=summary_prompt,
            delete=lambda summary: store.delete_conversation(summary.id),
        )
        self.store = store
