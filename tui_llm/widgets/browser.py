"""The local model browser: a filterable table fed by a background scan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.theme import Theme
from textual.widgets import DataTable, Input

from tui_llm.catalog.metadata import human_bytes, human_count
from tui_llm.messages import LoadModelRequested
from tui_llm.textsafe import make_inert
from tui_llm.widgets.inputs import InertInput
from tui_llm.widgets.literal import literal_text, notify_literal, shorten_middle
from tui_llm.widgets.table import QuietTable
from tui_llm.widgets.textline import TextLine

if TYPE_CHECKING:
    from tui_llm.catalog.discovery import FileId

# What decides a choice first (size, quantization, will it fit), details after.
COLUMNS = ("Name", "Size", "Quant", "Fit", "Params", "Layers", "Ctx", "Arch")


NAME_CELLS = 28  # longer names keep their start and their end (the quantization is there)


def table_name(display_name: str, cells: int = NAME_CELLS) -> str:
    """A model's name for the table: inert, no ``.gguf``, and shortened in the middle to
    ``cells`` cells when longer (made inert first: a cut must never join an escape sequence)."""
    name = display_name[:-5] if display_name.lower().endswith(".gguf") else display_name
    return shorten_middle(make_inert(name, max_chars=1000, one_line=True), cells)


def model_row(model: Any, fit: str = "", error_style: str | Style = "") -> tuple[str | Text, ...]:
    """Table cells for one found model; a file that cannot be read shows "error" in
    ``error_style`` (the theme's error colour; empty: the text colour).

    The names and GGUF strings are ``Text``: a ``str`` cell would be read as markup.
    """
    info = model.info
    if info is None:
        # A short mark keeps the columns narrow; the line under the table gives the whole error.
        return (
            Text(table_name(model.display_name), style="dim"),
            Text("error", style=error_style),
            "",
            "",
            "",
            "",
            "",
            "",
        )
    return (
        Text(table_name(model.display_name)),
        human_bytes(info.file_size),
        literal_text(info.quantization or "?", max_chars=40, one_line=True),
        fit,
        human_count(info.parameter_count),
        str(info.n_layer or "?"),
        str(info.context_length or "?"),
        literal_text(info.architecture or "?", max_chars=40, one_line=True),
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
    ModelBrowser > .status { color: $text-muted; height: auto; max-height: 4; padding: 0 1; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Models · Ctrl+B"
        self._models: dict[str, Any] = {}
        self._order: list[str] = []
        self._key_by_file: dict[FileId, str] = {}
        self._opened: set[str] = set()  # keys of models listed as opened, not found
        self._filter = ""
        self.fit_for: Callable[[Any], str] | None = None
        self._scanning = False

    def compose(self) -> ComposeResult:
        yield InertInput(placeholder="filter…", id="model-filter")
        table: DataTable[Any] = QuietTable(cursor_type="row", zebra_stripes=True, id="model-table")
        yield table
        yield TextLine(classes="status", hide_empty=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column.lower())
        # A table cell's colour is fixed when the row is made: a new theme remakes the rows.
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: Theme) -> None:
        if any(model.info is None for model in self._models.values()):
            self._rebuild()

    @property
    def models(self) -> list[Any]:
        return [self._models[key] for key in self._order]

    def set_scanning(self, scanning: bool) -> None:
        self._scanning = scanning
        self._update_status()

    @property
    def file_ids(self) -> frozenset[FileId]:
        """The files listed (`catalog.discovery.file_id`)."""
        return frozenset(self._key_by_file)

    def add_models(
        self,
        models: Sequence[Any],
        file_ids: Sequence[FileId] | None = None,
        *,
        opened: bool = False,
    ) -> None:
        """Add (or refresh) models; the table shows those matching the filter.

        ``file_ids[i]`` is the file of ``models[i]``: a file listed already, under this path or
        another, is listed once. Found models (the scan, a download) come with ``opened`` False.
        Opened ones (the command line's, a recent one, a later load) are named by their file name
        only, so a found entry of the same file takes the place of an opened one, never the
        other way round.
        """
        ids: Sequence[FileId | None] = [None] * len(models) if file_ids is None else file_ids
        for model, file_id in zip(models, ids, strict=True):
            key = str(model.path)
            listed = self._key_by_file.get(file_id) if file_id is not None else None
            if listed is None and key in self._models:
                listed = key
            if listed is None:
                self._order.append(key)
                if opened:
                    self._opened.add(key)
            elif opened or (listed != key and listed not in self._opened):
                continue  # listed already (a found file met again by another path: a hard link)
            else:
                if listed != key:  # the found entry takes the opened one's place
                    self._order[self._order.index(listed)] = key
                    del self._models[listed]
                self._opened.discard(listed)
            self._models[key] = model
            if file_id is not None:
                self._key_by_file[file_id] = key
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
        error_style = self._error_style()
        for key in self._order:
            model = self._models[key]
            if self._matches(model):
                fit = ""
                if self.fit_for is not None and model.info is not None:
                    fit = self.fit_for(model)
                table.add_row(*model_row(model, fit, error_style), key=key)
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        self._update_status()

    def _error_style(self) -> Style | str:
        """The theme's error colour, for a table cell (which cannot name a theme variable)."""
        try:
            return Style(color=Color.parse(self.app.theme_variables["error"]).rich_color)
        except (KeyError, ColorParseError):
            return ""

    def _update_status(self) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(DataTable)
        text = f"{table.row_count} of {len(self._models)} models"
        if self._scanning:
            text += " · scanning…"
        highlighted = self._highlighted(table)
        if highlighted is not None and highlighted.info is None:
            name = make_inert(highlighted.display_name, max_chars=1000, one_line=True)
            text += f"\n{name}: {highlighted.error}"
        self.query_one(".status", TextLine).show(text)

    def _highlighted(self, table: DataTable[Any]) -> Any:
        if not table.row_count or table.cursor_row < 0:
            return None
        try:
            key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        except Exception:
            return None
        return self._models.get(key) if key is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_status()

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
            notify_literal(self, f"{model.display_name}: {model.error}", severity="error")
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
