"""Chat behaviour on a real instruct model: SmolLM2-135M-Instruct, its own BPE tokenizer and
ChatML template (the generated models cannot show tokenizer round trips or real answers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.catalog.demo import SMOLLM2_SYSTEM_PROMPT
from tui_llm.engine.protocol import ChatMessage, SamplingParams

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=48)
SYSTEM = ChatMessage("system", SMOLLM2_SYSTEM_PROMPT)
QUESTION = user("What is the capital of France?")


def real(model: Path, **overrides: object) -> object:
    return settings(model, n_ctx=2048, **overrides)


async def test_answers_a_question_with_its_own_template(smollm2: Path) -> None:
    async with engine() as client:
        loaded = await client.load(real(smollm2))  # type: ignore[arg-type]
        assert (loaded.chat_template_source, loaded.chat_template_warning) == ("gguf", None)
        done = await client.chat([SYSTEM, QUESTION], GREEDY)
    assert "Paris" in done.text
    assert done.finish_reason == "stop"  # <|im_end|> ends the turn: no template text leaks
    assert "<|im_" not in done.text


async def test_bos_is_not_doubled(smollm2: Path) -> None:
    """The template starts with <|im_start|>, SmolLM2's BOS: the prompt must not get a second.

    "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\nWhat is
    the capital of France?<|im_end|>\\n<|im_start|>assistant\\n" is 31 tokens in its tokenizer.
    """
    async with engine() as client:
        await client.load(real(smollm2))  # type: ignore[arg-type]
        done = await client.chat([SYSTEM, QUESTION], SamplingParams(max_tokens=1))
    assert done.stats.prompt_tokens == 27


async def test_a_stop_string_ends_the_reply_before_it(smollm2: Path) -> None:
    async with engine() as client:
        await client.load(real(smollm2))  # type: ignore[arg-type]
        full = await client.chat([SYSTEM, QUESTION], GREEDY)
        cut = await client.chat(
            [SYSTEM, QUESTION],
            SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=48, stop=(" Paris",)),
        )
    assert cut.finish_reason == "stop"
    assert full.text.startswith(cut.text + " Paris")


async def test_context_meter_counts_prompt_and_reply(smollm2: Path) -> None:
    async with engine() as client:
        await client.load(real(smollm2))  # type: ignore[arg-type]
        done = await client.chat([SYSTEM, QUESTION], GREEDY)
    # n_past (the meter) is what the KV cache holds: the prompt and every token of the reply
    # that was fed back (the end-of-turn token is sampled, never evaluated).
    assert done.n_past == done.stats.prompt_tokens + done.stats.generated_tokens


async def test_the_second_turn_evaluates_only_the_new_message(smollm2: Path) -> None:
    async with engine() as client:
        await client.load(real(smollm2))  # type: ignore[arg-type]
        first = await client.chat([SYSTEM, QUESTION], GREEDY)
        history = [SYSTEM, QUESTION, ChatMessage("assistant", first.text), user("And Germany?")]
        second = await client.chat(history, GREEDY)
    # The reply re-tokenizes to the very tokens generated, so the cache covers all of it.
    assert second.stats.prompt_tokens_evaluated == second.stats.prompt_tokens - first.n_past
    # The end of the last reply (<|im_end|>, sampled but never evaluated), the new message's 3
    # tokens and the template's 10 around it: 14 of the 48-token conversation.
    assert second.stats.prompt_tokens_evaluated == 14


@pytest.mark.rpc
async def test_kv_is_carried_across_an_offload_reload(smollm2: Path, rpc_server: str) -> None:
    async with engine() as client:
        await client.load(real(smollm2, rpc_servers=(rpc_server,)))  # type: ignore[arg-type]
        first = await client.chat([SYSTEM, QUESTION], GREEDY)
        loaded = await client.load(
            real(smollm2, rpc_servers=(rpc_server,), offload_layers="all")  # type: ignore[arg-type]
        )
        assert loaded.offloaded_layers == loaded.total_layers
        assert loaded.kv_restored_tokens == first.n_past
        history = [SYSTEM, QUESTION, ChatMessage("assistant", first.text), user("And Germany?")]
        second = await client.chat(history, GREEDY)
    assert second.stats.prompt_tokens_evaluated == second.stats.prompt_tokens - first.n_past
