"""The conversation: one widget per message; replies stream in through ``MarkdownStream``."""

from __future__ import annotations

import re

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from tui_llm.engine.protocol import ReplyStats
from tui_llm.textsafe import make_inert
from tui_llm.widgets.literal import literal
from tui_llm.widgets.textline import TextLine

_FENCE_RE = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def code_blocks(markdown: str) -> list[str]:
    """The contents of the fenced code blocks in ``markdown``, in order."""
    return [block.rstrip("\n") for block in _FENCE_RE.findall(markdown)]


def format_stats(stats: ReplyStats, finish_reason: str) -> str:
    """One line of per-reply figures: tokens, time to first token, tokens/s."""
    parts = [
        f"{stats.generated_tokens} tokens",
        f"{stats.generation_tokens_per_s:.1f} tok/s",
        f"first token {stats.time_to_first_token_s * 1000:.0f} ms",
        f"prompt {stats.prompt_tokens} ({stats.prompt_tokens_evaluated} evaluated)",
    ]
    if finish_reason == "cancelled":
        parts.append("stopped")
    elif finish_reason == "length":
        parts.append("max tokens reached")
    elif finish_reason == "context":
        parts.append("context full")
    return " · ".join(parts)


class MessageView(Vertical):
    """One message: a role line, the Markdown body, and (for replies) the figures."""

    DEFAULT_CSS = """
    MessageView {
        height: auto;
        margin: 0 0 1 0;
        padding: 0 1;
        border-left: thick $primary 50%;
    }
    MessageView.-user { border-left: thick $secondary; background: $boost; }
    MessageView.-system { border-left: thick $warning 50%; }
    MessageView.-error { border-left: thick $error; }
    MessageView > .role { color: $text-muted; text-style: bold; height: 1; }
    MessageView > Markdown { margin: 0; padding: 0; background: transparent; }
    MessageView > .stats { color: $text-muted; height: auto; }
    """

    def __init__(self, role: str, content: str = "") -> None:
        super().__init__(classes=f"-{role}")
        self.role = role
        self.content = make_inert(content)
        self._stream: MarkdownStream | None = None
        self._stats = Static("", markup=False, classes="stats")
        self._markdown = Markdown(self.content)

    def compose(self) -> ComposeResult:
        label = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
            self.role, self.role.title()
        )
        yield Static(literal(label, max_chars=80, one_line=True), classes="role")
        yield self._markdown
        yield self._stats

    @property
    def markdown(self) -> Markdown:
        return self._markdown

    async def append(self, fragment: str) -> None:
        """Add streamed text (made inert first) through a ``MarkdownStream``."""
        safe = make_inert(fragment)
        self.content += safe
        if self._stream is None:
            self._stream = Markdown.get_stream(self._markdown)
        await self._stream.write(safe)

    async def finish(self, final_text: str | None = None) -> None:
        """End the stream and re-render once, repairing half-parsed blocks."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if final_text is not None:
            self.content = make_inert(final_text)
        await self._markdown.update(self.content)

    def set_stats(self, text: str) -> None:
        """The line under the message: figures, or why it stopped (an error's text, literally)."""
        self._stats.update(literal(text))


class ChatView(VerticalScroll):
    """The scrolling list of messages."""

    DEFAULT_CSS = """
    ChatView { height: 1fr; padding: 0 1; }
    ChatView > .empty { color: $text-muted; padding: 1 2; }
    """

    def __init__(self, empty_text: str = "", id: str | None = None) -> None:
        super().__init__(id=id, can_focus=True)
        self._empty_text = empty_text

    def compose(self) -> ComposeResult:
        yield TextLine(self._empty_text, classes="empty", hide_empty=False)

    def set_empty_text(self, text: str) -> None:
        """The text shown while there are no messages (plain text: file names are not markup)."""
        self._empty_text = text
        for empty in self.query(".empty").results(TextLine):
            empty.show(text)

    async def add_message(self, role: str, content: str = "") -> MessageView:
        for empty in self.query(".empty"):
            await empty.remove()
        view = MessageView(role, content)
        await self.mount(view)
        self.scroll_end(animate=False)
        return view

    def messages(self) -> list[MessageView]:
        return list(self.query(MessageView))

    async def clear_messages(self) -> None:
        await self.remove_children()
        await self.mount(TextLine(self._empty_text, classes="empty", hide_empty=False))
