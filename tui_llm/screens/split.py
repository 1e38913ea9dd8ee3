"""The split between several devices, typed as llama.cpp's ``--tensor-split`` takes it (``1:3``).

Opened with ``s`` in the offload panel when the engine has two or more offload devices; Enter
hands the proportions back as the panel's pending split (Enter in the panel then reloads).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui_llm.placement import SplitSyntaxError, parse_split, split_text
from tui_llm.widgets.inputs import InertInput
from tui_llm.widgets.literal import literal
from tui_llm.widgets.textline import TextLine


class SplitScreen(ModalScreen[tuple[float, ...] | None]):
    """One line to type the proportions per device; the devices listed in llama.cpp's order.

    Dismisses with the proportions (``()``: an empty line, llama.cpp splits by free memory),
    or ``None`` on Esc.
    """

    BINDINGS = [Binding("escape", "close", "Close")]

    DEFAULT_CSS = """
    SplitScreen { align: center middle; }
    SplitScreen > Vertical {
        width: 70%; max-width: 72; height: auto;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    SplitScreen .hint { color: $text-muted; }
    SplitScreen .error { color: $error; }
    """

    def __init__(self, devices: tuple[str, ...], tensor_split: tuple[float, ...]) -> None:
        super().__init__()
        self.devices = devices
        self.tensor_split = tensor_split

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Split between the devices", classes="title")
            for index, name in enumerate(self.devices):
                yield Static(literal(f"{index}  {name}", one_line=True))
            value = "" if not self.tensor_split else split_text(self.tensor_split)
            yield InertInput(value, placeholder="e.g. 1:3", id="split")
            yield TextLine(classes="error")
            yield Static(
                "Proportions per device in this order, such as 1:3 (a quarter on the first); "
                "empty: by free memory. Enter sets it (Enter in the panel reloads) · Esc closes",
                classes="hint",
            )

    def on_mount(self) -> None:
        self.query_one("#split", Input).focus()

    @on(Input.Submitted)
    def on_submitted(self, event: Input.Submitted) -> None:
        try:
            split = parse_split(event.value, len(self.devices))
        except SplitSyntaxError as exc:
            self.query_one(".error", TextLine).show(str(exc))
            return
        self.dismiss(split)

    def action_close(self) -> None:
        self.dismiss(None)
