"""Carrying on a saved conversation (F3) and running past the context, through the whole app on
the real engine: SmolLM2 (a real tokenizer, so the KV cache's reuse is exact) and SQLite files in
temporary folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.ui.test_app import build, roles, send, wait_until
from tui_llm.app import TuiLlmApp
from tui_llm.catalog.demo import SMOLLM2_SYSTEM_PROMPT
from tui_llm.engine.protocol import SamplingParams
from tui_llm.store import ConversationStore
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.prompt import PromptInput

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=24, seed=1)


def saved_conversation(store: ConversationStore, model: Path | None, pairs: int) -> int:
    """A saved conversation of ``pairs`` numbered questions and answers; its id."""
    conversation = store.new_conversation(str(model) if model else None, "")
    for number in range(pairs):
        store.add_message(conversation, "user", f"Question {number}: what is {number} plus 1?")
        store.add_message(conversation, "assistant", f"{number} plus 1 is {number + 1}.")
    return conversation


def notes(app: TuiLlmApp, text: str) -> list[str]:
    return [str(n.message) for n in app._notifications if text in str(n.message)]


async def open_first_saved(pilot: Pilot[Any], app: TuiLlmApp, count: int) -> None:
    """F3, Enter on the newest conversation; wait until ``count`` messages are shown."""
    chat = app.main_screen.query_one(ChatView)
    await pilot.press("f3")
    await pilot.pause()
    await pilot.press("enter")
    await wait_until(pilot, lambda: len(chat.messages()) + chat.unmounted_count == count)


async def test_resuming_the_last_conversation_evaluates_only_the_new_turn(
    smollm2: Path, tmp_path: Path
) -> None:
    app = build(smollm2, n_ctx=2048)
    app.store = ConversationStore(tmp_path / "conversations.sqlite3")
    app.sampling = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=64)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        screen.conversation.system_prompt = SMOLLM2_SYSTEM_PROMPT
        await send(pilot, app, "What is the capital of France?")
        first = app.store.load(app.store.list_conversations()[0].id).messages[-1].reply_stats()
        assert first is not None and first.generated_tokens < 64  # ended by its end-of-turn
        await pilot.press("ctrl+n")
        assert roles(app) == []

        await open_first_saved(pilot, app, 2)
        assert notes(app, "sees the whole conversation")
        await send(pilot, app, "And of Germany?")
        saved = app.store.load(app.store.list_conversations()[0].id)
    assert [m.role for m in saved.messages] == ["user", "assistant"] * 2
    second = saved.messages[-1].reply_stats()
    assert second is not None
    # The engine's KV cache still held the first turn (its prompt and every reply token but the
    # sampled end-of-turn): only the rest is evaluated.
    in_cache = first.prompt_tokens + first.generated_tokens
    assert second.prompt_tokens_evaluated == second.prompt_tokens - in_cache
    assert second.prompt_tokens_evaluated < 20


async def test_a_conversation_saved_with_another_model_says_which_model_answers(
    tiny_model: Path, model_8l: Path, tmp_path: Path
) -> None:
    app = build(model_8l)
    app.store = ConversationStore(tmp_path / "conversations.sqlite3")
    saved_conversation(app.store, tiny_model, 2)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await open_first_saved(pilot, app, 4)
        assert notes(
            app,
            "Saved with tiny-2l.gguf; tiny-2l.gguf is not loaded: replies will come from "
            "rand-8l.gguf",
        )
        await send(pilot, app, "go on")
        assert roles(app)[-2:] == ["user", "assistant"]
        assert screen.conversation.turns[0].content == "Question 0: what is 0 plus 1?"


async def test_a_conversation_opened_with_no_model_loaded_says_so(
    tiny_model: Path, tmp_path: Path
) -> None:
    app = build(None)
    app.store = ConversationStore(tmp_path / "conversations.sqlite3")
    saved_conversation(app.store, tiny_model, 1)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_first_saved(pilot, app, 2)
        assert notes(app, "Saved with tiny-2l.gguf; no model is loaded")


async def test_a_thousand_messages_open_at_their_end_and_mount_earlier_ones_on_scrolling(
    tmp_path: Path,
) -> None:
    app = build(None)
    app.store = ConversationStore(tmp_path / "conversations.sqlite3")
    saved_conversation(app.store, None, 500)
    async with app.run_test(size=(160, 48)) as pilot:
        chat = app.main_screen.query_one(ChatView)
        await open_first_saved(pilot, app, 1000)
        views = chat.messages()
        assert len(views) <= ChatView.MOUNTED_LIMIT and chat.unmounted_count > 0
        assert views[-1].content == "499 plus 1 is 500."

        # The last message stays mounted (a scroll offset read before the first scroll once
        # grew the window at the top and unmounted it), and it is on screen once the layout
        # that scrolled there has been drawn (a region can lag the scroll offset by a frame).
        def state() -> str:
            last = chat.messages()[-1]
            return (
                f"scroll {chat.scroll_y}/{chat.max_scroll_y}, virtual {chat.virtual_size}, "
                f"chat {chat.region}, last {last.region} {last.virtual_region} "
                f"(the one opened: {last is views[-1]}), revealing {chat.revealing}, "
                f"unmounted {chat.unmounted_count}, later {chat.later_count}"
            )

        try:
            await wait_until(pilot, lambda: not chat.revealing)
            assert chat.messages()[-1] is views[-1] and chat.later_count == 0
            await wait_until(
                pilot,
                lambda: (
                    chat.scroll_y == chat.max_scroll_y > 0
                    and chat.region.y <= views[-1].region.y
                    and views[-1].region.bottom <= chat.region.bottom
                ),
            )
        except AssertionError as exc:
            raise AssertionError(f"the end is not on screen: {state()}") from exc

        await wait_until(pilot, lambda: not chat.revealing)
        before = chat.unmounted_count
        top_view = chat.messages()[0]
        chat.scroll_home(animate=False, immediate=True)
        top_y = chat.content_region.y + top_view.virtual_region.y  # where Home shows it
        await wait_until(pilot, lambda: chat.unmounted_count < before)
        # What was at the top stays where it was: the earlier messages come in above it.
        await wait_until(pilot, lambda: chat.scroll_y > 0 and not chat.revealing)
        assert chat.messages().index(top_view) > 0
        try:
            await wait_until(pilot, lambda: top_view.region.y == top_y)
        except AssertionError as exc:
            raise AssertionError(
                f"the first message moved: at {top_view.region.y}, not {top_y}; {state()}"
            ) from exc


async def test_past_the_context_trim_keeps_the_newest_turns_and_says_so_once(
    smollm2: Path, tmp_path: Path
) -> None:
    app = build(smollm2, n_ctx=384)
    app.store = ConversationStore(tmp_path / "conversations.sqlite3")
    app.sampling = GREEDY
    saved_conversation(app.store, smollm2, 15)  # ~450 tokens
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        chat = screen.query_one(ChatView)
        await wait_until(pilot, lambda: screen.loaded is not None)
        await open_first_saved(pilot, app, 30)
        await send(pilot, app, "What is the capital of France?")
        cut = screen.conversation.first_sent_turn
        assert cut > 0 and screen.conversation.turns[cut].role == "user"
        assert chat.cut_shown
        assert len(notes(app, "outgrew the context")) == 1
        reply = chat.messages()[-1]
        assert reply.role == "assistant" and reply.content and "-error" not in reply.classes

        await send(pilot, app, "And of Germany?")
        await send(pilot, app, "And of Italy?")
        assert len(notes(app, "outgrew the context")) == 1
        assert len(chat.query(".context-cut")) == 1
        assert chat.messages()[-1].content
        assert len(app.store.load(app.store.list_conversations()[0].id).messages) == 36


async def test_past_the_context_stop_sends_nothing_and_gives_the_message_back(
    smollm2: Path, tmp_path: Path
) -> None:
    app = build(smollm2, n_ctx=384)
    app.settings.context_overflow = "stop"
    app.store = ConversationStore(tmp_path / "conversations.sqlite3")
    app.sampling = GREEDY
    conversation = saved_conversation(app.store, smollm2, 15)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await open_first_saved(pilot, app, 30)
        await send(pilot, app, "What is the capital of France?")
        await wait_until(pilot, lambda: bool(notes(app, "Not sent")))
        assert "the context holds 384" in notes(app, "Not sent")[0]
        assert screen.query_one(PromptInput).text == "What is the capital of France?"
        assert len(screen.conversation.turns) == 30 and roles(app)[-1] == "assistant"
        assert not screen.query_one(ChatView).cut_shown
    assert len(app.store.load(conversation).messages) == 30
