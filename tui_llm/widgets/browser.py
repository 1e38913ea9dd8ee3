"""The local model browser: a filterable table fed by a background scan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static

from tui_llm.catalog.metadata import human_bytes, human_count
from tui_llm.messages import LoadModelRequested
from tui_llm.widgets.table import QuietTable

COLUMNS = ("Name", "Arch", "Params", "Quant", "Size", "Layers", "Ctx", "Fit")


def model_row(model: Any, fit: str = "") -> tuple[str | Text, ...]:
    """Table cells for one found model; a file that cannot be read shows its error."""
    info = model.info
    if info is None:
        return (
            Text(model.display_name, style="dim"),
            Text(f"error: {model.error}", style="red"),
            "",
            "",
            "",
            "",
            "",
            "",
        )
    return (
        model.display_name,
        info.architecture or "?",
        human_count(info.parameter_count),
        info.quantization or "?",
        human_bytes(info.file_size),
        str(info.n_layer or "?"),
        str(info.context_length or "?"),
        fit,
    )


class ModelBrowser(Vertical):
    """Filter as you type; Enter loads the highlighted model."""

    BINDINGS = [Binding("enter", "load", "Load", show=False)]

    DEFAULT_CSS = """
    ModelBrowser { height: 1fr; border: round $primary 40%; }
    ModelBrowser:focus-within { border: round $accent; }
    ModelBrowser { border-title-color: $text-muted; border-title-style: bold; }
    ModelBrowser > Input, ModelBrowser > Input:focus { border: none; height: 1; padding: 0 1; }
    ModelBrowser > DataTable { height: 1fr; }
    ModelBrowser > .status { color: $text-muted; height: 1; padding: 0 1; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Models · Ctrl+B"
        self._models: dict[str, Any] = {}
        self._order: list[str] = []
        self._filter = ""
        self.fit_for: Callable[[Any], str] | None = None
        self._scanning = False

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter…", id="model-filter")
        table: DataTable[Any] = QuietTable(cursor_type="row", zebra_stripes=True, id="model-table")
        yield table
        yield Static("", markup=False, classes="status")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column.lower())

    @property
    def models(self) -> list[Any]:
        return [self._models[key] for key in self._order]

    def set_scanning(self, scanning: bool) -> None:
        self._scanning = scanning
        self._update_status()

    def add_models(self, models: list[Any]) -> None:
        """Add (or refresh) found models; the table shows those matching the filter."""
        for model in models:
            key = str(model.path)
            if key not in self._models:
                self._order.append(key)
            self._models[key] = model
        self._rebuild()

    def refresh_fit(self) -> None:
        self._rebuild()

    def _matches(self, model: Any) -> bool:
        if not self._filter:
            return True
        haystack = f"{model.display_name} {model.path}".lower()
        info = model.info
        if info is not None:
            haystack += f" {info.architecture} {info.quantization}".lower()
        return all(part in haystack for part in self._filter.lower().split())

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(DataTable)
        selected = None
        if table.row_count and table.cursor_row >= 0:
            try:
                selected = table.coordinate_to_cell_key(
                    Coordinate(table.cursor_row, 0)
                ).row_key.value
            except Exception:
                selected = None
        table.clear()
        for key in self._order:
            model = self._models[key]
            if self._matches(model):
                fit = ""
                if self.fit_for is not None and model.info is not None:
                    fit = self.fit_for(model)
                table.add_row(*model_row(model, fit), key=key)
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        self._update_status()

    def _update_status(self) -> None:
        if not self.is_mounted:
            return
        shown = self.query_one(DataTable).row_count
        text = f"{shown} of {len(self._models)} models"
        if self._scanning:
            text += " · scanning…"
        self.query_one(".status", Static).update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._filter = event.value
        self._rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_load()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._load_key(event.row_key.value)

    def action_load(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        self._load_key(key)

    def _load_key(self, key: str | None) -> None:
        if key is None:
            return
        model = self._models.get(key)
        if model is None:
            return
        if model.info is None:
            self.notify(f"{model.display_name}: {model.error}", severity="error")
            return
        self.post_message(LoadModelRequested(Path(model.path)))

    def focus_filter(self) -> None:
        self.query_one(Input).focus()

    def on_key(self, event: events.Key) -> None:
        """Down from the filter moves into the table (without also moving the cursor)."""
        if event.key == "down" and self.query_one(Input).has_focus:
            event.stop()
            event.prevent_default()
            self.query_one(DataTable).focus()
