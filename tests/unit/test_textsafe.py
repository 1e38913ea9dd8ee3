"""``make_inert``: outside text becomes printable text that shows what it is and does nothing."""

from __future__ import annotations

import io

import pytest

from tui_llm.textsafe import for_stream, make_inert


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[/INST] means what?", "[/INST] means what?"),  # markup is not this layer's business
        ("x\x1b]0;pwned\x07y", "x␛]0;pwned␇y"),  # set the window title
        ("c\x1b]52;c;cHduZWQ=\x1b\\", "c␛]52;c;cHduZWQ=␛\\"),  # write the clipboard
        ("\x1b[2Jwiped", "␛[2Jwiped"),  # clear the screen
        ("nul\x00byte\x7f", "nul␀byte␡"),
        ("csi\x9b2J", "csi<U+009B>2J"),  # a C1 CSI acts like ESC [ on some terminals
        ("back\x08\x08\rover", "back␈␈␍over"),
        ("abc\u202edcba", "abc<U+202E>dcba"),  # right-to-left override
        ("\u2066iso\u2069 \u200f\u061c", "<U+2066>iso<U+2069> <U+200F><U+061C>"),
        ("line\u2028sep", "line<U+2028>sep"),
        ("bad\udcffname", "bad<0xFF>name"),  # os.fsdecode of a byte that is not UTF-8
        ("lone \ud800 high", "lone <U+D800> high"),
        ("two\nlines\tand a tab", "two\nlines\tand a tab"),
        ("emoji 👩‍💻 and 中文", "emoji 👩‍💻 and 中文"),  # the zero-width joiner stays
    ],
)
def test_controls_bidi_and_surrogates_become_visible(text: str, shown: str) -> None:
    inert = make_inert(text)
    assert inert == shown
    inert.encode("utf-8")  # never raises: a lone surrogate is gone
    assert make_inert(inert) == inert


def test_bytes_are_decoded_as_utf8_with_replacement() -> None:
    assert make_inert(b"caf\xc3\xa9 \xff\xfe \x1b[2J") == "café \ufffd\ufffd ␛[2J"


def test_one_line_shows_newlines_and_tabs() -> None:
    assert make_inert("a\nb\tc\r\n", one_line=True) == "a␊b␉c␍␊"


def test_a_long_text_is_cut_with_a_clear_marker() -> None:
    text = "\x1b" * 50 + "x" * 99_950
    inert = make_inert(text, max_chars=100)
    assert inert == "␛" * 50 + "x" * 50 + "… (+99,900 characters)"
    assert make_inert("short", max_chars=100) == "short"
    assert make_inert("x" * 100, max_chars=100) == "x" * 100


def test_a_cut_never_leaves_half_an_escape_sequence() -> None:
    inert = make_inert("ab\x1b]0;title\x07", max_chars=3)
    assert inert == "ab␛… (+9 characters)"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_inert_text_and_a_pipe_the_exact_text() -> None:
    text = "name\x1b]0;x\x07"
    assert for_stream(text, _Terminal()) == "name␛]0;x␇"
    assert for_stream(text, io.StringIO()) == text
