"""Earlier offload sweeps of one model: pick one to compare with, or delete it."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui_llm.store import StoreError, SweepStore, SweepSummary
from tui_llm.widgets.literal import literal, notify_literal


def when(timestamp: float) -> str:
    """A sweep's start as local time, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def summary_prompt(summary: SweepSummary) -> Content:
    """One line for one sweep: when, the fastest level, how it was measured."""
    if not summary.readable:
        return Content(f"{when(summary.started)} · this sweep cannot be read")
    if summary.fastest_label is None or summary.fastest_tokens_per_s is None:
        fastest = Content("no level measured")
    else:
        fastest = (
            Content("fastest ")
            + literal(summary.fastest_label, max_chars=40, one_line=True)
            + Content(f" at {summary.fastest_tokens_per_s:.1f} tok/s")
        )
    return (
        Content(f"{when(summary.started)} · ")
        + fastest
        + Content(
            f" · {summary.levels} levels · {summary.prompt_tokens} + {summary.gen_tokens}"
            f" tokens × {summary.repeats}"
        )
    )


class SweepListScreen(ModalScreen[int | None]):
    """A model's sweeps, newest first; Enter picks one, Delete removes, Esc closes."""

    BINDINGS = [
        Binding("escape,e", "close", "Close"),
        Binding("delete,ctrl+d", "delete", "Delete"),
    ]

    DEFAULT_CSS = """
    SweepListScreen { align: center middle; }
    SweepListScreen > Vertical {
        width: 90%; max-width: 110; height: 70%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    SweepListScreen OptionList { height: 1fr; }
    SweepListScreen .hint { color: $text-muted; }
    """

    def __init__(self, store: SweepStore, model_path: str, model_name: str) -> None:
        super().__init__()
        self.store = store
        self.model_path = model_path
        self.model_name = model_name
        self.summaries: list[SweepSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content("Earlier sweeps of ") + literal(self.model_name, one_line=True),
                classes="title",
            )
            yield OptionList(id="sweeps")
            yield Static(
                "Enter compare with this one · Delete remove · Esc close",
                classes="hint",
                markup=False,
            )

    def on_mount(self) -> None:
        self._reload()
        self.query_one(OptionList).focus()

    def _reload(self) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        try:
            self.summaries = self.store.list_for_model(self.model_path, limit=200)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
            self.summaries = []
        for summary in self.summaries:
            options.add_option(Option(summary_prompt(summary), id=str(summary.id)))
        if not self.summaries:
            options.add_option(Option("No saved sweeps of this model yet.", disabled=True))
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
            self.store.delete(self.summaries[index].id)
        except StoreError as exc:
            notify_literal(self, str(exc), severity="error")
        self._reload()

    def action_close(self) -> None:
        self.dismiss(None)
