"""Make model output inert: terminal control bytes become visible symbols, never commands.

A model can emit ESC, CSI, OSC (including OSC 52, which writes the clipboard), BEL or backspace
through byte-fallback tokens; written raw to a terminal they would act. Newline and tab stay.
"""

from __future__ import annotations

import re

_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def _symbol(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ .. ␟ (␛ for ESC)
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def make_inert(text: str) -> str:
    """``text`` with every control character but newline and tab replaced by a visible symbol."""
    return _CONTROL_RE.sub(_symbol, text)
