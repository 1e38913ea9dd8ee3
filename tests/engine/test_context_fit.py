"""The context limit on a real model: SmolLM2's template and tokenizer count the prompt, and a
conversation longer than a small context keeps its system prompt and newest turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.catalog.demo import SMOLLM2_SYSTEM_PROMPT
from tui_llm.context_fit import (
    ContextOverflow,
    engine_counter,
    plan_context,
    reply_reserve,
)
from tui_llm.engine.protocol import ChatMessage, SamplingParams

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=32)


def long_conversation(pairs: int) -> list[ChatMessage]:
    """``pairs`` questions and answers, each pair about 30 tokens, numbered so none repeat."""
    turns: list[ChatMessage] = []
    for number in range(pairs):
        turns.append(user(f"Question {number}: what is {number} plus {number}?"))
        turns.append(ChatMessage("assistant", f"{number} plus {number} is {2 * number}."))
    turns.append(user("What is the capital of France?"))
    return turns


async def test_the_count_is_the_prompt_a_reply_reports(smollm2: Path) -> None:
    messages = [ChatMessage("system", SMOLLM2_SYSTEM_PROMPT), user("What is 2 plus 2?")]
    async with engine() as client:
        await client.load(settings(smollm2, n_ctx=256))
        counted = await client.count_tokens(messages)
        done = await client.chat(messages, GREEDY)
    assert counted.n_ctx == 256
    assert counted.prompt_tokens == done.stats.prompt_tokens


async def test_trim_keeps_the_system_prompt_and_the_newest_turns(smollm2: Path) -> None:
    turns = long_conversation(20)  # ~600 tokens: more than the context of 256
    async with engine() as client:
        await client.load(settings(smollm2, n_ctx=256))
        count = engine_counter(client)
        whole, _ = await count([ChatMessage("system", SMOLLM2_SYSTEM_PROMPT), *turns])
        assert whole > 256
        plan = await plan_context(SMOLLM2_SYSTEM_PROMPT, turns, count, 32, "trim")
        assert plan.trimmed and turns[plan.first_turn].role == "user"
        assert plan.messages[0] == ChatMessage("system", SMOLLM2_SYSTEM_PROMPT)
        assert plan.messages[1:] == tuple(turns[plan.first_turn :])
        assert plan.prompt_tokens + reply_reserve(32, 256) <= 256
        # The newest turns that fit, with room left for the next ones: one pair more would not.
        assert plan.prompt_tokens <= (256 - 32) * 0.75
        longer, _ = await count(
            [ChatMessage("system", SMOLLM2_SYSTEM_PROMPT), *turns[plan.first_turn - 2 :]]
        )
        assert longer > (256 - 32) * 0.75
        done = await client.chat(plan.messages, GREEDY)
        assert done.finish_reason in ("stop", "length") and "Paris" in done.text

        # The next turn keeps the cut while it fits, so the KV cache's prefix still matches.
        turns += [ChatMessage("assistant", done.text), user("And of Germany?")]
        again = await plan_context(
            SMOLLM2_SYSTEM_PROMPT, turns, count, 32, "trim", previous_first_turn=plan.first_turn
        )
        assert again.first_turn == plan.first_turn
        second = await client.chat(again.messages, GREEDY)
    assert second.stats.prompt_tokens_evaluated < second.stats.prompt_tokens / 2


async def test_stop_sends_nothing_and_says_why(smollm2: Path) -> None:
    async with engine() as client:
        await client.load(settings(smollm2, n_ctx=256))
        with pytest.raises(ContextOverflow, match="the context holds 256") as caught:
            await plan_context("", long_conversation(20), engine_counter(client), 32, "stop")
    assert caught.value.prompt_tokens > 256 - 32


async def test_a_last_message_larger_than_the_context_cannot_be_trimmed(smollm2: Path) -> None:
    turns = [user("word " * 400)]
    async with engine() as client:
        await client.load(settings(smollm2, n_ctx=256))
        with pytest.raises(ContextOverflow, match="last message"):
            await plan_context("", turns, engine_counter(client), 32, "trim")


async def test_a_message_that_fits_only_without_the_reserve_is_sent_with_less_room(
    smollm2: Path,
) -> None:
    turns = [user("word " * 200)]  # ~200 tokens: fits 256, but not with a 128-token reserve
    async with engine() as client:
        await client.load(settings(smollm2, n_ctx=256))
        plan = await plan_context("", turns, engine_counter(client), 128, "trim")
    assert plan.first_turn == 0 and plan.reply_room == 256 - plan.prompt_tokens < 128


async def test_a_reply_that_reaches_the_context_stops_there_without_a_shift(smollm2: Path) -> None:
    """llama-cpp-python has no context shift: the engine must stop at n_ctx and say so."""
    story = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=100000)
    async with engine() as client:
        await client.load(settings(smollm2, n_ctx=96))
        done = await client.chat([user("Write a very long story about a dragon.")], story)
    assert done.finish_reason == "context"
    assert done.n_past <= 96
    assert done.stats.prompt_tokens + done.stats.generated_tokens == 96
