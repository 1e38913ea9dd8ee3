"""One reply's token loop in the engine child: stop strings, the thinking split, and batches.

Tokens are detokenized one by one (pieces of any length), stop strings are held back until they
cannot match, thinking is split from the answer as it streams, and text crosses to the UI in
batches every ``batch_interval_s``.
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Callable
from typing import Any

from tui_llm.engine.native import PrefillAbort
from tui_llm.engine.protocol import GenerateRequest, SamplingParams, TokensEvent
from tui_llm.engine.reasoning import (
    CLOSE_TAG,
    HARMONY_CHANNEL,
    HARMONY_MESSAGE,
    OPEN_TAG,
    HarmonySplitter,
    ReasoningSplitter,
    Split,
)
from tui_llm.engine.streaming import find_stop, held_back

# Special tokens that structure a reply, shown to the splitter even where the GGUF marks them as
# control tokens (hidden when detokenized): the thinking tags and harmony's markers (gpt-oss).
STRUCTURE_TOKENS = frozenset(
    text.encode()
    for text in (
        OPEN_TAG,
        CLOSE_TAG,
        HARMONY_CHANNEL,
        HARMONY_MESSAGE,
        "<|start|>",
        "<|end|>",
        "<|constrain|>",
    )
)


class ReplyStream:
    """One reply's token loop: stop strings, the thinking split, and batches to the UI."""

    def __init__(
        self,
        request: GenerateRequest,
        splitter: ReasoningSplitter | HarmonySplitter,
        send: Callable[[TokensEvent], None],
        cancelled: Callable[[], bool],
    ) -> None:
        self._send = send
        self._cancelled = cancelled
        self._rid = request.request_id
        self._request = request
        self._splitter = splitter
        self.answer = ""
        self.reasoning = ""
        self._unsent_answer = ""
        self._unsent_reasoning = ""
        self._batch_tokens = 0
        self._last_flush = time.perf_counter()
        self.n_generated = 0
        self.reasoning_tokens = 0
        self.first_at: float | None = None
        self.last_at = self._last_flush
        self.first_answer_at: float | None = None

    def run(self, llm: Any, tokens: list[int], room: int, template_stops: tuple[str, ...]) -> str:
        """Generate until a stop; returns the finish reason."""
        import llama_cpp

        sampling: SamplingParams = self._request.sampling
        stops = tuple(dict.fromkeys(s for s in (*sampling.stop, *template_stops) if s))
        max_tokens = min(sampling.max_tokens, room) if sampling.max_tokens > 0 else room
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        raw = ""
        emitted = 0
        finish = "length"
        # Stop on request inside the prompt's decodes too (a long prompt on a CPU takes minutes).
        prefill = PrefillAbort(llm, self._cancelled)
        try:
            for token in llm.generate(
                tokens,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                reset=True,
            ):
                prefill.clear()
                now = time.perf_counter()
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now
                if self._cancelled():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                self.n_generated += 1
                self._batch_tokens += 1
                raw += decoder.decode(visible_piece(llm, token))
                stop_at = find_stop(raw, stops, emitted)
                if stop_at is not None:
                    raw = raw[:stop_at]
                    finish = "stop"
                    break
                was_reasoning = self._splitter.in_reasoning
                safe = len(raw) - held_back(raw, stops)
                if safe > emitted:
                    self._take(self._splitter.feed(raw[emitted:safe]), now)
                    emitted = safe
                if was_reasoning or self._splitter.in_reasoning:
                    self.reasoning_tokens += 1
                if now - self._last_flush >= self._request.batch_interval_s:
                    self._flush(now)
                if self.n_generated >= max_tokens:
                    finish = "length" if self.n_generated < room else "context"
                    break
        except RuntimeError as exc:
            # "llama_decode returned 2": the prompt's decode was stopped by the callback.
            # llama-cpp-python's n_tokens counts the n_batch chunks done before it (what the KV
            # cache holds beyond them goes at the next eval); the logits are stale, so the next
            # reply must decode at least one token even for a prompt equal to those chunks.
            if not (self._cancelled() and str(exc).endswith("returned 2")):
                raise
            llm._requires_eval = True
            finish = "cancelled"
        finally:
            prefill.clear()
        raw += decoder.decode(b"", final=True) if finish != "stop" else ""
        end = time.perf_counter()
        self._take(self._splitter.feed(raw[emitted:]), end)
        self._take(self._splitter.finish(), end)
        self._flush(end)
        return finish

    def _take(self, split: Split, now: float) -> None:
        if split.answer and self.first_answer_at is None:
            self.first_answer_at = now
        self.answer += split.answer
        self.reasoning += split.reasoning
        self._unsent_answer += split.answer
        self._unsent_reasoning += split.reasoning

    def _flush(self, now: float) -> None:
        if self._unsent_answer or self._unsent_reasoning:
            self._send(
                TokensEvent(
                    self._rid, self._unsent_answer, self._batch_tokens, self._unsent_reasoning
                )
            )
            self._unsent_answer = self._unsent_reasoning = ""
            self._batch_tokens = 0
            self._last_flush = now


def token_piece(llm: Any, token: int, special: bool) -> bytes:
    """A token's bytes, however long: the buffer grows to what llama.cpp says it needs.

    ``llama_token_to_piece`` returns minus the needed size when the buffer is too small
    (llama.cpp's llama-vocab.cpp); a fixed 256-byte buffer would drop longer tokens.
    """
    import llama_cpp

    size = 256
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buffer, size, 0, special)
        if n >= 0:
            return buffer.raw[:n]
        size = -n


def visible_piece(llm: Any, token: int) -> bytes:
    """What a generated token adds to the reply: special tokens are hidden, except those that
    structure it (``STRUCTURE_TOKENS``), which the thinking split needs."""
    piece = token_piece(llm, token, special=False)
    if not piece:
        special = token_piece(llm, token, special=True)
        if special in STRUCTURE_TOKENS:
            return special
    return piece


def special_text(llm: Any, token: int) -> str:
    """A special token's text (BOS, EOS), or ``""`` for a model without one."""
    if token < 0:
        return ""
    return token_piece(llm, token, special=True).decode(errors="ignore")
