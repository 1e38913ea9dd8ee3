"""A llama-bench-style measurement inside the engine child: prompt processing and generation
speed of the loaded model, with no sampling and no text in the figures.

As llama.cpp's ``llama-bench`` (tools/llama-bench/llama-bench.cpp) measures ``pp`` and ``tg``: the
prompt is ``prompt_tokens`` random token ids decoded in ``n_batch`` chunks, then ``gen_tokens``
decodes of one token each, each fed the previous one. The KV cache is cleared first, so every
measurement starts from an empty context. Times are wall-clock seconds in this process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from tui_llm.engine.protocol import BenchEvent, BenchRequest


def bench_problem(llm: Any, request: BenchRequest) -> str | None:
    """Why ``request`` cannot run on ``llm`` (one line), or ``None``."""
    n_ctx = min(llm.n_ctx(), len(llm.input_ids))
    if request.prompt_tokens + request.gen_tokens > n_ctx:
        return (
            f"{request.prompt_tokens} prompt + {request.gen_tokens} generated tokens "
            f"do not fit the context of {n_ctx}"
        )
    return None


def bench_once(llm: Any, request: BenchRequest, cancelled: Callable[[], bool]) -> BenchEvent:
    """Measure once; a cancel stops the generation part early (fewer tokens, same rate)."""
    import llama_cpp

    def synchronize() -> None:
        # llama_decode may return before a GPU (or RPC) device has finished: wait, as
        # llama-bench does, or the time would be that of queueing the work.
        llama_cpp.llama_synchronize(llm._ctx.ctx)

    rng = random.Random(request.seed)
    n_vocab = int(llm.n_vocab())
    prompt = [rng.randrange(n_vocab) for _ in range(request.prompt_tokens)]
    llm.reset()  # n_tokens = 0: the next eval clears the KV cache from position 0
    started = time.perf_counter()
    if prompt:
        llm.eval(prompt)
        synchronize()
    prompt_done = time.perf_counter()
    token = rng.randrange(n_vocab)
    first_token_at = prompt_done
    generated = 0
    for index in range(request.gen_tokens):
        if cancelled():
            break
        llm.eval([token])
        synchronize()
        generated += 1
        if index == 0:
            first_token_at = time.perf_counter()
        token = rng.randrange(n_vocab)
    ended = time.perf_counter()
    llm.reset()
    return BenchEvent(
        request_id=request.request_id,
        prompt_tokens=len(prompt),
        prompt_s=prompt_done - started,
        gen_tokens=generated,
        gen_s=ended - prompt_done,
        first_token_s=first_token_at - started,
    )
