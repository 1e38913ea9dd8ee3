"""The conversation store on a real SQLite file: what is saved comes back, crashes lose nothing,
a damaged or too-new file is reported in one line and never changed behind the user's back."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_llm.engine.protocol import ChatMessage, ReplyStats
from tui_llm.store import (
    UNTITLED,
    ConversationStore,
    StoreError,
    auto_title,
)
from tui_llm.store.migrations import MIGRATIONS, migrate, schema_version, statements
from tui_llm.store.search import words_with_offsets

REPO = Path(__file__).resolve().parents[2]
STATS = ReplyStats(
    prompt_tokens=12,
    prompt_tokens_evaluated=10,
    generated_tokens=34,
    time_to_first_token_s=0.25,
    prompt_tokens_per_s=40.0,
    generation_tokens_per_s=21.5,
    total_s=1.9,
)


class FakeClock:
    """Seconds that advance by one on every reading, so "newest first" never ties."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_700_000_000)

    def __call__(self) -> float:
        return float(next(self._ticks))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "conversations.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path, clock=FakeClock()) as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    """A second, independent connection to the same file."""
    return sqlite3.connect(path, isolation_level=None, timeout=0.1)


def one_line(error: StoreError, path: Path) -> str:
    text = str(error)
    assert "\n" not in text and "\r" not in text
    assert str(path) in text
    return text


# ---- lifecycle --------------------------------------------------------------------------------


def test_construction_does_no_work_and_first_use_creates_the_default_file(
    user_dirs: Path,
) -> None:
    store = ConversationStore()
    default = Path(os.environ["TUI_LLM_DATA_DIR"]) / "conversations.sqlite3"
    assert store.path == default
    assert not default.parent.exists() and not store.is_open
    try:
        conversation_id = store.new_conversation(None, "")
        assert default.is_file() and store.is_open
        assert store.load(conversation_id).messages == []
    finally:
        store.close()


def test_round_trip_keeps_every_field(store: ConversationStore) -> None:
    conversation_id = store.new_conversation("/models/qwen-7b.Q4_K_M.gguf", "Be brief.")
    user_id = store.add_message(conversation_id, "user", "Hello\nthere")
    reply_id = store.add_message(conversation_id, "assistant", "Hi!", stats=STATS)

    loaded = store.load(conversation_id)
    assert loaded.id == conversation_id
    assert loaded.model_path == "/models/qwen-7b.Q4_K_M.gguf"
    assert loaded.model_name == "qwen-7b.Q4_K_M.gguf"
    assert loaded.system_prompt == "Be brief."
    assert [(m.id, m.position, m.role, m.content, m.partial) for m in loaded.messages] == [
        (user_id, 0, "user", "Hello\nthere", False),
        (reply_id, 1, "assistant", "Hi!", False),
    ]
    assert loaded.messages[0].stats is None
    assert loaded.messages[1].reply_stats() == STATS
    conversation = loaded.to_conversation()
    assert conversation.system_prompt == "Be brief."
    assert conversation.turns == [
        ChatMessage("user", "Hello\nthere"),
        ChatMessage("assistant", "Hi!"),
    ]

    store.close()
    assert store.load(conversation_id) == loaded  # reopened lazily from the file


def test_messages_come_back_in_the_order_they_were_added(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "")
    other_id = store.new_conversation(None, "")
    texts = [f"message {n}" for n in range(12)]
    for n, text in enumerate(texts):
        store.add_message(conversation_id, "user" if n % 2 == 0 else "assistant", text)
        store.add_message(other_id, "user", f"other {n}")
    loaded = store.load(conversation_id)
    assert [m.content for m in loaded.messages] == texts
    assert [m.position for m in loaded.messages] == list(range(12))


def test_streaming_reply_saved_partial_then_completed(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "")
    store.add_message(conversation_id, "user", "Tell me a story")
    reply_id = store.add_message(conversation_id, "assistant", "", partial=True)
    store.update_message(reply_id, "Once upon", partial=True)

    during = store.load(conversation_id).messages[-1]
    assert (during.content, during.partial, during.stats) == ("Once upon", True, None)

    store.update_message(reply_id, "Once upon a time.", partial=False, stats=STATS)
    done = store.load(conversation_id).messages[-1]
    assert (done.id, done.content, done.partial) == (reply_id, "Once upon a time.", False)
    assert done.reply_stats() == STATS


def test_a_reply_interrupted_by_a_crash_is_kept_as_partial(db_path: Path) -> None:
    """The process dies mid-reply without closing anything; what it received is on disk."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tui_llm.store import ConversationStore\n"
        "store = ConversationStore(Path(sys.argv[1]))\n"
        "cid = store.new_conversation(None, '')\n"
        "store.add_message(cid, 'user', 'Explain WAL')\n"
        "mid = store.add_message(cid, 'assistant', '', partial=True)\n"
        "store.update_message(mid, 'Write-ahead logging keeps', partial=True)\n"
        "os._exit(9)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(db_path)], cwd=REPO, capture_output=True, check=False
    )
    assert result.returncode == 9, result.stderr
    with ConversationStore(db_path) as store:
        (summary,) = store.list_conversations()
        reply = store.load(summary.id).messages[-1]
    assert (reply.content, reply.partial) == ("Write-ahead logging keeps", True)


