"""The thinking/answer split of reasoning models' output, fed whole and token by token."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tui_llm.engine.reasoning import ReasoningSplitter, prompt_opens_thinking, split_reasoning


def feed_pieces(pieces: list[str], starts_in_reasoning: bool = False) -> tuple[str, str]:
    splitter = ReasoningSplitter(starts_in_reasoning)
    reasoning = answer = ""
    for piece in pieces:
        part = splitter.feed(piece)
        reasoning += part.reasoning
        answer += part.answer
    last = splitter.finish()
    return reasoning + last.reasoning, answer + last.answer


def test_think_block_then_answer() -> None:
    assert split_reasoning("<think>\nWhy? Because.\n</think>\n\nParis.") == (
        "Why? Because.",
        "Paris.",
    )


def test_prompt_opened_the_block_so_output_starts_inside_it() -> None:
    assert split_reasoning("Hmm, France.\n</think>\n\nParis.", starts_in_reasoning=True) == (
        "Hmm, France.",
        "Paris.",
    )
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_thinking("<|im_start|>assistant\n")


def test_no_tags_passes_through_unchanged() -> None:
    assert split_reasoning(" Hello, world.\n") == ("", " Hello, world.\n")


def test_block_that_never_closes_is_all_thinking() -> None:
    assert split_reasoning("<think>I was cut by max tok") == ("I was cut by max tok", "")


def test_tags_split_across_tokens() -> None:
    pieces = ["<th", "ink", ">", "deep", " thought", "</", "thi", "nk>", "\n", "Answer", "."]
    assert feed_pieces(pieces) == ("deep thought", "Answer.")


def test_think_tag_inside_an_answer_is_text() -> None:
    text = "Use <think> tags like <think>this</think>."
    assert split_reasoning(text) == ("", text)


def test_a_lone_partial_tag_at_the_end_is_kept_as_text() -> None:
    assert feed_pieces(["<thi"]) == ("", "<thi")
    assert feed_pieces(["<think>a</th"]) == ("a</th", "")


@given(
    reasoning=st.text(alphabet="ab <>/\n", max_size=30).filter(lambda t: "</think>" not in t),
    answer=st.text(alphabet="ab <>/\n", max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
)
def test_any_split_into_pieces_gives_the_same_result(
    reasoning: str, answer: str, cuts: list[int]
) -> None:
    text = f"<think>{reasoning}</think>{answer}"
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    whole = split_reasoning(text)
    streamed = feed_pieces(pieces)
    assert (streamed[0].rstrip(), streamed[1]) == whole
