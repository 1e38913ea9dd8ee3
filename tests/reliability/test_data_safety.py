"""Data safety (docs/reliability.md, "Data safety"): the real ``tui-llm`` in tmux SIGKILLed at
random moments keeps every user message that reached the screen and all but about a second of
the reply, in a database that passes ``PRAGMA integrity_check``; the settings file SIGKILLed
while written is always whole. The default run does a few kills; ``pytest -m long`` does 50 of
each."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from benchmarks.reliability.data_safety import (
    chat_text,
    holds,
    kill_run,
    reply_tail,
    settings_kill_run,
    temps_after_next_save,
)
from tui_llm import config
from tui_llm.tomlfile import STALE_TEMP_S, atomic_write

REPLY_LOST_AT_MOST_S = 2.0
"""The recorder saves a streaming reply once a second, and the captures are 0.15 s apart: 1.2 s
at most by design, the rest room for a loaded machine. 50 kills measured at most 0.62 s
(docs/reliability.md). Runs of this test that measured 1.7-3.1 s: the one traced was the
measurement's (the reply repeated its message's tag, and the screen was read from there as a
reply not started; fixed), and the measure now allows two rendered words that differ from the
text (a renumbered list, a table's cut cell). A run past the bound prints what the screen
showed against what was saved (``KillRun.detail``)."""

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def kill_runs(runs: int, model: Path, tmp_path: Path) -> None:
    root = tmp_path / "kill"
    (root / "config").mkdir(parents=True)
    (root / "config" / "settings.toml").write_text("[sampling]\nmax_tokens = 2000\n")
    rng = random.Random(runs)
    for run in range(runs):
        result = kill_run(run, model, root, rng)
        print(f"\n{result}")
        assert not result.error, result.error
        assert result.integrity in ("ok", "no file yet"), result
        assert result.lost_user == set(), result
        assert result.reply_lost_s is None or result.reply_lost_s <= REPLY_LOST_AT_MOST_S, result
        assert result.engines_left == 0, result


def settings_runs(runs: int, tmp_path: Path) -> None:
    rng = random.Random(runs)
    results = [settings_kill_run(run, tmp_path, rng) for run in range(runs)]
    print(f"\n{results}")
    assert all(r.parsed for r in results), results
    assert temps_after_next_save(tmp_path) == 0


@needs_tmux
def test_a_few_kills_of_the_ui(smollm2: Path, tmp_path: Path) -> None:
    kill_runs(3, smollm2, tmp_path)


def test_settings_killed_mid_write_stay_whole(tmp_path: Path) -> None:
    settings_runs(6, tmp_path)


def test_saved_settings_load_back_without_a_warning(tmp_path: Path) -> None:
    """Every key the app writes is one it knows (a profile's n_cpu_moe was named unknown)."""
    path = tmp_path / "settings.toml"
    settings = config.Settings()
    settings.profiles["/models/a.gguf"] = config.LoadProfile(offload=3, n_cpu_moe=2)
    config.save_settings(settings, path)
    loaded, warning = config.load_settings(path)
    assert warning is None
    assert loaded.load == settings.load
    assert loaded.profiles["/models/a.gguf"].n_cpu_moe == 2


def test_a_killed_writers_temp_file_goes_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    stale = tmp_path / ".settings.toml.abc123.tmp"
    fresh = tmp_path / ".settings.toml.def456.tmp"  # another writer's, right now
    stale.write_text("half")
    fresh.write_text("half")
    old = time.time() - STALE_TEMP_S - 5
    os.utime(stale, (old, old))
    atomic_write(path, "theme = 'x'\n")
    assert path.read_text() == "theme = 'x'\n"
    assert not stale.exists() and fresh.exists()


@pytest.mark.long
@needs_tmux
def test_fifty_kills_of_the_ui(smollm2: Path, tmp_path: Path) -> None:
    kill_runs(50, smollm2, tmp_path)


@pytest.mark.long
def test_fifty_kills_of_a_settings_write(tmp_path: Path) -> None:
    settings_runs(50, tmp_path)


def test_a_reply_that_repeats_its_messages_tag_is_read_as_a_reply() -> None:
    """The measure reads the reply under the "You" header of the tagged message, not from the
    reply's own copy of the tag (read from there, the reply looked not started)."""
    screen = "\n".join(
        [
            " █ You",
            " █ msg-0-2 and then?",
            " █ Assistant",
            " █ Here's a possible rephrasing.",
            " █ msg-0-2: I'm here to help with any text you'd like",
            " █ 153 tokens · 58.6 tok/s · first token 166 ms",
            "▊▔ Message · Enter send · Ctrl+J new line ▔▔▔▎",
        ]
    )
    words = ("I'm", "here", "to", "help", "with", "any", "text", "you'd")  # "like" may be half
    assert reply_tail(screen, "msg-0-2") == words
    assert reply_tail(" █ You\n █ msg-0-3 go on\n █ Assistant", "msg-0-3") == ()


def test_the_measure_allows_a_rendered_word_or_two_but_not_text_never_saved() -> None:
    saved = "Llamas are social animals. 1. They hum. 1. They spit. Llamas live in herds."
    assert holds(saved, ("They", "hum", "2", "They", "spit", "Llamas", "live", "in"))  # renumbered
    assert holds(saved, ("social", "animals", "1", "They", "hum", "1", "They", "spit"))
    assert not holds(saved, ("in", "herds", "and", "eat", "grass", "all", "day", "long"))
    # Common words scattered over a long reply are not the tail.
    long = " ".join(["the cat sat on the mat"] * 40)
    assert not holds(long, ("the", "dog", "is", "on", "the", "rug", "all", "day"))


def test_the_chat_column_ends_where_the_panels_begin() -> None:
    """A wider panel moves the chat's edge: its text is not read as the reply's."""
    screen = "\n".join(
        [
            " █ Assistant" + " " * 60 + "╭─ GPU / memory ──────╮",
            " █ Llamas hum." + " " * 59 + "│ no NVIDIA driver    │",
        ]
    )
    assert chat_text(screen) == "Assistant Llamas hum."
    assert chat_text(" █ You\n █ hi") == "You hi"  # no panel on screen: the usual width
