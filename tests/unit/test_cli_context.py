"""``tui-llm chat`` at the context limit, on SmolLM2 with a small context: the same rule as the
app (trim sends what fits and says so, stop refuses), and a reply that fills the context says so."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_cli import tui_llm
from tui_llm import paths

SMALL = ("--ctx", "128", "--temperature", "0", "--seed", "1")
LONG_PROMPT = "Repeat after me: " + "word " * 90  # ~95 tokens of the 128


def test_trim_sends_a_prompt_that_leaves_less_room_and_says_so(smollm2: Path) -> None:
    result = tui_llm(
        "chat", str(smollm2), "--prompt", LONG_PROMPT, "--max-tokens", "64", "--json", *SMALL
    )
    assert result.returncode == 0, result.stderr
    assert "the reply has room for" in result.stderr
    data = json.loads(result.stdout)
    room = 128 - data["stats"]["prompt_tokens"]
    assert room < 64 and data["stats"]["generated_tokens"] <= room
    assert data["finish_reason"] in ("stop", "context")


def test_stop_refuses_with_the_figures(smollm2: Path) -> None:
    result = tui_llm(
        "chat",
        str(smollm2),
        "--prompt",
        LONG_PROMPT,
        "--max-tokens",
        "64",
        "--context-overflow",
        "stop",
        *SMALL,
    )
    assert result.returncode == 1
    assert "not sent" in result.stderr and "the context holds 128" in result.stderr
    assert result.stdout == ""


def test_the_settings_file_chooses_stop(smollm2: Path) -> None:
    settings = paths.config_dir() / "settings.toml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('[chat]\ncontext_overflow = "stop"\n')
    result = tui_llm("chat", str(smollm2), "--prompt", LONG_PROMPT, "--max-tokens", "64", *SMALL)
    assert result.returncode == 1 and "not sent" in result.stderr


def test_a_prompt_larger_than_the_context_is_refused(smollm2: Path) -> None:
    result = tui_llm("chat", str(smollm2), "--prompt", "word " * 300, *SMALL)
    assert result.returncode == 1
    assert "last message" in result.stderr and "the context holds 128" in result.stderr


def test_a_reply_that_fills_the_context_says_context_full(smollm2: Path) -> None:
    result = tui_llm(
        "chat",
        str(smollm2),
        "--prompt",
        "Write a very long story about a dragon.",
        "--max-tokens",
        "0",
        *SMALL,
    )
    assert result.returncode == 0, result.stderr
    assert "context full" in result.stderr
