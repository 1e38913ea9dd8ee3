"""The engine with the text and templates real models bring: thinking, long tokens, bad templates.

Each model here is written by the project's generator with a fixed greedy reply, so the real
llama.cpp engine streams exactly the tokens a test names.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.catalog.table_models import write_scripted_model
from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import ChatMessage, DoneEvent, SamplingParams, TokensEvent

GREEDY = SamplingParams(temperature=0.0, max_tokens=64)
THINK_THEN_ANSWER = ["<think>", "\nLet me", " think.", "\n</think>", "\n\n", "Paris", " it is."]
# A template that opens the thinking block in the prompt (as DeepSeek-R1's does).
OPENS_THINK = (
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: <think>\\n' }}{% endif %}"
)
# Gemma's templates refuse a system message this way.
REFUSES_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
)
BROKEN_TEMPLATE = "{% for m in messages %}{{ m['content'] }}"  # a for without endfor


async def reply_events(model: Path, messages: Sequence[ChatMessage], **load: object) -> list:
    async with engine() as client:
        await client.load(settings(model, **load))
        return [event async for event in client.generate(messages, GREEDY)]


def streamed(events: list, field: str) -> str:
    return "".join(getattr(e, field) for e in events if isinstance(e, TokensEvent))


@pytest.fixture(scope="module")
def thinking_model(model_dir: Path) -> Path:
    return write_scripted_model(model_dir / "thinks.gguf", THINK_THEN_ANSWER)


async def test_thinking_streams_apart_from_the_answer(thinking_model: Path) -> None:
    events = await reply_events(thinking_model, [user("Capital of France?")])
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert (done.reasoning, done.text) == ("Let me think.", "Paris it is.")
    assert streamed(events, "reasoning").strip() == "Let me think."
    assert streamed(events, "text") == "Paris it is."
    assert done.stats.generated_tokens == 7
    assert done.stats.reasoning_tokens == 4  # <think> … </think>, tags included
    assert done.stats.answer_tokens == 3
    first_answer = done.stats.time_to_first_answer_s
    assert first_answer is not None and first_answer >= done.stats.time_to_first_token_s


async def test_template_that_opens_the_thinking_in_the_prompt(model_dir: Path) -> None:
    model = write_scripted_model(
        model_dir / "opened.gguf",
        ["Hmm,", " France.", "</think>", "\n\n", "Paris."],
        chat_template=OPENS_THINK,
    )
    events = await reply_events(model, [user("Capital?")])
    done = events[-1]
    assert (done.reasoning, done.text) == ("Hmm, France.", "Paris.")
    assert done.stats.reasoning_tokens == 3


async def test_thinking_cut_by_max_tokens_is_all_thinking(thinking_model: Path) -> None:
    async with engine() as client:
        await client.load(settings(thinking_model))
        done = await client.chat([user("x")], SamplingParams(temperature=0.0, max_tokens=3))
    assert done.finish_reason == "length"
    assert (done.reasoning, done.text) == ("Let me think.", "")
    assert done.stats.time_to_first_answer_s is None


async def test_tags_split_across_tokens(model_dir: Path) -> None:
    model = write_scripted_model(
        model_dir / "split-tags.gguf", ["<th", "ink>", "deep", " thought", "</", "think>", "Yes."]
    )
    done = (await reply_events(model, [user("?")]))[-1]
    assert (done.reasoning, done.text) == ("deep thought", "Yes.")


async def test_thinking_tags_that_are_control_tokens_still_split(model_dir: Path) -> None:
    """Some GGUF files mark <think> and </think> as control tokens, hidden when detokenized."""
    model = write_scripted_model(
        model_dir / "control-tags.gguf",
        ["<think>", "hidden", " steps", "</think>", "Shown."],
        special_tokens=["<think>", "</think>"],
    )
    done = (await reply_events(model, [user("?")]))[-1]
    assert (done.reasoning, done.text) == ("hidden steps", "Shown.")


HARMONY_SPECIALS = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>"]


def harmony_template(generation_prompt: str) -> str:
    return (
        "{% for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>"
        "{% endfor %}{% if add_generation_prompt %}" + generation_prompt + "{% endif %}"
    )


@pytest.mark.parametrize(
    ("generation_prompt", "reply", "expected"),
    [
        # gpt-oss's own generation prompt: the reply starts with a header.
        (
            "<|start|>assistant",
            ["<|channel|>", "final", "<|message|>", "Paris", " it is."],
            ("", "Paris it is."),
        ),
        # A prompt that opens the analysis message: the reply starts inside the thinking.
        (
            "<|start|>assistant<|channel|>analysis<|message|>",
            ["Need", " Paris.", "<|end|>"],
            ("Need Paris.", ""),
        ),
    ],
)
async def test_gpt_oss_harmony_channels_split(
    model_dir: Path, generation_prompt: str, reply: list[str], expected: tuple[str, str]
) -> None:
    """gpt-oss writes harmony: analysis is thinking, final the answer, headers never shown.

    Its markers are control tokens; with <|return|> and <|call|> in the vocabulary llama.cpp
    ends a reply on those, not on <|end|>. (A whole analysis-then-final reply repeats tokens,
    which a scripted model cannot: tests/unit/test_reasoning.py covers it.)
    """
    model = write_scripted_model(
        model_dir / f"harmony-{len(reply)}.gguf",
        reply,
        chat_template=harmony_template(generation_prompt),
        special_tokens=HARMONY_SPECIALS,
    )
    done = (await reply_events(model, [user("Capital?")]))[-1]
    assert (done.reasoning, done.text) == expected


async def test_thinking_goes_back_as_reasoning_content_only_where_the_template_asks(
    model_dir: Path,
) -> None:
    """Qwen3's template decides per turn; a template that ignores it never sees the thinking."""
    keeps = (
        "{% for m in messages %}{{ m['role'] }}: {% if m.reasoning_content %}"
        "[{{ m.reasoning_content }}] {% endif %}{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    turns = [user("a"), ChatMessage("assistant", "answer", "secret thoughts"), user("b")]
    for template, expected in ((keeps, True), (OPENS_THINK, False)):
        model = write_scripted_model(
            model_dir / f"history-{expected}.gguf", ["Sure."], chat_template=template
        )
        async with engine() as client:
            await client.load(settings(model))
            done = await client.chat(turns, GREEDY)
            with_thinking = done.stats.prompt_tokens
            done = await client.chat([*turns[:1], ChatMessage("assistant", "answer"), turns[2]])
        assert (with_thinking > done.stats.prompt_tokens) is expected


async def test_token_longer_than_256_bytes_is_kept(model_dir: Path) -> None:
    model = write_scripted_model(model_dir / "long-token.gguf", ["Start", " " + "=" * 300, " end."])
    events = await reply_events(model, [user("go")])
    expected = "Start " + "=" * 300 + " end."
    assert events[-1].text == expected
    assert streamed(events, "text") == expected


async def test_broken_template_loads_with_a_warning_and_chatml(model_dir: Path) -> None:
    model = write_scripted_model(
        model_dir / "broken-template.gguf", ["Fine."], chat_template=BROKEN_TEMPLATE
    )
    async with engine() as client:
        loaded = await client.load(settings(model))
        assert loaded.chat_template_source == "chatml"
        warning = loaded.chat_template_warning or ""
        assert "does not compile" in warning and "\n" not in warning
        assert (await client.chat([user("hi")], GREEDY)).text == "Fine."
        chosen = await client.load(settings(model, chat_format="plain"))
        assert chosen.chat_template_source == "plain"
        assert "does not compile" in (chosen.chat_template_warning or "")


@pytest.mark.parametrize(
    ("special", "expected"),
    [
        (["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "llama-3"),
        (["<start_of_turn>", "<end_of_turn>"], "gemma"),
        (["[INST]", "[/INST]"], "mistral-instruct"),
        (["<|im_start|>", "<|im_end|>"], "chatml"),
        ([], "chatml"),
    ],
)
async def test_no_template_uses_the_family_the_tokens_tell(
    model_dir: Path, special: list[str], expected: str
) -> None:
    """Case: a Llama-3-family model whose template was stripped was prompted in ChatML."""
    model = write_scripted_model(
        model_dir / f"family-{expected}-{len(special)}.gguf",
        ["Hello", " there."],
        chat_template=None,
        special_tokens=special,
    )
    async with engine() as client:
        loaded = await client.load(settings(model))
        assert loaded.chat_template_source == expected
        warning = loaded.chat_template_warning or ""
        assert "no chat template" in warning
        assert (special[0] if special else "nothing") in warning
        assert (await client.chat([user("hi")], GREEDY)).text == "Hello there."


async def test_template_that_raises_is_reported_at_once(model_dir: Path) -> None:
    model = write_scripted_model(
        model_dir / "refuses-system.gguf", ["Ok."], chat_template=REFUSES_SYSTEM
    )
    async with engine() as client:
        await client.load(settings(model))
        started = time.monotonic()
        with pytest.raises(EngineError) as caught:
            await client.chat([ChatMessage("system", "Be brief."), user("hi")], GREEDY)
        # Not a speed target: the bug was a fixed 30 s wait for a reply that never comes.
        assert time.monotonic() - started < 5
        assert caught.value.kind == "bad_request"
        assert str(caught.value) == "the chat template failed: System role not supported"
        assert (await client.chat([user("hi")], GREEDY)).text == "Ok."


async def test_conversation_longer_than_the_context_is_reported_at_once(model_dir: Path) -> None:
    model = write_scripted_model(model_dir / "short-ctx.gguf", ["Ok."])
    async with engine() as client:
        await client.load(settings(model, n_ctx=32))
        started = time.monotonic()
        with pytest.raises(EngineError, match="the context holds 32"):
            await client.chat([user(" ".join(["word"] * 40))], GREEDY)
        assert time.monotonic() - started < 5
        assert (await client.chat([user("hi")], GREEDY)).text == "Ok."


async def test_an_empty_stop_string_does_not_cut_the_reply(model_dir: Path) -> None:
    model = write_scripted_model(model_dir / "empty-stop.gguf", ["Whole", " reply."])
    async with engine() as client:
        await client.load(settings(model))
        done = await client.chat([user("x")], SamplingParams(temperature=0.0, stop=("",)))
    assert done.text == "Whole reply."


def test_the_internals_the_engine_uses_are_checked(tiny_model: Path) -> None:
    from types import SimpleNamespace

    from llama_cpp import Llama

    from tui_llm.engine.compat import missing_internals, unsupported_message

    llm = Llama(str(tiny_model), n_ctx=64, verbose=False)
    try:
        assert missing_internals(llm) == []  # the installed version has them all
    finally:
        llm.close()
    older = SimpleNamespace(_model=SimpleNamespace(vocab=1), _ctx=None)
    missing = missing_internals(older)
    assert missing == ["Llama._requires_eval", "Llama._ctx.ctx"]
    assert unsupported_message("0.2.90", missing) == (
        "llama-cpp-python 0.2.90 lacks Llama._requires_eval, Llama._ctx.ctx, which tui-llm "
        "needs; install llama-cpp-python>=0.3.16,<0.4"
    )
