"""Input abuse (docs/reliability.md, "Input abuse"): the app stays correct under a 1 MiB paste,
a 10,000-line message, a prompt longer than the context, a conversation of thousands of
messages, key repeat on every control and resizing during a reload. The default run does the
smaller version of each; ``pytest -m long`` the full sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability.input_abuse import run_abuse, table


async def abuse(demo_model: Path, tmp_path: Path, quick: bool) -> None:
    cases = await run_abuse(demo_model, tmp_path / "conversations.sqlite3", quick)
    print("\n" + table(cases))
    assert [c.name for c in cases if not c.correct] == []


@pytest.mark.slow
async def test_abuse_small(demo_model: Path, tmp_path: Path) -> None:
    await abuse(demo_model, tmp_path, quick=True)


@pytest.mark.long
async def test_abuse_full(demo_model: Path, tmp_path: Path) -> None:
    await abuse(demo_model, tmp_path, quick=False)
