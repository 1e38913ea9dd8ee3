"""The built-in demo model: written into the user data directory on first use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tui_llm import paths

DEMO_NOTE = (
    "Demo model: a word-bigram table dressed as a llama model, so the whole app works with no "
    "download. It strings plausible words together; it is not a language model."
)


def is_demo_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the built-in demo model."""
    return Path(path).name == paths.demo_model_path().name


def ensure_demo_model(path: Path | None = None) -> Path:
    """The demo model's path, writing it first (atomically) if it is not there yet."""
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
