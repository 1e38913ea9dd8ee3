"""A long saved conversation in the chat: a window of mounted messages that moves with the view,
every message reachable in order, the context divider with its message, and saved messages drawn
literally (``SavedMessage``)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.selection import Selection

from tests.ui.test_app import wait_until
from tests.ui.test_hostile_text import HOSTILE, Host, assert_on_screen, screen_lines, shown
from tui_llm.widgets.chat import CUT_TEXT, ChatView
from tui_llm.widgets.message_view import MessageView
from tui_llm.widgets.saved_message import MessageSpec, SavedMessage

SIZE = (100, 30)


def numbered(count: int) -> list[MessageSpec]:
    """``count`` saved messages, questions and answers in turn, each saying its position."""
    specs = []
    for n in range(count):
        if n % 2 == 0:
            specs.append(MessageSpec("user", f"Message {n}: a question?"))
        else:
            answer = f"Message {n}: an answer.\n\n- a point\n- another\n\n```python\nx = {n}\n```"
            specs.append(MessageSpec("assistant", answer, stats_line=f"{n} tokens"))
    return specs


def positions(chat: ChatView) -> list[int]:
    """The positions the mounted messages say they are."""
    return [int(view.content.split(":")[0].split()[1]) for view in chat.messages()]


async def settled(pilot: Pilot[Any], chat: ChatView) -> None:
    await pilot.pause()
    await wait_until(pilot, lambda: not chat.revealing)
    await pilot.pause()


def divider_before(chat: ChatView) -> int:
    """The position of the message right after the one divider."""
    children = list(chat.children)
    dividers = [child for child in children if child.has_class("context-cut")]
    assert len(dividers) == 1
    following = children[children.index(dividers[0]) + 1]
    assert isinstance(following, SavedMessage)
    return int(following.content.split(":")[0].split()[1])


def assert_in_order(chat: ChatView) -> list[int]:
    shown_now = positions(chat)
    assert shown_now == list(range(shown_now[0], shown_now[0] + len(shown_now)))
    assert shown_now[0] == chat.unmounted_count
    # Past the limit, a step's worth at most: those farthest from the view are unmounted.
    assert len(shown_now) <= ChatView.MOUNTED_LIMIT + chat.REVEAL_STEP
    return shown_now


async def test_a_thousand_messages_scroll_to_the_first_and_back_to_the_last_in_order() -> None:
    """Home, again and again, reaches message 0 with every message mounted on the way, in
    order, never many more than ``MOUNTED_LIMIT`` at once; End, again and again, comes back to the
    last one."""
    chat = ChatView()
    chat.REVEAL_BATCH = chat.REVEAL_STEP = 20  # fewer frames to wait for; the same code path
    async with Host(chat).run_test(size=SIZE) as pilot:
        await chat.show_history(numbered(1000), show_thinking=False)
        await settled(pilot, chat)
        assert positions(chat)[-1] == 999
        assert chat.scroll_y == chat.max_scroll_y > 0

        seen = set(assert_in_order(chat))
        while chat.unmounted_count or chat.scroll_y > 0:
            chat.scroll_home(animate=False, immediate=True)
            await settled(pilot, chat)
            seen.update(assert_in_order(chat))
        assert seen == set(range(1000))
        assert chat.later_count > 0  # the newest went as the view went back
        first = chat.messages()[0]
        assert first.content == "Message 0: a question?"
        await wait_until(pilot, lambda: chat.region.y <= first.region.y < chat.region.bottom)

        seen = set(assert_in_order(chat))
        while chat.later_count or chat.scroll_y < chat.max_scroll_y:
            chat.scroll_end(animate=False, immediate=True)
            await settled(pilot, chat)
            seen.update(assert_in_order(chat))
        assert seen >= set(range(chat.unmounted_count, 1000))
        assert positions(chat)[-1] == 999
        last = chat.messages()[-1]
        await wait_until(pilot, lambda: chat.region.y < last.region.bottom <= chat.region.bottom)


async def test_the_divider_comes_and_goes_with_its_message() -> None:
    chat = ChatView()
    async with Host(chat).run_test(size=SIZE) as pilot:
        await chat.show_history(numbered(300), show_thinking=False)
        await chat.mark_cut(100)
        assert not chat.cut_shown  # message 100 is not mounted

        await chat.show_position(98)
        await settled(pilot, chat)
        assert divider_before(chat) == 100
        assert chat.later_count > 0
        assert CUT_TEXT in "\n".join(screen_lines(pilot.app))

        await chat.show_end()
        await settled(pilot, chat)
        assert not chat.cut_shown and positions(chat)[-1] == 299
        await chat.show_position(90)
        await settled(pilot, chat)
        assert divider_before(chat) == 100

        # Scrolled back from there, message 100 goes far below the view, and its divider too.
        while chat.unmounted_count:
            chat.scroll_home(animate=False, immediate=True)
            await settled(pilot, chat)
        assert not chat.cut_shown and chat.later_count > 200
        await chat.mark_cut(20)
        assert divider_before(chat) == 20


async def test_opened_far_back_a_new_message_goes_after_the_last_saved_one() -> None:
    """Opened at an early message (a search match), the newest messages are not mounted; a
    message added then comes after all of them, not after the ones on screen."""
    chat = ChatView()
    async with Host(chat).run_test(size=SIZE) as pilot:
        await chat.show_history(numbered(1000), show_thinking=False)
        await chat.show_position(10)
        await settled(pilot, chat)
        # Message 10 at the top of the view (the earlier ones may come in above it).
        top = chat.messages()[positions(chat).index(10)]
        await wait_until(pilot, lambda: chat.region.y <= top.region.y < chat.region.y + 3)
        assert chat.later_count > 0 and len(chat.query(".later")) == 1

        view = await chat.add_message("user", "Message 1000: new")
        await settled(pilot, chat)
        assert chat.later_count == 0
        assert positions(chat)[-2:] == [999, 1000]
        assert chat.messages()[-1] is view and isinstance(view, MessageView)


async def test_saved_messages_show_outside_text_literally_with_thinking_and_figures() -> None:
    """Markup, escape sequences and HTML in a saved message are shown as typed (nothing
    unsafe reaches the terminal); the thinking is a title line that a click opens, and the
    figures line is under the answer."""
    texts = [text for name, text in HOSTILE.items() if name not in ("long", "backslash")]
    specs = [MessageSpec("user", text) for text in texts]
    specs.append(MessageSpec("user", "<b>tags</b> and <script>x</script>"))
    specs.append(
        MessageSpec(
            "assistant",
            "The answer.",
            reasoning="I think [bold]hard[/bold].",
            stats_line="12 tokens · [b]fast[/b]",
            thinking_title="Thinking · 5 tokens",
        )
    )
    chat = ChatView()
    async with Host(chat).run_test(size=(200, 60)) as pilot:
        await chat.show_history(specs, show_thinking=False)
        await settled(pilot, chat)
        assert_on_screen(app := pilot.app, [shown(text) for text in texts])
        assert_on_screen(app, ["<b>tags</b> and <script>x</script>"])
        assert_on_screen(app, ["▶ Thinking · 5 tokens", "12 tokens · [b]fast[/b]"])
        assert not any("I think" in line for line in screen_lines(app))

        reply = chat.messages()[-1]
        assert isinstance(reply, SavedMessage) and reply.thinking_row is not None
        await pilot.click(reply, offset=(3, reply.thinking_row))  # border and padding: 2 cells
        await wait_until(pilot, lambda: not reply.thinking_collapsed)
        await pilot.pause()
        assert_on_screen(app, ["▼ Thinking · 5 tokens", "I think [bold]hard[/bold]."])
        assert reply.toggle_thinking() and reply.thinking_collapsed

        everything, _end = reply.get_selection(Selection(None, None)) or ("", "")
        assert everything.splitlines()[0] == "Assistant"
        assert "The answer." in everything and "12 tokens" in everything


async def test_a_scroll_read_before_the_first_scroll_does_not_move_the_window() -> None:
    """Opened at the end, the view is at the top until the next refresh scrolls it down: the
    window does not grow from a scroll offset read meanwhile (one of the suspects of a test that
    found the end off screen in CI now and then; the window now waits for the first scroll)."""
    chat = ChatView()
    async with Host(chat).run_test(size=SIZE) as pilot:
        await chat.show_history(numbered(1000), show_thinking=False)
        assert chat.scroll_y == 0  # not scrolled yet
        chat._near_edge()  # what the scroll_y watcher does
        await settled(pilot, chat)
        assert positions(chat)[-1] == 999 and chat.later_count == 0
        await wait_until(pilot, lambda: chat.scroll_y == chat.max_scroll_y > 0)
