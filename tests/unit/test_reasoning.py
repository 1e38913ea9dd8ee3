"""The thinking/answer split of reasoning models' output, fed whole and token by token."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tui_llm.engine.reasoning import (
    HarmonySplitter,
    ReasoningSplitter,
    harmony_channel,
    harmony_prompt_channel,
    prompt_opens_thinking,
    split_reasoning,
    splitter_for,
)


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


# ---- gpt-oss's harmony format -------------------------------------------------------------------

GPT_OSS_REPLY = (
    "<|channel|>analysis<|message|>User asks capital. Answer Paris.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>The capital of France is Paris."
)


def feed_harmony(pieces: list[str], channel: str | None = None) -> tuple[str, str]:
    splitter = HarmonySplitter(channel)
    reasoning = answer = ""
    for piece in [*pieces, None]:
        part = splitter.finish() if piece is None else splitter.feed(piece)
        reasoning += part.reasoning
        answer += part.answer
    return reasoning, answer


def test_harmony_analysis_is_thinking_and_final_is_the_answer() -> None:
    assert feed_harmony([GPT_OSS_REPLY]) == (
        "User asks capital. Answer Paris.",
        "The capital of France is Paris.",
    )


def test_harmony_one_character_at_a_time() -> None:
    assert feed_harmony(list(GPT_OSS_REPLY)) == feed_harmony([GPT_OSS_REPLY])


def test_harmony_prompt_that_opens_a_channel() -> None:
    prompt = "<|start|>user<|message|>hi<|end|><|start|>assistant<|channel|>analysis<|message|>"
    assert harmony_prompt_channel(prompt) == "analysis"
    assert harmony_prompt_channel("<|start|>user<|message|>hi<|end|><|start|>assistant") is None
    assert feed_harmony(
        ["Think.", "<|end|>", "<|start|>assistant<|channel|>final<|message|>Hi"], "analysis"
    ) == ("Think.", "Hi")


def test_harmony_header_without_a_channel_is_the_answer() -> None:
    assert harmony_channel("assistant") == "final"
    assert harmony_channel("assistant<|channel|>commentary to=functions.x") == "commentary"
    assert feed_harmony(["<|message|>plain"]) == ("", "plain")


def test_splitter_is_chosen_by_the_template() -> None:
    harmony = "{{ '<|start|>' }}{{ '<|channel|>' }}{{ '<|message|>' }}"
    assert isinstance(splitter_for(harmony, "x"), HarmonySplitter)
    assert isinstance(splitter_for("{{ m }}", "x<think>"), ReasoningSplitter)


def test_reply_durations_read_well_from_milliseconds_to_minutes() -> None:
    from tui_llm.widgets.message_view import duration

    assert (duration(0.042), duration(0.999), duration(1.0), duration(95.25)) == (
        "42 ms",
        "999 ms",
        "1.0 s",
        "95.2 s",
    )
