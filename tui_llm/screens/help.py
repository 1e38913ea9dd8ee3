"""The help screen: every key, grouped by what it is for."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP_TEXT = """\
# tui-llm keys

Every key below passes through tmux and SSH. Everything is also in the command palette (**Ctrl+P**).
**Esc**, **q** or **F1** closes this help.

## Chat
| Key | Does |
|---|---|
| Enter | send the message |
| Ctrl+J | new line in the message |
| Esc | stop the reply that is streaming |
| Ctrl+R | regenerate the last reply |
| Ctrl+E | edit and resend your last message |
| Ctrl+Y | copy the last reply's answer (OSC 52: works over SSH and in tmux) |
| Ctrl+K | copy the last code block of the last reply |
| F6 | show or hide a reasoning model's thinking in the last reply |
| Ctrl+N | new conversation (every conversation is saved as you go) |
| F3 | saved conversations: Enter opens, Delete removes |
| Ctrl+T | sampling settings and system prompt |

## Models
| Key | Does |
|---|---|
| Ctrl+B | model browser (type to filter, Enter loads) |
| Ctrl+L | model picker (fuzzy search) |
| F4 | Hugging Face: search the Hub, Enter lists a repository, Enter downloads (F4 again: back) |
| F7 / F8 | previous / next model |
| F2, then 1-9 | recent models (1-9 also work directly when the chat has focus) |

## GPU offload (Ctrl+O focuses the panel)
| Key | Does |
|---|---|
| ← / → or - / + | one layer fewer / more on the GPU |
| [ / ] or PgUp / PgDn | ten percent fewer / more |
| Home or n / End or l | no layers / all layers |
| a | Auto: the most layers that fit the free VRAM (an MoE model: experts to RAM first) |
| ↑ / ↓ | MoE models: one more / one fewer layer's expert weights kept in RAM |
| x | MoE models: every layer's experts in RAM / none |
| s / m / g | two or more GPUs: type the split (1:3) / split mode / main GPU |
| c / f / k | context size / flash attention / KV cache type |
| Enter | apply: reloads in the background, the conversation stays |
| Esc | back to what is loaded |
| b | offload sweep: tokens/s at each offload level (below) |
| F5 | restart the engine after a crash (with fewer GPU layers) |

## Offload sweep (b in the offload panel, or "Offload sweep" in the palette)
| Key | Does |
|---|---|
| Enter or r | run the sweep as the form says (levels such as `0,8,16,all`, `auto`, `0-32+8`) |
| | MoE: `all:12` keeps 12 layers' experts in RAM, `all:~8` matches level 8's VRAM, `experts` both |
| c | back to the chat while it measures (a message you send waits for the end) |
| a | apply the fastest level that loaded (the conversation stays) |
| e | earlier sweeps of this model: Enter compares with one, Delete removes |
| Esc or q | stop after the measurement at hand and close: the model comes back as it was |

## App
| Key | Does |
|---|---|
| F1 | this help |
| Ctrl+P | command palette (themes, models, every action) |
| Ctrl+Q | quit |
"""


class HelpScreen(ModalScreen[None]):
    """Lists the keys; Esc, q or F1 closes it."""

    BINDINGS = [
        Binding("escape,q,f1", "dismiss", "Close"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 96; height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP_TEXT)

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)
