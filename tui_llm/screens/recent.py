"""Recent models on number keys: F2 lists them, 1-9 loads one."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class RecentScreen(ModalScreen[Path | None]):
    """Numbered list of the last models; a digit picks one, Esc closes."""

    BINDINGS = [
        Binding("escape,f2", "close", "Close"),
        *[Binding(str(n), f"pick({n})", show=False) for n in range(1, 10)],
    ]

    DEFAULT_CSS = """
    RecentScreen { align: center middle; }
    RecentScreen > Vertical {
        width: 80%; max-width: 90; height: auto;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    RecentScreen .hint { color: $text-muted; }
    """

    def __init__(self, models: list[Path]) -> None:
        super().__init__()
        self.models = models[:9]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Recent models", classes="title")
            if not self.models:
                yield Static("No recent models yet.")
            for number, path in enumerate(self.models, start=1):
                yield Static(f"[b]{number}[/b]  {path.name}  [dim]{path.parent}[/dim]")
            yield Static("1-9 load · Esc close", classes="hint")

    def action_pick(self, number: int) -> None:
        if 0 < number <= len(self.models):
            self.dismiss(self.models[number - 1])

    def action_close(self) -> None:
        self.dismiss(None)
