"""Earlier offload sweeps of one model: pick one to compare with, or delete it."""

from __future__ import annotations

from textual.binding import Binding
from textual.content import Content

from tui_llm.screens.stored_list import StoredListScreen, local_minute
from tui_llm.store import SweepStore, SweepSummary
from tui_llm.widgets.literal import literal


def summary_prompt(summary: SweepSummary) -> Content:
    """One line for one sweep: when, the fastest level, how it was measured."""
    if not summary.readable:
        return Content(f"{local_minute(summary.started)} · this sweep cannot be read")
    if summary.fastest_label is None or summary.fastest_tokens_per_s is None:
        fastest = Content("no level measured")
    else:
        fastest = (
            Content("fastest ")
            + literal(summary.fastest_label, max_chars=40, one_line=True)
            + Content(f" at {summary.fastest_tokens_per_s:.1f} tok/s")
        )
    return (
        Content(f"{local_minute(summary.started)} · ")
        + fastest
        + Content(
            f" · {summary.levels} levels · {summary.prompt_tokens} + {summary.gen_tokens}"
            f" tokens × {summary.repeats}"
        )
    )


class SweepListScreen(StoredListScreen[int]):
    """A model's sweeps, newest first; Enter picks one, Delete removes, Esc closes."""

    BINDINGS = [Binding("escape,e", "close", "Close")]

    def __init__(self, store: SweepStore, model_path: str, model_name: str) -> None:
        super().__init__(
            title=Content("Earlier sweeps of ") + literal(model_name, one_line=True),
            hint="Enter compare with this one · Delete remove · Esc close",
            empty="No saved sweeps of this model yet.",
            list_id="sweeps",
            load=lambda _query: store.list_for_model(model_path, limit=200),
            prompt=summary_prompt,
            delete=lambda summary: store.delete(summary.id),
            pick=lambda summary: int(summary.id),
        )
        self.store = store
        self.model_path = model_path
        self.model_name = model_name
