"""Make outside text inert: what a model, a user, a file name or a GGUF file says is shown as it is.

Text from outside (model output, file names, GGUF metadata, error messages that quote them) can
hold terminal control sequences: ESC, CSI, OSC (OSC 0 sets the window title, OSC 52 writes the
clipboard), BEL or backspace. Written raw to a terminal they would act. It can also hold bidi
overrides that show a line in another order than it is stored, lone surrogates (a file name that
is not UTF-8, decoded by ``os.fsdecode``) that cannot be encoded for output, or a hundred
thousand characters. ``make_inert`` turns all of that into visible, printable text; newline and
tab stay unless ``one_line`` is set. It is the one place where this is decided: the UI
(``tui_llm.widgets.literal``) and the command line both go through it.
"""

from __future__ import annotations

import re
from typing import TextIO

# C0 controls but tab and newline, DEL, C1 controls; the bidi embeddings, overrides, isolates and
# marks (U+061C, U+200E-200F, U+202A-202E, U+2066-2069), which reorder what follows them; the line
# and paragraph separators (U+2028-2029) and the interlinear annotation marks (U+FFF9-FFFB); and
# lone surrogates (U+D800-DFFF), which no encoder writes.
_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufff9-\ufffb"
    "\ud800-\udfff"
)
_UNSAFE_RE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_ONE_LINE_RE = re.compile(f"[\t\n{_UNSAFE}]")

DEFAULT_MAX_CHARS = 500
"""What one line or short text of outside text (a name, a title, an error) keeps by default."""


def _symbol(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ .. ␟ (␛ for ESC, ␊ for a newline on one line)
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0xDC80 <= code <= 0xDCFF:
        return f"<0x{code - 0xDC00:02X}>"  # a byte that was not UTF-8 (``surrogateescape``)
    return f"<U+{code:04X}>"


def make_inert(text: str | bytes, *, max_chars: int | None = None, one_line: bool = False) -> str:
    """``text`` with every control, reordering or unencodable character replaced by a symbol.

    Bytes are decoded as UTF-8, an invalid sequence becoming U+FFFD. C0 and C1 controls become
    Unicode control pictures (``␛``) or ``<U+0085>``; bidi controls ``<U+202E>``; a lone surrogate
    from ``os.fsdecode`` the byte it stands for, ``<0xFF>``. Newline and tab stay, unless
    ``one_line``, when they become ``␊`` and ``␉``. With ``max_chars``, only the first
    ``max_chars`` characters of ``text`` are kept, followed by ``… (+N characters)`` saying how
    many were left out. The result is printable and encodes as UTF-8; making it inert again
    (without a cut) changes nothing.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    pattern = _UNSAFE_ONE_LINE_RE if one_line else _UNSAFE_RE
    if max_chars is None or len(text) <= max_chars:
        return pattern.sub(_symbol, text)
    left_out = len(text) - max_chars
    return f"{pattern.sub(_symbol, text[:max_chars])}… (+{left_out:,} characters)"


def for_stream(text: str, stream: TextIO) -> str:
    """``text`` as it should be written to ``stream``: inert on a terminal, exact otherwise.

    A script reading a pipe gets the exact text (model output, names) it asked for; a person
    at a terminal gets text that cannot act on the terminal.
    """
    isatty = getattr(stream, "isatty", None)
    return make_inert(text) if isatty is not None and isatty() else text
