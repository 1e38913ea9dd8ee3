"""The bytes the real app writes to a terminal when outside text on screen is hostile.

``tests/ui/test_hostile_text.py`` reads what widgets would draw; here the real ``tui-llm`` runs on
a pseudo-terminal and the test reads every byte it writes, as a terminal would receive them. A
model file's name, its GGUF ``general.name`` and the model's reply each carry:

- an OSC 52 clipboard write, ``ESC ] 52 ; c ; SGVsbG8= BEL`` (it would set the clipboard);
- a CSI device-status query, ``ESC [ 5 n``: the terminal would answer into the app's input. It is
  the CSI checked because Textual never writes it itself (Textual does write ``ESC [ 6 n``, the
  cursor-position query, ``ESC [ ? 1049 h/l`` for the alternate screen, and Rich has ``ESC [ 2 J``),
  so its absence is about the outside text only;
- a C1 CSI, U+009B (``\\xc2\\x9b`` in UTF-8), which some terminals take as ``ESC [``;
- a right-to-left override, U+202E, which shows what follows in reverse.

None of them may appear raw; each must be on screen as a visible symbol instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.hubserver import FakeHub, FakeRepo
from tui_llm.catalog.table_models import write_scripted_model

HOSTILE = "\x1b]52;c;SGVsbG8=\x07 \x1b[5n \x9b6n \u202eevil"
RAW_BYTES = (b"\x1b]52", b"\x1b[5n", b"\xc2\x9b", b"\xe2\x80\xae")
# What a person sees instead (the symbols make_inert uses; a space stays a space).
SHOWN = "␛]52;c;SGVsbG8=␇ ␛[5n <U+009B>6n <U+202E>evil"
REPLY = [
    "REPLY-START",
    " \x1b]52;c;SGVsbG8=\x07",
    " \x1b[5n",
    " \x9b6n",
    " \u202eevil",
    " REPLY-END",
]
SIZE = (160, 48)  # columns, rows
_ESCAPES = re.compile(
    rb"\x1b\[[0-9;?<>=$ ]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Z]"
)


def screen_text(raw: bytes) -> str:
    """The printable text of terminal output: Textual's own escape sequences removed."""
    return _ESCAPES.sub(b"", raw).decode("utf-8", errors="replace")


class AppOnTerminal:
    """``tui-llm ARGS`` on a 160x48 pseudo-terminal; ``output`` is every byte it has written."""

    def __init__(self, *args: str) -> None:
        self.controller, terminal = os.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui_llm", *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        os.close(terminal)
        self.output = bytearray()

    def read(self, timeout_s: float) -> None:
        """Read what the app wrote within ``timeout_s`` seconds (less if it exits)."""
        ready, _, _ = select.select([self.controller], [], [], timeout_s)
        if ready:
            with contextlib.suppress(OSError):  # EIO: the app closed the terminal
                self.output += os.read(self.controller, 1 << 16)

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Read until ``text`` is on screen; ``AssertionError`` with the screen's tail if not."""
        deadline = time.monotonic() + timeout_s
        while text not in screen_text(self.output):
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.proc.poll() is None, (
                f"{text!r} never came on screen: {screen_text(self.output)[-1500:]!r}"
            )
            self.read(min(remaining, 0.5))

    def type(self, keys: bytes) -> None:
        os.write(self.controller, keys)

    def quit(self, timeout_s: float = 20) -> int:
        """Ctrl+Q, then read until the app exits; its exit status."""
        self.type(b"\x11")
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read(0.1)
        self.read(0.2)
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.controller)


def assert_inert(output: bytes) -> None:
    for raw in RAW_BYTES:
        assert raw not in output, f"{raw!r} reached the terminal"


