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

from tui_llm.widgets.literal import literal

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


def _visual(text: Shown) -> Text | Content:
    """A ``str`` is outside text as far as this widget knows: shown literally (``literal``)."""
    return literal(text) if isinstance(text, str) else text


class TextLine(Static):
    """One or a few lines of plain text that a widget rewrites from its state.

    A ``str`` is shown as it is: never markup, its control characters made visible, cut when very
    long (``literal``); ``Text`` and ``Content`` are shown as built. An empty text hides the line
    (it takes no row) when ``hide_empty`` is set. Subclasses whose CSS fixes their height set
    ``FIXED_HEIGHT`` and never ask for a layout.
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
        visual = _visual(text)
        super().__init__(visual, markup=False, classes=classes, id=id)
        self._shown: Shown = text
        self._shown_visual = visual
        self._hide_empty = hide_empty
        if hide_empty and not visual.plain.strip():
            self.display = False

    @property
    def shown(self) -> Shown:
        """The text given to ``show`` last (a ``str`` as given, before it was made inert)."""
        return self._shown

    def show(self, text: Shown) -> None:
        """Show ``text``; nothing happens when it is what is shown already."""
        if _same(text, self._shown):
            return
        old, visual = self._shown_visual, _visual(text)
        self._shown, self._shown_visual = text, visual
        width = self.content_size.width
        before, after = rows_if_unwrapped(old, width), rows_if_unwrapped(visual, width)
        self.update(visual, layout=not self.FIXED_HEIGHT and (before is None or before != after))
        if self._hide_empty:
            visible = bool(visual.plain.strip())
            if self.display != visible:
                self.display = visible
