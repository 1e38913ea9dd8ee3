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
    kill_run,
    settings_kill_run,
    temps_after_next_save,
)
from tui_llm import config
from tui_llm.tomlfile import STALE_TEMP_S, atomic_write

REPLY_LOST_AT_MOST_S = 2.0
"""The recorder saves a streaming reply once a second, and the captures are 0.15 s apart. 50
kills measured at most 0.62 s (docs/reliability.md), but a kill in the first second of the
first reply after a start measured 1.7-1.9 s in some runs of this test, not yet explained."""

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
