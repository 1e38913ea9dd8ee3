"""Sampling settings and system prompt, edited in a modal panel."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui_llm.engine.protocol import SamplingParams
from tui_llm.widgets.inputs import InertInput, InertTextArea
from tui_llm.widgets.literal import literal

_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("temperature", "Temperature", float),
    ("top_p", "Top p", float),
    ("top_k", "Top k", int),
    ("min_p", "Min p", float),
    ("repeat_penalty", "Repeat penalty", float),
    ("max_tokens", "Max tokens", int),
    ("seed", "Seed (empty: random)", int),
)


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
                for name, label, _kind in _FIELDS:
                    value = getattr(self._sampling, name)
                    yield Label(label)
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
        values: dict[str, object] = {}
        for name, label, kind in _FIELDS:
            raw = self.query_one(f"#field-{name}", InertInput).value.strip()
            if name == "seed" and raw == "":
                values[name] = None
                continue
            try:
                values[name] = kind(raw)
            except ValueError:
                self.query_one(".error", Static).update(
                    literal(f"{label}: not a number: {raw!r}", max_chars=200)
                )
                return
        sampling = replace(self._sampling, **values)  # type: ignore[arg-type]
        system = self.query_one("#system-prompt", InertTextArea).text
        self.dismiss((sampling, system))
