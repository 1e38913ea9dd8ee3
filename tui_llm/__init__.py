"""tui-llm: a terminal chat client for local GGUF models with live GPU offload control."""

from __future__ import annotations

__version__ = "0.1.0"
