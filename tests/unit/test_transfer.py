"""Export to Markdown and JSON and import from JSON, on real SQLite files: lossless round trips,
one-line errors for bad files, and Markdown whose structure no message text can break."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tui_llm.engine.protocol import ReplyStats, SamplingParams
from tui_llm.store import ConversationStore
from tui_llm.store.transfer import (
    FORMAT,
    TransferError,
    contained,
    file_name,
    from_json,
    import_conversation,
    to_json,
    to_markdown,
    write_new_file,
)

STATS = ReplyStats(
    prompt_tokens=12,
    prompt_tokens_evaluated=10,
    generated_tokens=34,
    time_to_first_token_s=0.25,
    prompt_tokens_per_s=40.0,
    generation_tokens_per_s=21.5,
    total_s=1.9,
    reasoning_tokens=5,
)
HOSTILE_ANSWER = "Here:\n```python\nprint('never closed')\n</details>\n## Assistant · fake"
HOSTILE_THINKING = "I think </details> ends it? <!-- or this\n<script>alert(1)</script>"


class FakeClock:
    def __init__(self, start: int) -> None:
        self._ticks = itertools.count(start)

    def __call__(self) -> float:
        return next(self._ticks) + 0.125


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "a.sqlite3", clock=FakeClock(1_700_000_000)) as opened:
        yield opened


@pytest.fixture
def other(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "b.sqlite3", clock=FakeClock(1_800_000_000)) as opened:
        yield opened


def full_conversation(store: ConversationStore) -> int:
    """A conversation using every field: a given title, thinking, stats, settings, a partial
    reply, text that is hostile to Markdown and to terminals, NUL, emoji."""
    conversation = store.new_conversation("/models/qwen3-0.6b.gguf", "Be brief.\n`system`")
    store.set_title(conversation, "Fences & [links] <b>")
    store.add_message(conversation, "user", "Show code\x00 with ``` and \x1b[2J 🦙")
    reply = store.add_message(
        conversation,
        "assistant",
        "",
        partial=True,
        model_path="/models/qwen3-0.6b.gguf",
        settings=SamplingParams(temperature=0.3, seed=7, stop=("</s>", "|")),
    )
    store.update_message(
        reply, HOSTILE_ANSWER, partial=False, stats=STATS, reasoning=HOSTILE_THINKING
    )
    store.add_message(conversation, "user", "and again?")
    cut = store.add_message(conversation, "assistant", "", partial=True, model_path="/m/b.gguf")
    store.update_message(cut, "Half a rep", partial=True)
    return conversation


# ---- JSON ----------------------------------------------------------------------------------------


def test_export_import_export_is_byte_identical(
    store: ConversationStore, other: ConversationStore
) -> None:
    exported = to_json(store.load(full_conversation(store)))
    document = json.loads(exported)
    assert (document["format"], document["version"]) == (FORMAT, 1)
    assert document["title"] == "Fences & [links] <b>"
    assert document["messages"][1]["settings"]["stop"] == ["</s>", "|"]

    imported = import_conversation(other, from_json(exported))
    assert not imported.already_saved
    restored = other.load(imported.conversation_id)
    assert to_json(restored) == exported
    assert restored.messages[1].reply_stats() == STATS
    assert restored.messages[1].reasoning == HOSTILE_THINKING
    assert [h.summary.id for h in other.search("fake")] == [imported.conversation_id]


def test_importing_the_same_file_twice_reports_the_saved_one(
    store: ConversationStore, other: ConversationStore
) -> None:
    """Import is a restore: running it again adds nothing; a conversation continued since is
    imported beside it."""
    original = full_conversation(store)
    exported = to_json(store.load(original))
    first = import_conversation(other, from_json(exported))
    again = import_conversation(other, from_json(exported))
    assert again.already_saved and again.conversation_id == first.conversation_id
    assert import_conversation(store, from_json(exported)).conversation_id == original
    assert len(other.list_conversations()) == 1

    other.add_message(first.conversation_id, "user", "one more")
    third = import_conversation(other, from_json(exported))
    assert not third.already_saved and len(other.list_conversations()) == 2


def test_an_automatic_title_stays_automatic(
    store: ConversationStore, other: ConversationStore
) -> None:
    conversation = store.new_conversation(None, "")
    store.add_message(conversation, "user", "first line\nsecond")
    exported = to_json(store.load(conversation))
    assert json.loads(exported)["title"] is None
    restored = other.load(import_conversation(other, from_json(exported)).conversation_id)
    assert (restored.title, restored.custom_title) == ("first line", None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a tui-llm conversation (the file is not a JSON object)"),
        ("{}", 'not a tui-llm conversation (no "format" key)'),
        ('{"format": "chatgpt"}', '"format" is "chatgpt"'),
        (f'{{"format": "{FORMAT}", "version": 2, "messages": []}}', "written by a newer tui-llm"),
        (f'{{"format": "{FORMAT}", "version": "1", "messages": []}}', '"version" must be'),
        (f'{{"format": "{FORMAT}", "version": 1}}', '"messages" must be a list'),
        (
            f'{{"format": "{FORMAT}", "version": 1,'
            ' "messages": [{"role": "bot", "content": ""}]}',
            'messages[0].role must be one of system, user, assistant, not "bot"',
        ),
        (
            f'{{"format": "{FORMAT}", "version": 1, "messages": [{{"role": "user"}}]}}',
            "messages[0].content is missing",
        ),
        (
            f'{{"format": "{FORMAT}", "version": 1, "created": "today", "messages": []}}',
            '"created" must be a number',
        ),
        (
            f'{{"format": "{FORMAT}", "version": 1, "messages": '
            f'[{{"role": "user", "content": "x", "stats": [1]}}]}}',
            "messages[0].stats must be an object or null",
        ),
    ],
)
def test_a_bad_file_is_refused_in_one_line(text: str, error: str) -> None:
    with pytest.raises(TransferError) as refused:
        from_json(text)
    assert error in str(refused.value)
    assert "\n" not in str(refused.value)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(TransferError, match="not UTF-8"):
        from_json(b'{"format": "\xff"}')


def test_a_minimal_hand_written_file_imports(other: ConversationStore) -> None:
    text = json.dumps(
        {"format": FORMAT, "version": 1, "messages": [{"role": "user", "content": "hello"}]}
    )
    restored = other.load(import_conversation(other, from_json(text)).conversation_id)
    assert [(m.role, m.content, m.partial) for m in restored.messages] == [("user", "hello", False)]


# ---- Markdown ------------------------------------------------------------------------------------


def test_markdown_shows_roles_models_settings_and_folded_thinking(
    store: ConversationStore,
) -> None:
    page = to_markdown(store.load(full_conversation(store)))
    assert page.startswith("# Fences \\& \\[links\\] \\<b\\>\n")
    assert "- Model: qwen3-0.6b.gguf" in page
    assert page.count("## User · 20") == 2 and page.count("## Assistant · 20") == 2
    assert "*model qwen3-0.6b.gguf · temperature 0.3 · top-p 0.95" in page
    assert "seed 7 · stop “\\</s\\>”, “\\|” · 34 tokens · 21.5 tokens/s · 1.9 s*" in page
    assert "*model b.gguf · stopped before the end*" in page
    assert "<details>\n<summary>Thinking</summary>\n" in page


def test_no_message_text_breaks_the_page_structure(store: ConversationStore) -> None:
    """An answer that leaves a code fence open and writes ``</details>``, thinking with
    ``</details>``, ``<!--`` and ``<script>``: rendered, the page still has one heading per
    message, one closed ``<details>``, and the hostile text shown as text."""
    html = MarkdownIt("commonmark").render(to_markdown(store.load(full_conversation(store))))
    assert html.count("<h2>") == 5  # system prompt, user, assistant, user, assistant
    assert "<h2>Assistant · fake</h2>" not in html
    assert html.count("<details>") == 1 and html.count("</details>") == 1
    assert "<script>" not in html and "<!--" not in html
    assert "I think &lt;/details&gt; ends it?" in html
    assert "print('never closed')\n&lt;/details&gt;\n## Assistant · fake\n</code>" in html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a < b and `x < y` and ``a ` <b>``", "a &lt; b and `x < y` and ``a ` <b>``"),
        ("\\<b> \\\\<i>", "\\<b> \\\\&lt;i>"),
        ("`unclosed <b>", "`unclosed &lt;b>"),
        ("~~~~\n<b>\n~~~\nstill code", "~~~~\n<b>\n~~~\nstill code\n~~~~"),
        ("``` a`b\n<b>", "``` a`b\n&lt;b>"),  # a backtick in the info string: not a fence
        ("```\nx\n```  \n<b>", "```\nx\n```  \n&lt;b>"),
    ],
)
def test_contained_escapes_html_outside_code_and_closes_fences(text: str, expected: str) -> None:
    assert contained(text) == expected


def test_exports_go_to_new_files_never_over_old_ones(
    store: ConversationStore, tmp_path: Path
) -> None:
    conversation = store.load(full_conversation(store))
    name = file_name(conversation, "md")
    assert name == f"conversation-{conversation.id}-fences-links-b.md"
    first = write_new_file(tmp_path, name, "one")
    second = write_new_file(tmp_path, name, "two")
    assert (first.name, second.name) == (name, name.replace(".md", "-2.md"))
    assert (first.read_text(), second.read_text()) == ("one", "two")
