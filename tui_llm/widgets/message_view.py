"""One message added to the chat since it opened: a user's text, or a reply that streams in
through ``MarkdownStream``, with its thinking in a collapsible and its figures line under it
(``format_stats``). Saved messages are drawn by ``SavedMessage`` instead."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from tui_llm.engine.protocol import ReplyStats
from tui_llm.textsafe import make_inert
from tui_llm.widgets.literal import literal
from tui_llm.widgets.saved_message import role_label


def duration(seconds: float) -> str:
    """A short time for the reply figures: milliseconds under a second, else seconds."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def format_stats(stats: ReplyStats, finish_reason: str) -> str:
    """One line of per-reply figures: tokens (thinking apart), first token, tok/s, prompt."""
    tokens = f"{stats.generated_tokens} tokens"
    if stats.reasoning_tokens:
        tokens += f" ({stats.reasoning_tokens} thinking, {stats.answer_tokens} answer)"
    if not stats.generated_tokens and finish_reason == "cancelled":
        # Stopped while its prompt was processed: no token, so no rate and no first token.
        return " · ".join(
            [
                tokens,
                f"prompt {stats.prompt_tokens} ({stats.prompt_tokens_evaluated} evaluated)",
                f"stopped after {duration(stats.total_s)}",
            ]
        )
    parts = [
        tokens,
        f"{stats.generation_tokens_per_s:.1f} tok/s",
        f"first token {duration(stats.time_to_first_token_s)}",
    ]
    if stats.reasoning_tokens and stats.time_to_first_answer_s is not None:
        parts.append(f"first answer token {duration(stats.time_to_first_answer_s)}")
    parts.append(f"prompt {stats.prompt_tokens} ({stats.prompt_tokens_evaluated} evaluated)")
    if finish_reason == "cancelled":
        parts.append("stopped")
    elif finish_reason == "length":
        parts.append("max tokens reached")
    elif finish_reason == "context":
        parts.append("context full")
    return " · ".join(parts)


def thinking_title(stats: ReplyStats | None = None, streaming: bool = False) -> str:
    """The thinking block's title: "Thinking…" while it streams, then its size and time."""
    if streaming:
        return "Thinking…"
    if stats is None or not stats.reasoning_tokens:
        return "Thinking"
    title = f"Thinking · {stats.reasoning_tokens} tokens"
    if stats.time_to_first_answer_s is not None:
        title += f" · {duration(stats.time_to_first_answer_s - stats.time_to_first_token_s)}"
    return title


class MessageView(Vertical):
    """One message: a role line, a reasoning model's thinking, the Markdown body, the figures.

    The thinking streams into its own dimmed, collapsible block; once the answer starts it
    collapses unless ``show_thinking``. Both bodies stream through ``MarkdownStream``.
    """

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
    MessageView > .thinking {
        background: transparent;
        border-top: none;
        padding: 0;
        margin: 0 0 1 0;
        color: $text-muted;
    }
    MessageView > .thinking CollapsibleTitle { color: $text-muted; padding: 0; }
    MessageView > .thinking Contents { padding: 0 0 0 2; }
    MessageView > .thinking Markdown {
        margin: 0; padding: 0; background: transparent; color: $text-muted; text-style: italic;
    }
    """

    def __init__(
        self, role: str, content: str = "", reasoning: str = "", show_thinking: bool = False
    ) -> None:
        super().__init__(classes=f"-{role}")
        self.role = role
        self.content = make_inert(content)
        self.reasoning = make_inert(reasoning)
        self.show_thinking = show_thinking
        self._stream: MarkdownStream | None = None
        self._thinking_stream: MarkdownStream | None = None
        self._stats = Static("", markup=False, classes="stats")
        self._markdown = Markdown(self.content)
        self._thinking_markdown = Markdown(self.reasoning)
        self._thinking = Collapsible(
            self._thinking_markdown,
            title=thinking_title(),
            collapsed=not show_thinking,
            classes="thinking",
        )
        self._thinking.display = bool(self.reasoning)
        # Mounted only for a reply that thinks: most messages never need those widgets, and
        # each one is layout and style work while a reply streams.
        self._thinking_mounted = bool(self.reasoning)

    def compose(self) -> ComposeResult:
        yield Static(literal(role_label(self.role), max_chars=80, one_line=True), classes="role")
        if self._thinking_mounted:
            yield self._thinking
        yield self._markdown
        yield self._stats

    @property
    def markdown(self) -> Markdown:
        return self._markdown

    @property
    def thinking(self) -> Collapsible:
        """The collapsible thinking block (hidden when the reply has no thinking)."""
        return self._thinking

    async def append_reasoning(self, fragment: str) -> None:
        """Add streamed thinking (made inert first); the block opens while it streams."""
        safe = make_inert(fragment)
        self.reasoning += safe
        if self._thinking_stream is None:
            await self._mount_thinking()
            self._thinking.display = True
            self._thinking.collapsed = False
            self._thinking.title = thinking_title(streaming=True)
            self._thinking_stream = Markdown.get_stream(self._thinking_markdown)
        await self._thinking_stream.write(safe)

    async def append(self, fragment: str) -> None:
        """Add streamed answer text (made inert first) through a ``MarkdownStream``."""
        if self._thinking_stream is not None:
            await self._end_thinking()
        safe = make_inert(fragment)
        self.content += safe
        if self._stream is None:
            self._stream = Markdown.get_stream(self._markdown)
        await self._stream.write(safe)

    async def _mount_thinking(self) -> None:
        if not self._thinking_mounted:
            self._thinking_mounted = True
            await self.mount(self._thinking, before=self._markdown)

    async def _end_thinking(self) -> None:
        if self._thinking_stream is not None:
            await self._thinking_stream.stop()
            self._thinking_stream = None
        self._thinking.title = thinking_title()
        self._thinking.collapsed = not self.show_thinking

    async def finish(
        self,
        final_text: str | None = None,
        final_reasoning: str | None = None,
        stats: ReplyStats | None = None,
    ) -> None:
        """End the streams and re-render once, repairing half-parsed blocks."""
        thinking_open = self._thinking_stream is not None and not self.content
        if self._thinking_stream is not None:
            await self._thinking_stream.stop()
            self._thinking_stream = None
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if final_text is not None:
            self.content = make_inert(final_text)
        if final_reasoning is not None:
            self.reasoning = make_inert(final_reasoning)
        await self._markdown.update(self.content)
        if self.reasoning:
            await self._mount_thinking()
            await self._thinking_markdown.update(self.reasoning)
            self._thinking.display = True
            self._thinking.title = thinking_title(stats)
            # A reply that ended while thinking (stopped, max tokens) stays open: that is all of it.
            self._thinking.collapsed = not (self.show_thinking or thinking_open)

    def toggle_thinking(self) -> bool:
        """Open or close the thinking block; ``False`` when this message has none."""
        if not self.reasoning:
            return False
        self._thinking.collapsed = not self._thinking.collapsed
        return True

    def set_stats(self, text: str) -> None:
        """The line under the message: figures, or why it stopped (an error's text, literally)."""
        self._stats.update(literal(text))
