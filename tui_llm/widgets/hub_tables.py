"""The Hub tab's tables: search results, and the models of one repository with fit badges.

Every name in them comes from the Hub (repository ids, architectures, quantizations, badges
quoting them) and is shown literally (``tui_llm.widgets.literal``): brackets are shown, not
parsed, and control characters are made visible.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui_llm.catalog.hub import HubModel, RatedOption
from tui_llm.catalog.metadata import human_count
from tui_llm.widgets.literal import literal_text

__all__ = ["BEST_MARKER", "HubFiles", "HubResults"]

BEST_MARKER = "★"


class HubResults(DataTable[str | Text]):
    """Search results: one repository a row, keyed by its id, most downloaded first."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)

    def on_mount(self) -> None:
        for name in ("Repository", "Downloads", "Likes", "Updated", "Params", "Arch"):
            self.add_column(name, key=name.lower())

    @property
    def repo_ids(self) -> list[str]:
        """Repository ids, top to bottom."""
        return [str(row.key.value) for row in self.ordered_rows]

    def show_models(self, models: list[HubModel]) -> None:
        """Replace the rows with ``models``, most downloaded first; a gated one says so."""
        self.clear()
        for model in sorted(models, key=lambda m: m.downloads, reverse=True):
            name = literal_text(model.repo_id, max_chars=200, one_line=True)
            if model.gated:
                name.append(" (gated)", style="dim")
            self.add_row(
                name,
                human_count(model.downloads),
                human_count(model.likes),
                model.last_modified.strftime("%Y-%m-%d") if model.last_modified else "",
                human_count(model.parameter_count) if model.parameter_count else "",
                literal_text(model.architecture or "", max_chars=40, one_line=True),
                key=model.repo_id,
            )


class HubFiles(DataTable[str | Text]):
    """A repository's models: one quantization a row, keyed by its index in the rated list.

    Columns: `BEST_MARKER` on the best fit, quantization, file count (shards), size, fit badge.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id, classes=classes)

    def on_mount(self) -> None:
        for name in ("", "Quant", "Files", "Size", "Fit"):
            self.add_column(name, key=name.lower() or "best")

    def show_options(self, rated: list[RatedOption]) -> None:
        """Replace the rows with ``rated``, in its order."""
        self.clear()
        for index, item in enumerate(rated):
            option = item.option
            self.add_row(
                BEST_MARKER if item.best else "",
                literal_text(option.quantization, max_chars=40, one_line=True),
                str(len(option.filenames)),
                option.size_text,
                literal_text(item.badge, one_line=True),
                key=str(index),
            )
