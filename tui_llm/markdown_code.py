"""The code blocks of a Markdown reply, found as the chat's Markdown widget finds them.

Textual's ``Markdown`` widget (with no ``parser_factory``, as the chat uses it) parses with
markdown-it-py's "gfm-like" preset and draws every ``fence`` token (```` ``` ```` or ``~~~``) and
every ``code_block`` token (indented code) as a code box holding the token's content, wherever
the token sits (top level, list item, block quote). Parsing the same way here means Ctrl+K copies
a box the user can see, and never text the screen does not show as code. No Textual import:
markdown-it-py is a plain parser.
"""

from __future__ import annotations

import textwrap

from markdown_it import MarkdownIt

__all__ = ["MARKDOWN_PRESET", "code_blocks"]

# The preset textual.widgets.Markdown builds its parser with when given no parser_factory.
MARKDOWN_PRESET = "gfm-like"
_CODE_TOKENS = frozenset({"fence", "code_block"})


def code_blocks(markdown: str) -> list[str]:
    """The code of every block the chat shows as code, in reading order.

    Each item is the block's text as the chat draws it (trailing whitespace dropped), less the
    indentation all its lines share. Indentation that belongs to the Markdown (a list item's, a
    block quote's ``>``, the four spaces of indented code) is never part of the code.

    A fence holds everything up to a closing fence at least as long as its opening one, so a
    fence of four backticks can wrap lines fenced with three (a model showing a Markdown snippet
    that holds code). Then the innermost real block is what the user wants to run: its code is
    copied, not the wrapper with the inner fence lines. Inline code, even written with three
    backticks, is not a block. A fence left open (a reply cut short) runs to the end, as on
    screen. Malformed Markdown never raises.
    """
    return _blocks(MarkdownIt(MARKDOWN_PRESET), markdown)


def _blocks(parser: MarkdownIt, markdown: str) -> list[str]:
    found: list[str] = []
    for token in parser.parse(markdown):
        if token.type not in _CODE_TOKENS:
            continue
        wraps_a_fence = token.type == "fence" and any(
            inner.type == "fence" for inner in parser.parse(token.content)
        )
        if wraps_a_fence:
            found.extend(_blocks(parser, token.content))
        else:
            found.append(textwrap.dedent(token.content).rstrip())
    return found
