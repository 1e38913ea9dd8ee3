"""The command line as a script would use it: real processes, real engine, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def tui_llm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui_llm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_chat_json(model_8l: Path) -> None:
    result = tui_llm(
        "chat",
        str(model_8l),
        "--prompt",
        "hi",
        "--max-tokens",
        "8",
        "--seed",
        "1",
        "--temperature",
        "0",
        "--ctx",
        "256",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["stats"]["generated_tokens"] == 8
    assert set(data["stats"]) >= {
        "prompt_tokens",
        "generated_tokens",
        "time_to_first_token_s",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
    }
    assert data["load"]["n_ctx"] == 256 and data["load"]["offload_layers"] == 0
    assert {b["kind"] for b in data["buffers"]} >= {"model", "kv", "compute"}
    assert data["text"]


def test_chat_streams_text_to_stdout(demo_model: Path) -> None:
    result = tui_llm(
        "chat",
        str(demo_model),
        "--prompt",
        "Tell me about llamas",
        "--max-tokens",
        "30",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert len(words) >= 5
    assert "tok/s" in result.stderr


def test_chat_on_a_split_model_in_the_hugging_face_cache(split_model_in_hf_cache: Path) -> None:
    result = tui_llm(
        "chat", str(split_model_in_hf_cache), "--prompt", "hi", "--max-tokens", "4", "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["load"]["model_path"] == str(split_model_in_hf_cache), "the snapshot path, kept"
    assert data["stats"]["generated_tokens"] == 4


def test_info(model_8l: Path) -> None:
    result = tui_llm("info", str(model_8l), "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["n_layer"] == 8 and data["architecture"] == "llama"
    text = tui_llm("info", str(model_8l))
    assert text.returncode == 0 and "llama" in text.stdout


def test_demo_model_command(tmp_path: Path) -> None:
    target = tmp_path / "demo.gguf"
    result = tui_llm("demo-model", str(target))
    assert result.returncode == 0
    assert target.exists() and result.stdout.strip() == str(target)


@pytest.mark.parametrize(
    "args",
    [
        ("chat", "/no/such/model.gguf", "--prompt", "x"),
        ("info", "/no/such/model.gguf"),
        ("chat", "README.md", "--prompt", "x"),
        ("info", "README.md"),
        ("chat", "--prompt"),
        ("chat", "x.gguf", "--prompt", "x", "--offload", "lots"),
        ("chat", "x.gguf", "--prompt", "x", "--ctx", "-5"),
        ("info",),
        ("nonsense-option", "--bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...]) -> None:
    result = tui_llm(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tui-llm: error:")
    assert "Traceback" not in result.stderr


def test_truncated_model_exits_2(tiny_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[:5000])
    result = tui_llm("chat", str(cut), "--prompt", "x")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cut.gguf" in result.stderr
