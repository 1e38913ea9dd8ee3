"""The offload sweep's table: one row per level, as ``tui-llm bench`` prints it, and the
generation tokens/s of an earlier sweep at the same GPU layers beside it."""

from __future__ import annotations

from rich.text import Text

from tui_llm.sweep.records import LevelResult, SweepResult
from tui_llm.sweep.table import COLUMNS, row_cells
from tui_llm.widgets.literal import literal_text
from tui_llm.widgets.table import QuietTable

BEFORE_COLUMN = 4  # after "gen tok/s": the figures compared sit side by side


def before_cell(row: LevelResult, before: SweepResult) -> str:
    """The earlier sweep's generation tokens/s at ``row``'s placement (GPU layers, expert
    layers in RAM), and the change since."""
    earlier = next(
        (
            r
            for r in before.levels
            if r.status == "ok"
            and (r.gpu_layers, r.n_cpu_moe) == (row.gpu_layers, row.n_cpu_moe)
            and r.gen_tokens_per_s
        ),
        None,
    )
    if earlier is None or earlier.gen_tokens_per_s is None:
        return ""
    then = earlier.gen_tokens_per_s.median
    if row.status != "ok" or row.gen_tokens_per_s is None or then <= 0:
        return f"{then:.1f}"
    return f"{then:.1f} ({row.gen_tokens_per_s.median / then - 1:+.0%})"


class SweepTable(QuietTable[Text]):
    """A sweep's levels; the fastest in bold; a "before" column when compared with another.

    Every cell is outside text as far as the table knows (device names, error reasons), shown
    as it is (``literal_text``).
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def show(self, result: SweepResult | None, before: SweepResult | None = None) -> None:
        """Rebuild the rows (a sweep has a few): ``result``'s levels, ``before`` beside them."""
        cursor = self.cursor_row
        self.clear(columns=True)
        columns = list(COLUMNS)
        if before is not None:
            columns.insert(BEFORE_COLUMN, "before")
        self.add_columns(*columns)
        if result is None:
            return
        fastest = result.fastest()
        for row in result.levels:
            cells = row_cells(result, row)
            if before is not None:
                cells.insert(BEFORE_COLUMN, before_cell(row, before))
            style = "bold" if row is fastest else ""
            self.add_row(*(literal_text(cell, style=style, one_line=True) for cell in cells))
        if self.row_count:
            self.move_cursor(row=min(cursor, self.row_count - 1))
