"""Sampling settings and system prompt, edited in a modal panel."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui_llm.engine.protocol import SamplingParams
from tui_llm.sampling_ranges import SAMPLING_RANGES
from tui_llm.widgets.inputs import InertInput, InertTextArea
from tui_llm.widgets.literal import literal

#: (SamplingParams field, its name on the panel); each range is in ``SAMPLING_RANGES``.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("temperature", "Temperature"),
    ("top_p", "Top p"),
    ("top_k", "Top k"),
    ("min_p", "Min p"),
    ("repeat_penalty", "Repeat penalty"),
    ("max_tokens", "Max tokens"),
    ("seed", "Seed"),
)
#: The one field that may be left empty, and what empty means.
_EMPTY_MEANS = {"seed": "random"}
_QUOTED_CHARS = 40  # of a refused value, in the error line


class SamplingScreen(ModalScreen[tuple[SamplingParams, str] | None]):
    """Returns the new sampling settings and system prompt, or ``None`` when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    DEFAULT_CSS = """
    SamplingScreen { align: center middle; }
    SamplingScreen > Vertical {
        width: 72; height: auto; max-height: 95%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    SamplingScreen Grid { grid-size: 2; grid-columns: 24 1fr; height: auto; grid-rows: 3; }
    SamplingScreen Label { padding: 1 0 0 0; }
    SamplingScreen TextArea { height: 5; }
    SamplingScreen .error { color: $error; height: auto; }
    SamplingScreen .buttons { height: 3; layout: horizontal; }
    """

    def __init__(self, sampling: SamplingParams, system_prompt: str) -> None:
        super().__init__()
        self._sampling = sampling
        self._system_prompt = system_prompt

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Sampling · Ctrl+S save · Esc cancel", classes="title")
            with Grid():
                for name, label in _FIELDS:
                    value = getattr(self._sampling, name)
                    empty = _EMPTY_MEANS.get(name)
                    yield Label(label if empty is None else f"{label} (empty: {empty})")
                    yield InertInput("" if value is None else str(value), id=f"field-{name}")
            yield Label("System prompt")
            yield InertTextArea(self._system_prompt, id="system-prompt")
            yield Static("", classes="error")
            with Vertical(classes="buttons"):
                yield Button("Save", variant="primary", id="save")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        """Dismiss with the new values, or keep the panel open saying which value is refused."""
        values: dict[str, object] = {}
        for name, label in _FIELDS:
            field = self.query_one(f"#field-{name}", InertInput)
            raw = field.value.strip()
            if name in _EMPTY_MEANS and raw == "":
                values[name] = None
                continue
            valid = SAMPLING_RANGES[name]
            takes = valid.describe()
            if name in _EMPTY_MEANS:
                takes += f", or empty for {_EMPTY_MEANS[name]}"
            # The typed value is quoted, cut short, so the range always fits on the line.
            typed = repr(raw[:_QUOTED_CHARS]) + ("…" if len(raw) > _QUOTED_CHARS else "")
            try:
                value = valid.kind(raw)
            except ValueError:
                self._refuse(field, f"{label}: not a number: {typed} (takes {takes})")
                return
            if not valid.contains(value):
                self._refuse(field, f"{label}: {typed} is out of range (takes {takes})")
                return
            values[name] = value
        sampling = replace(self._sampling, **values)  # type: ignore[arg-type]
        system = self.query_one("#system-prompt", InertTextArea).text
        self.dismiss((sampling, system))

    def _refuse(self, field: InertInput, message: str) -> None:
        """Say why on the error line and put the cursor in the field; what was typed stays."""
        self.query_one(".error", Static).update(literal(message, one_line=True))
        field.focus()
