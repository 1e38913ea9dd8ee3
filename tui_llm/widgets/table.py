"""A DataTable that does not repaint its scrollbars on every relayout of the screen."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.geometry import Size
from textual.widgets import DataTable

CellType = TypeVar("CellType")


class QuietTable(DataTable[CellType], Generic[CellType]):
    """``DataTable`` with one difference: a relayout elsewhere leaves it alone.

    Textual 8's ``ScrollView._size_updated`` compares the virtual size the compositor passes
    (the table's viewport) with the table's own (its rows and columns); they always differ, so
    every layout of the screen, anywhere, refreshes the table's scrollbars. That dirty row joins
    every partial repaint with the other side of the screen, and the repaint then covers whole
    rows across the screen: a load or a new reply cost 2-3 times what it should.
    """

    _last_sizes: tuple[Size, Size, Size] | None = None

    def _size_updated(
        self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
    ) -> bool:
        sizes = (size, container_size, self.virtual_size)
        if sizes == self._last_sizes:
            return False
        self._last_sizes = sizes
        return super()._size_updated(size, virtual_size, container_size, layout=layout)
