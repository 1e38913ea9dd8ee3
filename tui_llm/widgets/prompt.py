"""The message box: Enter sends, Ctrl+J adds a line (both pass through tmux and SSH)."""

from __future__ import annotations

from textual import events
from textual.binding import Binding

from tui_llm.messages import PromptSubmitted
from tui_llm.widgets.inputs import InertTextArea


class PromptInput(InertTextArea):
    """A multi-line input that submits on Enter; a pasted control character shows (and is sent)
    as its visible symbol."""

    BINDINGS = [
        Binding("enter", "submit", "Send", priority=True),
        Binding("ctrl+j", "newline", "New line", show=False, priority=True),
    ]

    DEFAULT_CSS = """
    PromptInput { height: auto; max-height: 8; min-height: 3; border: tall $primary 40%; }
    PromptInput:focus { border: tall $primary; }
    PromptInput { border-title-color: $text-muted; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.border_title = "Message · Enter send · Ctrl+J new line"

    async def _on_key(self, event: events.Key) -> None:
        # The box's own editing keys (arrows, Home/End, Backspace, Ctrl+W, ...) are bindings,
        # which Textual runs once the key has bubbled up to the app; typed characters are
        # inserted here at once. Keys that arrive in one read (a packet over SSH) would apply
        # out of order: "Home" then "x" put the x at the end. Run our own bindings here, in
        # order (Textual issue #6605).
        if not event.is_printable:
            for binding in self._bindings.key_to_bindings.get(event.key, ()):
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()
                    return
        await super()._on_key(event)

    def action_submit(self) -> None:
        # Enter is a priority binding: the app runs it as the key arrives, while keys that came
        # in the same read (a paste without bracketed paste, a packet over SSH) may still wait in
        # this widget's queue. Sending from the queue puts them in the message first.
        self.call_later(self._submit)

    def _submit(self) -> None:
        # Every key before this Enter is in the box, none after it: take the message out now.
        text = self.text.strip()
        if text:
            self.clear()
            self.post_message(PromptSubmitted(text))

    def restore(self, text: str) -> None:
        """Put back a message that could not be sent, before anything typed since."""
        typed = self.text
        self.text = f"{text}\n{typed}" if typed.strip() else text
        self.move_cursor(self.document.end)

    def action_newline(self) -> None:
        # Queued like a typed key, for the same reason as ``action_submit``.
        self.call_later(self.insert, "\n")
