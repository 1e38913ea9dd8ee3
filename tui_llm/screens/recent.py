"""Recent models on number keys: F2 lists them, 1-9 loads one."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_llm.widgets.literal import literal


def recent_line(number: int, path: Path) -> Content:
    """``1  model.gguf  /models``: the key in bold, the folder dimmed, the names as they are."""
    return Content.assemble(
        (str(number), "bold"),
        "  ",
        literal(path.name, one_line=True),
        "  ",
        literal(str(path.parent), style="dim", one_line=True),
    )


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
                yield Static(recent_line(number, path))
            yield Static("1-9 load · Esc close", classes="hint")

    def action_pick(self, number: int) -> None:
        if 0 < number <= len(self.models):
            self.dismiss(self.models[number - 1])

    def action_close(self) -> None:
        self.dismiss(None)
