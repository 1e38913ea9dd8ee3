"""Saved conversations: pick one to carry on, or delete it."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui_llm.store import ConversationStore, ConversationSummary, StoreError
from tui_llm.widgets.literal import literal, notify_literal

SHOWN_MAX_CHARS = 200  # a longer title or model name (a pasted page) is cut, with a marker


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def summary_prompt(summary: ConversationSummary) -> Content:
    """Two lines for one conversation: its title as typed, then when, how long, which model."""
    model = (
        Content(" · ") + literal(summary.model_name, max_chars=SHOWN_MAX_CHARS, one_line=True)
        if summary.model_name
        else Content()
    )
    return (
        literal(summary.title, max_chars=SHOWN_MAX_CHARS, one_line=True)
        + Content(f"\n  {_when(summary.updated)} · {summary.message_count} messages")
        + model
    )


class HistoryScreen(ModalScreen[int | None]):
    """Newest first; Enter opens, Delete removes, Esc closes. Returns a conversation id."""

    BINDINGS = [
        Binding("escape,f3", "close", "Close"),
        Binding("delete,ctrl+d", "delete", "Delete"),
    ]

    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > Vertical {
        width: 90%; max-width: 110; height: 80%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HistoryScreen OptionList { height: 1fr; }
    HistoryScreen .hint { color: $text-muted; }
    """

    def __init__(self, store: ConversationStore) -> None:
        super().__init__()
        self.store = store
        self.summaries: list[ConversationSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Conversations", classes="title")
            yield OptionList(id="conversations")
            yield Static("Enter open · Delete remove · Esc close", classes="hint", markup=False)

    def on_mount(self) -> None:
        self._reload()
        self.query_one(OptionList).focus()

    def _reload(self) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        try:
            self.summaries = self.store.list_conversations(limit=200)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
            self.summaries = []
        for summary in self.summaries:
            options.add_option(Option(summary_prompt(summary), id=str(summary.id)))
        if not self.summaries:
            options.add_option(Option("No saved conversations yet.", disabled=True))
        else:
            options.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(int(event.option.id))

    def action_delete(self) -> None:
        options = self.query_one(OptionList)
        index = options.highlighted
        if index is None or index >= len(self.summaries):
            return
        try:
            self.store.delete_conversation(self.summaries[index].id)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
        self._reload()

    def action_close(self) -> None:
        self.dismiss(None)
