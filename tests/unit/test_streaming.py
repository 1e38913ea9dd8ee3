"""Stop strings and prompt-cache arithmetic of the token stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tui_llm.engine.streaming import find_stop, held_back, tokens_to_evaluate


def test_find_stop_earliest_in_the_new_text() -> None:
    assert find_stop("hello User: there", ("User:",), 0) == 6
    assert find_stop("ab<|im_end|>cd<|x|>", ("<|x|>", "<|im_end|>"), 0) == 2
    assert find_stop("no stop here", ("User:",), 0) is None
    # A stop straddling what was already emitted and the new text is still found.
    assert find_stop("abcUser:", ("User:",), 5) == 3


def test_held_back_keeps_a_possible_stop_prefix() -> None:
    assert held_back("hello Us", ("User:",)) == 2
    assert held_back("hello", ("User:",)) == 0
    assert held_back("x<|im_", ("<|im_end|>",)) == 5


@given(st.text(max_size=40), st.lists(st.text(min_size=1, max_size=6), max_size=3))
def test_emitted_text_never_contains_a_whole_stop(text: str, stops: list[str]) -> None:
    """What is safe to emit (everything but the held-back tail) never ends inside a stop."""
    stops_t = tuple(stops)
    cut = find_stop(text, stops_t, 0)
    visible = text if cut is None else text[:cut]
    safe = visible[: len(visible) - held_back(visible, stops_t)]
    assert all(stop not in safe for stop in stops_t)


def test_tokens_to_evaluate() -> None:
    assert tokens_to_evaluate([], [1, 2, 3], False) == 3
    assert tokens_to_evaluate([1, 2], [1, 2, 3, 4], False) == 2
    assert tokens_to_evaluate([1, 9], [1, 2, 3], False) == 2
    assert tokens_to_evaluate([1, 2, 3], [1, 2, 3], False) == 0
    assert tokens_to_evaluate([1, 2, 3], [1, 2, 3], True) == 1
    assert tokens_to_evaluate([1, 2, 3, 4], [1, 2], False) == 1
