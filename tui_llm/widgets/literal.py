"""Outside text as widget content: shown as it is, never read as markup, never acting on a terminal.

Every widget that shows text the app did not write itself (a file name, GGUF metadata, a saved
conversation's title, an error that quotes them, a Hub repository name) builds it here, from
``tui_llm.textsafe.make_inert``. ``literal`` gives Textual ``Content`` and ``literal_text`` a Rich
``Text``: neither is ever read as markup, so ``[/INST]`` or ``arr[i]`` show as typed. Where an API
takes only markup (the command palette's help line, a system command's title), ``literal_markup``
escapes it. ``notify_literal`` is the one way to put such text in a notification.
``literal_markdown`` shows a saved message's Markdown as Rich renders it: its HTML as text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from markdown_it import MarkdownIt
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import CodeBlock, MarkdownElement
from rich.markdown import Markdown as RichMarkdown
from rich.syntax import Syntax
from rich.text import Text
from textual.app import App
from textual.content import Content
from textual.notifications import SeverityLevel
from textual.widget import Widget

from tui_llm.textsafe import DEFAULT_MAX_CHARS, make_inert

__all__ = [
    "literal",
    "literal_markdown",
    "literal_markup",
    "literal_text",
    "notify_literal",
    "shorten_middle",
]


def literal(
    text: str | bytes,
    *,
    style: str = "",
    max_chars: int | None = DEFAULT_MAX_CHARS,
    one_line: bool = False,
) -> Content:
    """``text`` made inert (see ``make_inert``) as ``Content`` in ``style``; never markup."""
    content = Content(make_inert(text, max_chars=max_chars, one_line=one_line))
    return content.stylize(style) if style else content


def literal_text(
    text: str | bytes,
    *,
    style: str = "",
    max_chars: int | None = DEFAULT_MAX_CHARS,
    one_line: bool = False,
) -> Text:
    """``text`` made inert as a Rich ``Text`` (for ``DataTable`` cells, which read ``str`` as
    markup, and for ``Text`` put together from parts); never markup."""
    return Text(make_inert(text, max_chars=max_chars, one_line=one_line), style=style)


def literal_markup(
    text: str | bytes, *, max_chars: int | None = DEFAULT_MAX_CHARS, one_line: bool = True
) -> str:
    """``text`` made inert and escaped, for an API that reads only markup: Textual's markup
    parser turns it back into exactly the inert text."""
    return make_inert(text, max_chars=max_chars, one_line=one_line).replace("[", "\\[")


@lru_cache(maxsize=64)
def _lexer(name: str) -> Lexer | str:
    """The Pygments lexer for a code block's language (``name`` itself if there is none).

    Looking a lexer up by name walks Pygments' whole table (milliseconds); a conversation's
    code blocks use a handful of languages, and a lexer can be used again and again.
    """
    try:
        return get_lexer_by_name(name, stripnl=False, ensurenl=True, tabsize=4)
    except ClassNotFound:
        return name


class _CodeBlock(CodeBlock):
    """Rich's code block, with its lexer looked up once per language."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        code = str(self.text).rstrip()
        yield Syntax(code, _lexer(self.lexer_name), theme=self.theme, word_wrap=True, padding=1)


class _LiteralMarkdown(RichMarkdown):
    elements: ClassVar[dict[str, type[MarkdownElement]]] = {
        **RichMarkdown.elements,
        "fence": _CodeBlock,
        "code_block": _CodeBlock,
    }


def literal_markdown(text: str, *, code_theme: str = "monokai") -> RichMarkdown:
    """``text`` made inert as Markdown that Rich renders: Markdown's structure (paragraphs,
    lists, code, tables) and nothing more.

    Raw HTML is shown as text (Rich's own parser would drop it unseen) and a link shows its
    address after its text instead of becoming a terminal hyperlink (OSC 8) to it.
    """
    markdown = _LiteralMarkdown("", code_theme=code_theme, hyperlinks=False)
    markdown.markup = make_inert(text, max_chars=None)
    markdown.parsed = _parser().parse(markdown.markup)
    return markdown


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    """CommonMark with GitHub's tables and strikethrough, HTML read as text."""
    return MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table")


def shorten_middle(text: str, cells: int) -> str:
    """``text`` in at most ``cells`` terminal cells: its start, ``…``, and its end.

    Measured in cells as shown (a wide character takes two), so pass text already made inert:
    cutting a raw escape sequence in the middle could leave a different, working one.
    """
    if cell_len(text) <= cells:
        return text
    if cells <= 1:
        return "…"[:cells]
    tail_budget = cells // 2
    head_budget = cells - tail_budget - 1
    head: list[str] = []
    used = 0
    for char in text:
        width = cell_len(char)
        if used + width > head_budget:
            break
        head.append(char)
        used += width
    tail: list[str] = []
    used = 0
    for char in reversed(text):
        width = cell_len(char)
        if used + width > tail_budget:
            break
        tail.append(char)
        used += width
    return "".join(head) + "…" + "".join(reversed(tail))


def notify_literal(
    node: App[Any] | Widget,
    message: str,
    *,
    title: str = "",
    severity: SeverityLevel = "information",
    timeout: float | None = None,
) -> None:
    """A notification whose message and title are shown as they are (markup off, controls made
    visible, a long message cut). Thread-safe, like ``notify``."""
    node.notify(
        make_inert(message, max_chars=DEFAULT_MAX_CHARS),
        title=make_inert(title, max_chars=200, one_line=True),
        severity=severity,
        timeout=timeout,
        markup=False,
    )
