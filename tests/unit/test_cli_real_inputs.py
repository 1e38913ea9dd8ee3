"""``tui-llm chat`` with reasoning models, bad templates, and arguments that would break a reply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.test_real_inputs import REFUSES_SYSTEM, THINK_THEN_ANSWER
from tests.unit.test_cli import tui_llm
from tui_llm.catalog.table_models import write_scripted_model
from tui_llm.config import load_settings

GREEDY = ("--temperature", "0", "--ctx", "256")


@pytest.fixture(scope="module")
def thinker(model_dir: Path) -> Path:
    return write_scripted_model(model_dir / "cli-thinks.gguf", THINK_THEN_ANSWER)


def test_json_gives_reasoning_and_text_apart(thinker: Path) -> None:
    result = tui_llm("chat", str(thinker), "--prompt", "Capital?", "--json", *GREEDY)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["reasoning"], data["text"]) == ("Let me think.", "Paris it is.")
    assert data["stats"]["reasoning_tokens"] == 4
    assert data["stats"]["time_to_first_answer_s"] >= data["stats"]["time_to_first_token_s"]


def test_plain_output_puts_the_thinking_on_stderr(thinker: Path) -> None:
    result = tui_llm("chat", str(thinker), "--prompt", "Capital?", *GREEDY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Paris it is.\n"
    assert "Let me think." in result.stderr
    assert "4 thinking + 3 answer" in result.stderr


def test_hide_thinking(thinker: Path) -> None:
    result = tui_llm("chat", str(thinker), "--prompt", "Capital?", "--hide-thinking", *GREEDY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Paris it is.\n"
    assert "Let me think." not in result.stderr


def test_an_empty_stop_string_is_refused(thinker: Path) -> None:
    result = tui_llm("chat", str(thinker), "--prompt", "x", "--stop", "")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tui-llm: error: argument --stop: a stop string cannot be empty"
    ]


def test_an_empty_stop_string_in_the_settings_is_named(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[sampling]\nstop = ["\\n\\n", ""]\ntemperature = 0.5\n')
    settings, warning = load_settings(path)
    assert settings.sampling.stop == () and settings.sampling.temperature == 0.5
    assert warning is not None and "sampling.stop" in warning


def test_a_conversation_over_the_context_fails_at_once(model_dir: Path) -> None:
    model = write_scripted_model(model_dir / "cli-ctx.gguf", ["Ok."])
    words = " ".join(["word"] * 40)
    # Not a speed target: it was a fixed 30 s wait, so a 20 s limit catches it coming back.
    result = tui_llm("chat", str(model), "--ctx", "32", "--prompt", words, timeout=20)
    assert result.returncode == 1
    assert "the context holds 32" in result.stderr.strip().splitlines()[-1]


def test_a_template_that_raises_fails_at_once_with_its_message(model_dir: Path) -> None:
    model = write_scripted_model(
        model_dir / "cli-gemma.gguf", ["Ok."], chat_template=REFUSES_SYSTEM
    )
    result = tui_llm("chat", str(model), "--system", "Be brief.", "--prompt", "hi", timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "tui-llm: the chat template failed: System role not supported"
    )