def test_deleting_the_tail_for_regenerate_or_edit(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "")
    for n in range(5):
        store.add_message(conversation_id, "user" if n % 2 == 0 else "assistant", f"m{n}")

    assert store.delete_messages_from(conversation_id, 3) == 2
    assert [m.content for m in store.load(conversation_id).messages] == ["m0", "m1", "m2"]
    store.add_message(conversation_id, "assistant", "again")
    assert [(m.position, m.content) for m in store.load(conversation_id).messages][-1] == (
        3,
        "again",
    )
    assert store.delete_messages_from(conversation_id, 10) == 0


def test_deleting_a_conversation_deletes_its_messages(
    store: ConversationStore, db_path: Path
) -> None:
    keep = store.new_conversation(None, "")
    store.add_message(keep, "user", "keep me")
    doomed = store.new_conversation(None, "")
    doomed_message = store.add_message(doomed, "user", "bye")
    store.add_message(doomed, "assistant", "bye bye")

    store.delete_conversation(doomed)
    store.delete_conversation(doomed)  # deleting twice is harmless

    reader = raw(db_path)
    assert reader.execute("SELECT conversation_id FROM messages").fetchall() == [(keep,)]
    reader.close()
    assert [s.id for s in store.list_conversations()] == [keep]
    with pytest.raises(StoreError) as missing:
        store.load(doomed)
    assert missing.value.kind == "missing"
    # A reply still streaming into the deleted conversation cannot land anywhere else.
    with pytest.raises(StoreError) as gone:
        store.update_message(doomed_message, "late", partial=True)
    assert gone.value.kind == "missing"
    with pytest.raises(StoreError):
        store.add_message(doomed, "assistant", "late")
    newer = store.new_conversation(None, "")
    assert store.add_message(newer, "user", "new") != doomed_message


# ---- titles and the list ----------------------------------------------------------------------


def test_titles_are_automatic_until_set(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "")
    assert store.load(conversation_id).title == UNTITLED

    store.add_message(conversation_id, "system", "You are terse.")
    store.add_message(conversation_id, "user", "\n  \n  How do I   resize a partition?\nDetails")
    store.add_message(conversation_id, "user", "A later question")
    assert store.load(conversation_id).title == "How do I   resize a partition?"
    assert store.list_conversations()[0].title == "How do I   resize a partition?"

    store.set_title(conversation_id, "  Disk\nwork  ")
    assert store.load(conversation_id).title == "Disk work"
    store.set_title(conversation_id, None)
    assert store.load(conversation_id).title == "How do I   resize a partition?"

    long_id = store.new_conversation(None, "")
    store.add_message(long_id, "user", "x" * 200)
    title = store.list_conversations()[0].title
    assert len(title) == 60 and title == "x" * 59 + "…"
    assert auto_title("short") == "short"
    assert auto_title("   \n\t") is None