def test_the_app_writes_a_hostile_name_metadata_and_reply_inert(tmp_path: Path) -> None:
    """Open a model whose file name, general.name and reply are hostile; send one message.

    The main screen shows the file name (model list, loading line, status bar, chat); the same
    sequences sit in general.name for any place that shows it.

    A person sees the name and the reply with visible ␛ and <U+…> symbols; the terminal receives
    none of the sequences, so the clipboard, the input and the line order are untouched.
    """
    folder = tmp_path / "models"
    folder.mkdir()
    model = write_scripted_model(
        folder / f"FILE-MARK {HOSTILE}.gguf", REPLY, name=f"NAME-MARK {HOSTILE}"
    )
    app = AppOnTerminal(str(model), "--offload", "0", "--ctx", "512")
    try:
        app.wait_for("Say something.", timeout_s=60)  # "NAME.gguf is loaded. Say something."
        assert "FILE-MARK" in screen_text(app.output)
        app.type(b"hi")
        app.wait_for("hi", timeout_s=10)
        app.type(b"\r")
        app.wait_for("REPLY-END", timeout_s=60)
        status = app.quit()
    finally:
        app.close()
    assert status == 0, screen_text(app.output)[-1500:]
    assert_inert(bytes(app.output))
    shown = screen_text(app.output)
    assert "␛]52;c;SGVsbG8=␇" in shown and "<U+202E>evil" in shown


# -- tui-llm search and pull: what the Hub answers is outside text too ------------------------


def _on_terminal(*args: str) -> tuple[int, bytes]:
    """``tui-llm ARGS`` (a command that exits by itself) on the pty; exit status and bytes."""
    app = AppOnTerminal(*args)
    try:
        deadline = time.monotonic() + 120
        while app.proc.poll() is None and time.monotonic() < deadline:
            app.read(0.2)
        app.read(0.2)
        return app.proc.wait(timeout=5), bytes(app.output)
    finally:
        app.close()


def _add_repo(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, repo: FakeRepo) -> None:
    """Serve ``repo`` for this test only (the fake Hub lives for the session)."""
    monkeypatch.setitem(hub.repos, repo.repo_id, repo)


def _model_bytes(hub: FakeHub) -> bytes:
    return hub.repos["acme/TinyLlama-GGUF"].files["TinyLlama-Q8_0.gguf"]


def test_search_shows_a_hostile_repo_id_inert(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repository id from the Hub's answer holds the sequences; the table shows symbols."""
    evil = FakeRepo(f"acme/Evil {HOSTILE}-GGUF", {"Evil-Q8_0.gguf": _model_bytes(hub_server)}, 7)
    _add_repo(hub_server, monkeypatch, evil)
    status, output = _on_terminal("search", "evil")
    assert status == 0, screen_text(output)
    assert_inert(output)
    assert f"acme/Evil {SHOWN}-GGUF" in screen_text(output)


def test_pull_shows_a_hostile_file_name_inert(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chosen file's name (in the summary line and the printed path) holds the sequences."""
    name = f"Evil {HOSTILE}-Q8_0.gguf"
    _add_repo(
        hub_server, monkeypatch, FakeRepo("acme/EvilFile-GGUF", {name: _model_bytes(hub_server)})
    )
    status, output = _on_terminal("pull", "acme/EvilFile-GGUF", "--vram", "0", "--ram", "64")
    assert status == 0, screen_text(output)
    assert_inert(output)
    assert screen_text(output).count(f"Evil {SHOWN}-Q8_0") == 2  # summary line and path


def test_pull_shows_a_hostile_hub_error_inert(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub's error message (reason phrase, X-Error-Message, JSON body) holds the sequences.

    Status 499 has no meaning of its own, so the error quotes the reason phrase."""
    broken = FakeRepo(
        "acme/EvilError-GGUF",
        {"Evil-Q8_0.gguf": _model_bytes(hub_server)},
        fault_status=499,
        fault_message=f"denied {HOSTILE}",
    )
    _add_repo(hub_server, monkeypatch, broken)
    status, output = _on_terminal("pull", "acme/EvilError-GGUF")
    assert status != 0, screen_text(output)
    assert_inert(output)
    assert "HTTP 499 denied ␛]52;c;SGVsbG8=␇ ␛[5n" in screen_text(output)
