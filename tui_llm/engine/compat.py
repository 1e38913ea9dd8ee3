"""The llama-cpp-python internals the engine relies on, and the versions it is tested with.

The public API has no way to read the KV cache state's raw context, the vocabulary pointer for
``llama_token_to_piece``, or whether the next prompt must be re-evaluated, so the engine uses
``Llama._ctx.ctx``, ``Llama._model.vocab`` and ``Llama._requires_eval``. They have been stable
through 0.3.x; pyproject.toml allows ``>=0.3.16,<0.4`` (tested with 0.3.16 to 0.3.36), and a
load checks they are there, so another version fails with one line rather than mid-reply.
"""

from __future__ import annotations

from typing import Any

TESTED_RANGE = ">=0.3.16,<0.4"


def missing_internals(llm: Any) -> list[str]:
    """The internals a loaded ``Llama`` lacks (empty when the engine can use it)."""
    missing = []
    if not isinstance(getattr(llm, "_requires_eval", None), bool):
        missing.append("Llama._requires_eval")
    if getattr(getattr(llm, "_model", None), "vocab", None) is None:
        missing.append("Llama._model.vocab")
    if getattr(getattr(llm, "_ctx", None), "ctx", None) is None:
        missing.append("Llama._ctx.ctx")
    return missing


def unsupported_message(version: str, missing: list[str]) -> str:
    """One line for a llama-cpp-python the engine cannot drive."""
    return (
        f"llama-cpp-python {version} lacks {', '.join(missing)}, which tui-llm needs; "
        f"install llama-cpp-python{TESTED_RANGE}"
    )
