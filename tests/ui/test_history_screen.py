"""F3 as a person uses it: search as you type, open at the match, rename in place, export."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, OptionList

from tests.ui.test_app import build, wait_until
from tui_llm.screens.history import HistoryScreen, marked_line
from tui_llm.store import ConversationStore
from tui_llm.store.transfer import from_json


def fill(store: ConversationStore) -> int:
    """Twenty short conversations and one long one whose 31st message mentions a zeppelin."""
    for n in range(20):
        conversation = store.new_conversation("/models/small.gguf", "")
        store.add_message(conversation, "user", f"question {n} about [bold]markup[/bold]")
        store.add_message(conversation, "assistant", f"answer {n}")
    long = store.new_conversation("/models/qwen3-0.6b.gguf", "")
    for n in range(60):
        role = "user" if n % 2 == 0 else "assistant"
        text = f"message {n}\nline two of {n}"
        if n == 30:
            text = "Airships.\nThe [red]Zeppelin[/red] LZ 129 flew in 1936.\nMore."
        store.add_message(long, role, text)
    store.add_message(long, "user", "the end")
    return long


async def test_search_open_at_the_match_rename_and_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # exports go to the folder tui-llm was started in
    store = ConversationStore(tmp_path / "conversations.sqlite3")
    long = fill(store)
    app = build()
    app.autostart_engine = False
    app.store = store
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen))
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        assert len(screen.summaries) == 21

        # Typing in the list searches; every keystroke narrows the results.
        await pilot.press(*"zep")
        await wait_until(pilot, lambda: len(screen.summaries) == 1)
        assert screen.query_one("#search", Input).value == "zep"
        (hit,) = screen.summaries
        assert (hit.summary.id, hit.position, hit.role) == (long, 30, "user")
        assert hit.line == "The [red]Zeppelin[/red] LZ 129 flew in 1936."
        prompt = str(screen.query_one(OptionList).get_option_at_index(0).prompt)
        assert "The [red]Zeppelin[/red] LZ 129 flew in 1936." in prompt  # literal, not markup
        assert "qwen3-0.6b.gguf" in prompt and "61 messages" in prompt
        marked = marked_line(hit.line, hit.spans)
        assert [marked.plain[s.start : s.end] for s in marked.spans] == ["Zeppelin"]

        await pilot.press("backspace", "backspace", "backspace", *"nowhere")
        await wait_until(pilot, lambda: screen.summaries == [])
        screen.query_one("#search", Input).value = "zeppelin lz"
        await wait_until(pilot, lambda: len(screen.summaries) == 1)

        # F2 renames in place; the new title is listed and saved.
        await pilot.press("down", "f2")
        await wait_until(pilot, lambda: bool(screen.query("#rename")))
        rename = screen.query_one("#rename", Input)
        assert rename.value == "message 0" and rename.has_focus
        rename.value = ""
        await pilot.press(*"Airship [b]history[/b]", "enter")
        await wait_until(pilot, lambda: not screen.query("#rename"))
        assert store.load(long).title == "Airship [b]history[/b]"
        await wait_until(pilot, lambda: screen.summaries[0].summary.title.startswith("Airship "))

        # Ctrl+E exports the highlighted one as Markdown, Ctrl+X as JSON, and says where.
        await pilot.press("ctrl+e")
        markdown = tmp_path / f"conversation-{long}-airship-b-history-b.md"
        await wait_until(pilot, markdown.exists)
        assert markdown.read_text().startswith("# Airship \\[b\\]history\\[/b\\]\n")
        await wait_until(
            pilot,
            lambda: any(str(markdown) in str(n.message) for n in app._notifications),
        )
        await pilot.press("ctrl+x")
        exported = markdown.with_suffix(".json")
        await wait_until(pilot, exported.exists)
        assert len(from_json(exported.read_text()).messages) == 61

        # Enter opens the conversation scrolled to the message that matched, not to its end.
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, HistoryScreen))
        main = app.main_screen
        # Long conversations mount their newest messages; opening at a match mounts from it on.
        await wait_until(
            pilot,
            lambda: len(main.chat_view.messages()) + main.chat_view.unmounted_count == 61,
        )
        target = main.chat_view.messages()[30 - main.chat_view.unmounted_count]
        view = main.chat_view
        # The match is on screen once the layout that scrolled there has been drawn (a region
        # is what the last drawn frame shows, so it can lag the scroll offset by a frame).
        await wait_until(
            pilot,
            lambda: (
                0 < view.scroll_y < view.max_scroll_y
                and view.region.y <= target.region.y < view.region.bottom
            ),
        )
    store.close()
