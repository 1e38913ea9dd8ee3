"""The command line with hostile GGUF metadata: a terminal gets inert text, a pipe the exact text.

``tui-llm info`` and ``tui-llm fit`` print ``general.name`` and ``general.architecture``; a file
can set them to escape sequences (set the window title, write the clipboard, clear the screen).
Run on a pseudo-terminal, no ESC byte may come out; through a pipe the text stays exact, as
``tui-llm chat`` keeps the model's text exact for a script.
"""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tui_llm.catalog.generate import write_llama_gguf

HOSTILE_NAME = "x\x1b]0;pwned\x07 \x1b]52;c;cHduZWQ=\x1b\\ \x1b[2J [/INST] \u202eevil"
SHOWN_NAME = "x␛]0;pwned␇ ␛]52;c;cHduZWQ=␛\\ ␛[2J [/INST] <U+202E>evil"
HOSTILE_ARCH = b"\x1b[2Jx"  # as long as "llama": the file is patched in place


def on_terminal(*args: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``tui-llm ARGS`` with stdout and stderr on a pseudo-terminal; its exit status and
    everything it wrote there."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_llm", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        cwd=REPO,
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), output.decode()
    finally:
        proc.kill()
        os.close(controller)


def through_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui_llm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose general.name is hostile (its architecture is still llama)."""
    folder = tmp_path_factory.mktemp("hostile")
    return write_llama_gguf(folder / "hostile.gguf", n_layer=2, n_embd=64, name=HOSTILE_NAME)


@pytest.fixture(scope="module")
def hostile_arch_model(hostile_model: Path) -> Path:
    """The same model with general.architecture patched to an escape sequence."""
    data = bytearray(hostile_model.read_bytes())
    key = b"general.architecture"
    value = data.index(key) + len(key) + 4 + 8  # after the key: type (u32), length (u64)
    assert data[value - 12 : value + 5] == struct.pack("<IQ", 8, 5) + b"llama"
    data[value : value + 5] = HOSTILE_ARCH
    patched = hostile_model.with_name("hostile-arch.gguf")
    patched.write_bytes(bytes(data))
    return patched


@pytest.mark.parametrize("command", ["info", "fit"])
def test_a_terminal_gets_no_escape_from_the_model_name(command: str, hostile_model: Path) -> None:
    status, output = on_terminal(command, str(hostile_model))
    assert status == 0, output
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert SHOWN_NAME in output


@pytest.mark.parametrize("command", ["info", "fit"])
def test_a_pipe_gets_the_exact_model_name(command: str, hostile_model: Path) -> None:
    result = through_pipe(command, str(hostile_model))
    assert result.returncode == 0, result.stderr
    assert HOSTILE_NAME in result.stdout


def test_info_shows_a_hostile_architecture_inert(hostile_arch_model: Path) -> None:
    status, output = on_terminal("info", str(hostile_arch_model))
    assert status == 0, output
    assert "\x1b" not in output
    assert "Architecture     ␛[2Jx" in output


def test_an_error_quoting_a_file_name_is_one_inert_line(tmp_path: Path) -> None:
    """A missing model named with an escape and a newline: one line, nothing that acts."""
    missing = str(tmp_path / "gone\x1b]0;pwned\x07\nsecond line.gguf")
    for result in (through_pipe("info", missing), through_pipe("fit", missing)):
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "\x1b" not in result.stderr
        assert "gone␛]0;pwned␇" in result.stderr and "second line.gguf" in result.stderr


def test_say_makes_messages_inert(capsys: pytest.CaptureFixture[str]) -> None:
    """What the chat command prints when the engine fails (a chat template that raises)."""
    from tui_llm.cli import say

    say("tui-llm: ValueError: boom \x1b]0;pwned\x07\nnext")
    say("tui-llm: error: bad \x1b[2J\nname", one_line=True)
    assert capsys.readouterr().err == (
        "tui-llm: ValueError: boom ␛]0;pwned␇\nnext\ntui-llm: error: bad ␛[2J␊name\n"
    )


def test_search_aligns_inert_names_on_a_terminal() -> None:
    from datetime import datetime

    from tui_llm.catalog.hub import HubModel
    from tui_llm.cli.hub import _table

    model = HubModel("org/a\x1b[2J\u202eb", 1, 2, datetime(2025, 1, 1), None, "llama", None, False)
    lines = _table([model], inert=True).splitlines()
    assert lines[1].startswith("org/a␛[2J<U+202E>b  ")
    assert lines[0].index("PARAMS") == lines[1].index("-")
    assert _table([model]).splitlines()[1].startswith("org/a\x1b[2J\u202eb  ")  # for a pipe


def test_a_name_that_is_not_utf8_is_read_with_replacement_characters(tmp_path: Path) -> None:
    model = write_llama_gguf(tmp_path / "bytes.gguf", n_layer=2, n_embd=64, name="NAME-OK")
    data = model.read_bytes().replace(b"NAME-OK", b"NA\xff\xfe-OK", 1)
    model.write_bytes(data)
    status, output = on_terminal("info", str(model))
    assert status == 0, output
    assert "Name             NA\ufffd\ufffd-OK" in output


# Model output with OSC 52 (write the clipboard), CSI 2J, a C1 CSI and a bidi override.
HOSTILE_REPLY = ["\x1b]52;c;cHduZWQ=\x07", " \x1b[2Jwiped", " \x9b6n", " \u202eevil"]
SHOWN_REPLY = "␛]52;c;cHduZWQ=␇ ␛[2Jwiped <U+009B>6n <U+202E>evil"


def test_chat_on_a_terminal_writes_the_models_escapes_inert(tmp_path: Path) -> None:
    """The bytes ``tui-llm chat`` writes to a terminal: the reply's escapes are visible symbols;
    no ESC, C1 or bidi override comes out (the CLI writes no escapes of its own here)."""
    from tui_llm.catalog.table_models import write_scripted_model

    model = write_scripted_model(tmp_path / "hostile-reply.gguf", HOSTILE_REPLY)
    status, output = on_terminal(
        "chat", str(model), "--prompt", "hi", "--temperature", "0", "--max-tokens", "16"
    )
    assert status == 0, output
    assert SHOWN_REPLY in output
    for raw in ("\x1b", "\x9b", "\x07", "\u202e"):
        assert raw not in output
    # Through a pipe the same reply is exact: the model did emit the raw sequences.
    piped = through_pipe(
        "chat", str(model), "--prompt", "hi", "--temperature", "0", "--max-tokens", "16"
    )
    assert "".join(HOSTILE_REPLY) in piped.stdout
