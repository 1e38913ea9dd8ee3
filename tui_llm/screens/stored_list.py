"""A modal list of saved things (conversations, sweeps): Enter picks one, Delete removes the
highlighted one, Esc closes. Subclasses say what is listed and how it is deleted."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui_llm.store import StoreError
from tui_llm.widgets.literal import notify_literal


def local_minute(timestamp: float) -> str:
    """Seconds since the epoch as local time, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


class StoredListScreen(ModalScreen[int | None]):
    """Dismisses with the picked item's id (``None``: closed); ``summaries`` are the items
    listed. Subclasses add their close key and pass what is listed and how."""

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
        load: Callable[[], Sequence[Any]],
        prompt: Callable[[Any], Content],
        delete: Callable[[Any], None],
    ) -> None:
        """``load`` gives the items (each with an ``id``) newest first and ``delete`` removes
        one; both may raise ``StoreError``. ``prompt`` draws one item."""
        super().__init__()
        self._title = title
        self._hint = hint
        self._empty = empty
        self._list_id = list_id
        self._load = load
        self._prompt = prompt
        self._delete = delete
        self.summaries: list[Any] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._title, classes="title")
            yield OptionList(id=self._list_id)
            yield Static(self._hint, classes="hint", markup=False)

    def on_mount(self) -> None:
        self._reload()
        self.query_one(OptionList).focus()

    def _reload(self) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        try:
            self.summaries = list(self._load())
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
            self.summaries = []
        for summary in self.summaries:
            options.add_option(Option(self._prompt(summary), id=str(summary.id)))
        if not self.summaries:
            options.add_option(Option(self._empty, disabled=True))
        else:
            options.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(int(event.option.id))

    def action_delete(self) -> None:
        index = self.query_one(OptionList).highlighted
        if index is None or index >= len(self.summaries):
            return
        try:
            self._delete(self.summaries[index])
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
        self._reload()

    def action_close(self) -> None:
        self.dismiss(None)
