"""A modal list of saved things (conversations, sweeps): Enter picks one, Delete removes the
highlighted one, Esc closes; with a search box, typing searches. Subclasses say what is listed,
how it is searched and deleted, and what picking one returns.

A search runs on a thread (a full-text search of a large history takes tens of ms: typing must
not wait for it); only the newest query's results are shown."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from tui_llm.store import StoreError
from tui_llm.widgets.literal import notify_literal

Picked = TypeVar("Picked")


def local_minute(timestamp: float) -> str:
    """Seconds since the epoch as local time, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


class StoredListScreen(ModalScreen[Picked | None]):
    """Dismisses with what ``pick`` makes of the chosen item (``None``: closed); ``summaries``
    are the items listed. Subclasses add their close key and pass what is listed and how."""

    BINDINGS = [Binding("delete,ctrl+d", "delete", "Delete")]

    DEFAULT_CSS = """
    StoredListScreen { align: center middle; }
    StoredListScreen > Vertical {
        width: 90%; max-width: 110; height: 80%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    StoredListScreen OptionList { height: 1fr; }
    StoredListScreen .hint { color: $text-muted; }
    """

    def __init__(
        self,
        *,
        title: Content | str,
        hint: str,
        empty: str,
        list_id: str,
        load: Callable[[str], Sequence[Any]],
        prompt: Callable[[Any], Content],
        delete: Callable[[Any], None],
        pick: Callable[[Any], Picked],
        search_placeholder: str | None = None,
    ) -> None:
        """``load(query)`` gives the items (each with an ``id``) for what is in the search box
        (always ``""`` without one) and ``delete`` removes one; both may raise ``StoreError``.
        ``prompt`` draws one item; ``pick`` is what the screen returns for it."""
        super().__init__()
        self._title = title
        self._hint = hint
        self._empty = empty
        self._list_id = list_id
        self._load = load
        self._prompt = prompt
        self._delete = delete
        self._pick = pick
        self._search_placeholder = search_placeholder
        self.query_text = ""
        self.summaries: list[Any] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._title, classes="title")
            if self._search_placeholder is not None:
                yield Input(
                    placeholder=self._search_placeholder, id="search", select_on_focus=False
                )
            yield OptionList(id=self._list_id)
            yield Static(self._hint, classes="hint", markup=False)

    def on_mount(self) -> None:
        self._reload()
        self.query_one(OptionList).focus()

    @property
    def highlighted_item(self) -> Any | None:
        """The item under the cursor, if any."""
        index = self.query_one(OptionList).highlighted
        if index is None or index >= len(self.summaries):
            return None
        return self.summaries[index]

    def _reload(self, keep_index: int = 0) -> None:
        try:
            found = list(self._load(self.query_text))
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
            found = []
        self._show(found, keep_index)

    def _show(self, found: list[Any], keep_index: int = 0) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        self.summaries = found
        for index, summary in enumerate(self.summaries):
            options.add_option(Option(self._prompt(summary), id=str(index)))
        if not self.summaries:
            empty = "Nothing found." if self.query_text.strip() else self._empty
            options.add_option(Option(empty, disabled=True))
        else:
            options.highlighted = min(keep_index, len(self.summaries) - 1)

    @on(Input.Changed, "#search")
    def search(self, event: Input.Changed) -> None:
        """Search as the user types (on a thread; a newer query supersedes an older one)."""
        self.query_text = event.value
        self._search(event.value)

    @work(thread=True, exclusive=True, group="stored-list-search")
    def _search(self, query: str) -> None:
        try:
            found, problem = list(self._load(query)), None
        except StoreError as exc:
            found, problem = [], str(exc)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._searched, query, found, problem)

    def _searched(self, query: str, found: list[Any], problem: str | None) -> None:
        if query != self.query_text or not self.is_attached:
            return  # typed on since, or closed
        if problem is not None:
            notify_literal(self, problem, severity="error")
        self._show(found)

    @on(Input.Submitted, "#search")
    def pick_highlighted(self) -> None:
        item = self.highlighted_item
        if item is not None:
            self.dismiss(self._pick(item))

    def on_key(self, event: events.Key) -> None:
        """Typing in the list goes to the search box; Down in the box goes to the list."""
        if self._search_placeholder is None:
            return
        search = self.query_one("#search", Input)
        options = self.query_one(OptionList)
        if options.has_focus and event.is_printable and event.character:
            event.stop()
            event.prevent_default()
            search.focus()
            search.insert_text_at_cursor(event.character)
        elif search.has_focus and event.key in ("down", "up"):
            event.stop()
            event.prevent_default()
            options.focus()
            if event.key == "down" and options.highlighted is not None:
                options.action_cursor_down()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(self._pick(self.summaries[int(event.option.id)]))

    def action_delete(self) -> None:
        index = self.query_one(OptionList).highlighted
        item = self.highlighted_item
        if index is None or item is None:
            return
        try:
            self._delete(item)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
        self._reload(keep_index=index)

    def action_close(self) -> None:
        self.dismiss(None)
