"""The app with what real models bring: thinking that streams apart, collapses, toggles and is
not copied; an error while generating that shows at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.test_real_inputs import THINK_THEN_ANSWER
from tests.ui.test_app import build, send, submit, wait_until
from tui_llm.catalog.table_models import write_scripted_model
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.prompt import PromptInput
from tui_llm.widgets.saved_message import SavedMessage


@pytest.fixture(scope="module")
def thinker(model_dir: Path) -> Path:
    return write_scripted_model(model_dir / "ui-thinks.gguf", THINK_THEN_ANSWER)


def rendered(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def test_thinking_collapses_when_the_answer_starts_and_f6_toggles_it(thinker: Path) -> None:
    app = build(thinker)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "Capital of France?")
        reply = screen.query_one(ChatView).messages()[-1]
        assert reply.content == "Paris it is."
        assert reply.reasoning.strip() == "Let me think."
        assert reply.thinking.display and reply.thinking.collapsed
        title = reply.thinking.title
        assert title.startswith("Thinking · 4 tokens · ") and title.endswith((" ms", " s"))
        stats = rendered(reply.query_one(".stats"))
        assert "7 tokens (4 thinking, 3 answer)" in stats
        assert "first answer token" in stats

        await pilot.press("f6")
        assert not reply.thinking.collapsed
        await pilot.press("f6")
        assert reply.thinking.collapsed

        # Ctrl+Y copies the answer, never the thinking; the history keeps both apart.
        await pilot.press("ctrl+y")
        assert app.clipboard == "Paris it is."
        turn = screen.conversation.turns[-1]
        assert (turn.content, turn.reasoning) == ("Paris it is.", "Let me think.")


async def test_the_setting_keeps_the_thinking_open(thinker: Path) -> None:
    app = build(thinker)
    app.settings.show_thinking = True
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "Capital of France?")
        reply = screen.query_one(ChatView).messages()[-1]
        assert reply.thinking.display and not reply.thinking.collapsed


async def test_a_reply_without_thinking_has_no_block(model_8l: Path) -> None:
    app = build(model_8l)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "hello")
        reply = screen.query_one(ChatView).messages()[-1]
        assert not reply.thinking.display
        await pilot.press("f6")
        assert not reply.thinking.display


async def test_saved_thinking_comes_back_collapsed(thinker: Path) -> None:
    from tui_llm.store import ConversationStore

    app = build(thinker)
    app.store = ConversationStore()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "Capital of France?")
        conversation_id = screen.recorder.conversation_id
        assert conversation_id is not None
        await pilot.press("ctrl+n")
        await screen.open_conversation(conversation_id)
        await wait_until(pilot, lambda: len(screen.query_one(ChatView).messages()) == 2)
        reply = screen.query_one(ChatView).messages()[-1]
        assert (reply.content, reply.reasoning) == ("Paris it is.", "Let me think.")
        # A saved reply is drawn as one widget: its thinking is a title line, closed.
        assert isinstance(reply, SavedMessage)
        assert reply.thinking_row is not None and reply.thinking_collapsed
        await wait_until(pilot, lambda: bool(reply.text_lines))  # laid out
        assert reply.text_lines[reply.thinking_row].startswith("▶ Thinking")
        assert screen.conversation.turns[-1].reasoning == "Let me think."


async def test_an_error_while_generating_shows_at_once_and_the_chat_goes_on(
    model_dir: Path,
) -> None:
    model = write_scripted_model(model_dir / "ui-short-ctx.gguf", ["Ok", " then."])
    app = build(model, n_ctx=32)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await submit(pilot, app, " ".join(["word"] * 40))
        chat = screen.query_one(ChatView)
        # It was a fixed 30 s wait ("generating…", new messages refused) before the error showed;
        # now a message that cannot fit the context is not sent at all, and comes back.
        prompt = screen.query_one(PromptInput)
        await wait_until(pilot, lambda: prompt.text.startswith("word word"), timeout=10)
        assert not screen.generating
        assert chat.messages() == [] and screen.conversation.turns == []  # nothing is lost
        assert any("the context holds 32" in str(n.message) for n in app._notifications)
        prompt.clear()
        await pilot.press("ctrl+n")
        await send(pilot, app, "hi")
        assert chat.messages()[-1].content == "Ok then."
