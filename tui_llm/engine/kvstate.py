"""Taking a conversation's KV cache out of a loaded ``Llama`` and putting it back after a reload.

Used only inside the engine child: ``llama_cpp`` is imported inside the functions, never here.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any


@dataclass
class SavedState:
    """A conversation's KV cache taken out of llama.cpp, device-independent."""

    data: bytes
    input_ids: list[int]
    n_tokens: int


def save_state(llm: Any) -> SavedState | None:
    """Copy *llm*'s KV cache and evaluated tokens; ``None`` when there is no model or nothing."""
    import llama_cpp

    if llm is None or llm.n_tokens == 0:
        return None
    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_get_size(ctx)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_get_data(ctx, buffer, size)
    return SavedState(
        # string_at copies in C; bytes(buffer[:n]) builds a list of n ints first (1 s / 70 MB).
        data=ctypes.string_at(buffer, written),
        input_ids=[int(t) for t in llm.input_ids[: llm.n_tokens]],
        n_tokens=int(llm.n_tokens),
    )


def restore_state(llm: Any, state: SavedState) -> int:
    """Put *state* into *llm*; returns the tokens restored (0 when llama.cpp refused it)."""
    import llama_cpp

    buffer = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
    if llama_cpp.llama_state_set_data(llm._ctx.ctx, buffer, len(state.data)) == 0:
        return 0
    llm.input_ids[: state.n_tokens] = state.input_ids
    llm.n_tokens = state.n_tokens
    llm._requires_eval = True
    return state.n_tokens
