"""Per-user directories, resolved on call (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "tui-llm"


def _override(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value else None


def config_dir() -> Path:
    """Directory of settings.toml and user themes (TUI_LLM_CONFIG_DIR overrides)."""
    return _override("TUI_LLM_CONFIG_DIR") or Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Directory of the demo model, the default model folder and conversations."""
    return _override("TUI_LLM_DATA_DIR") or Path(platformdirs.user_data_dir(APP_NAME))


def state_dir() -> Path:
    """Directory of learned estimate corrections and recent models."""
    return _override("TUI_LLM_STATE_DIR") or Path(platformdirs.user_state_dir(APP_NAME))


def log_dir() -> Path:
    """Directory of the engine's llama.cpp log files."""
    return _override("TUI_LLM_LOG_DIR") or Path(platformdirs.user_log_dir(APP_NAME))


def default_models_dir() -> Path:
    """The models folder tui-llm creates and scans by default."""
    return data_dir() / "models"


def demo_model_path() -> Path:
    """Where the built-in demo model is written on first use."""
    return data_dir() / "demo" / "tui-llm-demo-bigram.gguf"
