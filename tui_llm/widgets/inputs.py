"""Text boxes that never hold a control character: what is pasted or loaded shows as it is.

Textual's ``Input`` and ``TextArea`` draw their text as it is stored, so an ESC pasted into one,
or loaded from a settings file or a saved conversation, would be written to the terminal. These
keep the text inert (``make_inert``) as it comes in, through every edit and every load: the box
shows ``␛`` and holds ``␛``, so what is sent is what is shown. Newline and tab stay in a
``TextArea``; an ``Input`` is one line.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, TextArea
from textual.widgets.text_area import Edit, EditResult

from tui_llm.textsafe import make_inert


class InertInput(Input):
    """An ``Input`` whose value never holds a control, bidi or unencodable character."""

    def replace(self, text: str, start: int, end: int) -> None:
        """Typed or pasted text, made inert before it goes in (the cursor lands after it)."""
        super().replace(make_inert(text, one_line=True), start, end)

    def validate_value(self, value: str) -> str:
        """A value set directly (``Input(value=...)``, ``input.value = ...``), made inert."""
        return make_inert(value, one_line=True)


class InertTextArea(TextArea):
    """A ``TextArea`` whose document never holds a control, bidi or unencodable character."""

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(make_inert(text), **kwargs)

    def edit(self, edit: Edit) -> EditResult:
        """Every edit (typing, paste, ``insert``, ``replace``) goes in made inert."""
        edit.text = make_inert(edit.text)
        return super().edit(edit)

    def load_text(self, text: str) -> None:
        """Loaded text (and ``text = ...``) goes in made inert."""
        super().load_text(make_inert(text))