def test_list_is_newest_first_with_counts_and_model_names(store: ConversationStore) -> None:
    first = store.new_conversation("/m/a.gguf", "")
    second = store.new_conversation(None, "")
    third = store.new_conversation("/m/c.gguf", "")
    store.add_message(first, "user", "bump the oldest")
    store.add_message(first, "assistant", "done")

    summaries = store.list_conversations()
    assert [s.id for s in summaries] == [first, third, second]
    assert [s.message_count for s in summaries] == [2, 0, 0]
    assert [s.model_name for s in summaries] == ["a.gguf", "c.gguf", None]
    assert summaries[0].updated > summaries[1].updated > summaries[2].updated
    assert [s.id for s in store.list_conversations(limit=2)] == [first, third]


# ---- schema and migrations --------------------------------------------------------------------


def test_an_empty_file_is_migrated_and_reopening_changes_nothing(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    with ConversationStore(db_path) as store:
        conversation_id = store.new_conversation(None, "kept")
        store.add_message(conversation_id, "user", "hello")
    reader = raw(db_path)
    assert schema_version(reader) == len(MIGRATIONS)
    schema_before = reader.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    reader.close()

    for _ in range(2):
        with ConversationStore(db_path) as store:
            loaded = store.load(conversation_id)
            assert (loaded.system_prompt, loaded.messages[0].content) == ("kept", "hello")
    reader = raw(db_path)
    assert schema_version(reader) == len(MIGRATIONS)
    assert reader.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == (
        schema_before
    )
    reader.close()


def test_a_later_migration_upgrades_a_v1_database_and_keeps_its_data(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        conversation_id = store.new_conversation(None, "")
        store.add_message(conversation_id, "user", "from v1")
    later = "ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;"
    db = raw(db_path)
    known = len(MIGRATIONS)
    assert schema_version(db) == known
    assert migrate(db, (*MIGRATIONS, later)) == known + 1
    assert migrate(db, (*MIGRATIONS, later)) == known + 1  # idempotent
    assert db.execute("SELECT pinned FROM conversations").fetchall() == [(0,)]
    assert db.execute("SELECT content FROM messages").fetchall() == [("from v1",)]
    db.close()


def test_a_first_version_database_gains_the_reasoning_column_and_keeps_its_data(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True)
    db = raw(db_path)
    migrate(db, MIGRATIONS[:1])
    db.execute("INSERT INTO conversations (created, updated) VALUES (1, 1)")
    db.execute(
        "INSERT INTO messages (conversation_id, position, role, content, created, stats_json)"
        " VALUES (1, 0, 'assistant', 'old reply', 1, ?)",
        (
            '{"prompt_tokens": 3, "prompt_tokens_evaluated": 3, "generated_tokens": 2, '
            '"time_to_first_token_s": 0.1, "prompt_tokens_per_s": 30.0, '
            '"generation_tokens_per_s": 10.0, "total_s": 0.3}',
        ),
    )
    db.close()
    with ConversationStore(db_path) as store:
        loaded = store.load(1)
        (message,) = loaded.messages
        assert (message.content, message.reasoning) == ("old reply", "")
        stats = message.reply_stats()  # saved before thinking figures existed
        assert stats is not None and stats.reasoning_tokens == 0
        store.update_message(message.id, "answer", partial=False, reasoning="thoughts")
        turn = store.load(1).to_conversation().turns[0]
        assert (turn.content, turn.reasoning) == ("answer", "thoughts")


def test_a_failing_migration_rolls_back_every_step(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        store.new_conversation(None, "")
    broken = "ALTER TABLE conversations ADD COLUMN pinned INTEGER; SELECT no_such_column FROM x;"
    db = raw(db_path)
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, (*MIGRATIONS, broken))
    assert schema_version(db) == len(MIGRATIONS)
    columns = [row[1] for row in db.execute("PRAGMA table_info(conversations)")]
    assert "pinned" not in columns
    db.close()


def test_a_newer_schema_is_reported_and_left_alone(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        store.new_conversation(None, "from the future")
    db = raw(db_path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = db_path.read_bytes()

    store = ConversationStore(db_path)
    with pytest.raises(StoreError) as error:
        store.open()
    assert error.value.kind == "too_new"
    assert "newer tui-llm" in one_line(error.value, db_path)
    with pytest.raises(StoreError):  # stays off: the app goes on without saving
        store.new_conversation(None, "")
    with pytest.raises(StoreError) as refused:
        store.recover()
    assert refused.value.kind == "too_new"
    store.close()
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]


def test_statements_split_where_sqlite_does() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
    """
    assert [s.split()[0:2] for s in statements(script)] == [
        ["--", "a"],
        ["CREATE", "TRIGGER"],
    ]
    assert "'a;b'" in statements(script)[0]
    with pytest.raises(ValueError):
        statements("CREATE TABLE t (x TEXT DEFAULT 'unclosed")


def test_database_is_in_wal_mode_with_foreign_keys(store: ConversationStore, db_path: Path) -> None:
    store.new_conversation(None, "")
    reader = raw(db_path)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.close()
    assert db_path.with_name(db_path.name + "-wal").exists()
    with pytest.raises(StoreError):  # the foreign key holds: no message without a conversation
        store.add_message(12345, "user", "orphan")


# ---- damaged files ----------------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is a text file, not a database\n" * 200)


def _truncated(path: Path) -> None:
    with ConversationStore(path) as store:
        conversation_id = store.new_conversation(None, "")
        for n in range(300):
            store.add_message(conversation_id, "user", f"{n} " + "words " * 100)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)


def _damaged_page(path: Path) -> None:
    """Scribble over one table page deep in the file: listing still works, loading would not."""
    with ConversationStore(path) as store:
        conversation_id = store.new_conversation(None, "")
        for n in range(300):
            store.add_message(conversation_id, "user", f"{n} " + "words " * 100)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    leaves = [
        start
        for start in range(page_size, len(data), page_size)
        if data[start] == 0x0D  # a table b-tree leaf page
    ]
    middle = leaves[len(leaves) // 2]
    data[middle + 8 : middle + 72] = b"\xff" * 64  # its cell pointers now point past the page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [_garbage, _truncated, _damaged_page],
    ids=["not-sqlite", "truncated", "damaged-page"],
)
def test_a_damaged_file_is_reported_and_only_recover_moves_it(
    db_path: Path, damage: object
) -> None:
    assert callable(damage)
    damage(db_path)
    before = db_path.read_bytes()

    store = ConversationStore(db_path)
    with pytest.raises(StoreError) as error:
        store.list_conversations()
    assert error.value.kind == "corrupt"
    assert "damaged" in one_line(error.value, db_path)
    with pytest.raises(StoreError):
        store.new_conversation(None, "")
    assert db_path.read_bytes() == before
    assert not list(db_path.parent.glob("*.corrupt-*"))

    moved = store.recover()
    assert moved is not None and moved.name.startswith("conversations.sqlite3.corrupt-")
    assert moved.read_bytes() == before
    conversation_id = store.new_conversation(None, "")
    store.add_message(conversation_id, "user", "a fresh start")
    assert [s.id for s in store.list_conversations()] == [conversation_id]
    assert store.recover() is None  # a healthy database is left alone
    assert store.load(conversation_id).messages[0].content == "a fresh start"
    store.close()


# ---- other connections and threads ------------------------------------------------------------


def test_a_reader_sees_committed_data_while_the_store_writes(
    store: ConversationStore, db_path: Path
) -> None:
    conversation_id = store.new_conversation(None, "")
    store.add_message(conversation_id, "user", "first")
    reader = raw(db_path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM messages").fetchone() == (1,)

    store.add_message(conversation_id, "assistant", "written while a reader is open")
    assert reader.execute("SELECT COUNT(*) FROM messages").fetchone() == (1,)  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT content FROM messages ORDER BY position").fetchall() == [
        ("first",),
        ("written while a reader is open",),
    ]
    with ConversationStore(db_path) as second:
        assert len(second.load(conversation_id).messages) == 2
    reader.close()


def test_a_write_blocked_by_another_writer_fails_in_one_line_then_recovers(
    db_path: Path,
) -> None:
    with ConversationStore(db_path, busy_timeout_s=0.1) as store:
        conversation_id = store.new_conversation(None, "")
        other = raw(db_path)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError) as error:
            store.add_message(conversation_id, "user", "waiting")
        assert error.value.kind == "busy"
        one_line(error.value, db_path)
        other.execute("COMMIT")
        other.close()
        store.add_message(conversation_id, "user", "now it fits")
        assert [m.content for m in store.load(conversation_id).messages] == ["now it fits"]


def test_calls_from_several_threads_are_serialised(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "")
    threads_seen: set[int] = set()

    def add(n: int) -> int:
        threads_seen.add(threading.get_ident())
        return store.add_message(conversation_id, "user", f"from worker {n}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(add, range(40)))
    messages = store.load(conversation_id).messages
    assert len(set(ids)) == 40
    assert [m.position for m in messages] == list(range(40))
    assert len(threads_seen) > 1


# ---- arbitrary text ---------------------------------------------------------------------------


def test_arbitrary_unicode_round_trips(tmp_path: Path) -> None:
    """Control characters, NUL, emoji, right-to-left text: every character comes back."""
    with ConversationStore(tmp_path / "fuzz.sqlite3") as store:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            system_prompt=st.text(),
            contents=st.lists(st.text(), min_size=1, max_size=4),
            title=st.text(),
        )
        def check(system_prompt: str, contents: list[str], title: str) -> None:
            conversation_id = store.new_conversation(None, system_prompt)
            ids = [store.add_message(conversation_id, "user", text) for text in contents]
            store.update_message(ids[-1], contents[-1] + "\x00end", partial=True)
            store.set_title(conversation_id, title)
            loaded = store.load(conversation_id)
            assert loaded.system_prompt == system_prompt
            assert [m.content for m in loaded.messages] == [
                *contents[:-1],
                contents[-1] + "\x00end",
            ]
            assert loaded.title == (
                " ".join(title.split()) or auto_title(loaded.messages[0].content) or UNTITLED
            )
            # Every word of the first message finds it, whatever the characters around them
            # (ASCII, letters and digits: SQLite's Unicode 6.1 tables split those as Python).
            words = " ".join(
                contents[0][start:end] for start, end in words_with_offsets(contents[0])
            )
            same_split = all(c.isascii() or unicodedata.category(c)[0] in "LN" for c in contents[0])
            if words and len(ids) > 1 and same_split:
                found = {hit.summary.id for hit in store.search(words + " ")}
                assert conversation_id in found

        check()


def test_lone_surrogates_are_saved_as_replacement_characters(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "bad \ud800 prompt")
    store.add_message(conversation_id, "user", "half an emoji: \udc00!")
    loaded = store.load(conversation_id)
    assert loaded.system_prompt == "bad \ufffd prompt"
    assert loaded.messages[0].content == "half an emoji: \ufffd!"


def test_unknown_role_is_a_programming_error(store: ConversationStore) -> None:
    conversation_id = store.new_conversation(None, "")
    with pytest.raises(ValueError):
        store.add_message(conversation_id, "tool", "x")  # type: ignore[arg-type]
