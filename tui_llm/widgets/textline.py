"""A Static that repaints only when its text changes, and relayouts only when its height may.

``Static.update`` always asks for a layout of the whole screen. The panels here rewrite their
lines from state (every monitor sample, every load), mostly with the same text; each of those
layouts and repaints costs the event loop several milliseconds on a small machine.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.content import Content
from textual.widgets import Static

Shown = str | Text | Content


def _plain(text: Shown) -> str:
    return text if isinstance(text, str) else text.plain


def _same(a: Shown, b: Shown) -> bool:
    """Same text and same styles (``Content`` compares its text only)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Content) and isinstance(b, Content):
        return a.plain == b.plain and list(a.spans) == list(b.spans)
    return a == b


def rows_if_unwrapped(text: Shown, width: int) -> int | None:
    """Rows ``text`` takes at ``width`` when no line wraps; ``None`` when one may wrap."""
    lines = _plain(text).split("\n")
    if width <= 0 or any(cell_len(line) > width for line in lines):
        return None
    return len(lines)


class TextLine(Static):
    """One or a few lines of plain text that a widget rewrites from its state.

    An empty text hides the line (it takes no row) when ``hide_empty`` is set. Subclasses whose
    CSS fixes their height set ``FIXED_HEIGHT`` and never ask for a layout.
    """

    FIXED_HEIGHT = False

    def __init__(
        self,
        text: Shown = "",
        *,
        classes: str | None = None,
        id: str | None = None,
        hide_empty: bool = True,
    ) -> None:
        super().__init__(text, markup=False, classes=classes, id=id)
        self._shown: Shown = text
        self._hide_empty = hide_empty
        if hide_empty and not _plain(text).strip():
            self.display = False

    @property
    def shown(self) -> Shown:
        """The text on screen now."""
        return self._shown

    def show(self, text: Shown) -> None:
        """Show ``text``; nothing happens when it is what is shown already."""
        old = self._shown
        if _same(text, old):
            return
        self._shown = text
        width = self.content_size.width
        before, after = rows_if_unwrapped(old, width), rows_if_unwrapped(text, width)
        self.update(text, layout=not self.FIXED_HEIGHT and (before is None or before != after))
        if self._hide_empty:
            visible = bool(_plain(text).strip())
            if self.display != visible:
                self.display = visible
