"""Pure helpers of token streaming: stop strings held back, prompt tokens the cache saves."""

from __future__ import annotations


def tokens_to_evaluate(cached: list[int], prompt: list[int], requires_eval: bool) -> int:
    """How many prompt tokens llama-cpp-python will decode, given what the KV cache holds."""
    if not cached:
        return len(prompt)
    common = 0
    for a, b in zip(cached, prompt, strict=False):
        if a != b:
            break
        common += 1
    if common == len(prompt):
        if len(cached) == len(prompt) and not requires_eval:
            return 0
        return 1
    return len(prompt) - common


def find_stop(text: str, stops: tuple[str, ...], emitted: int) -> int | None:
    """Index of the earliest stop string in the not-yet-emitted part of ``text``."""
    best: int | None = None
    for stop in stops:
        start = max(0, emitted - len(stop) + 1)
        index = text.find(stop, start)
        if index != -1 and (best is None or index < best):
            best = index
    return best


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the tail of ``text`` that could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
