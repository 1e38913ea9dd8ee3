"""Full-text search of saved conversations on real SQLite files: what is found, the line shown,
an index that stays in step with the messages through every write, a migration, and SIGKILL."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tui_llm.engine.protocol import SamplingParams
from tui_llm.store import ConversationStore
from tui_llm.store.migrations import MIGRATIONS, migrate, schema_version
from tui_llm.store.search import LINE_MAX_CHARS, matching_line, parse_query

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
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


def index_problems(path: Path) -> list[str]:
    """What is wrong with the file and its search index (empty: all is well)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        problems = [row[0] for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"]
        try:  # rank 1: the index is also checked against every row of ``messages``
            db.execute(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)"
            )
        except sqlite3.Error as exc:
            problems.append(f"search index: {exc}")
        return problems
    finally:
        db.close()


def shown(hit_line: str, spans: tuple[tuple[int, int], ...]) -> list[str]:
    return [hit_line[start:end] for start, end in spans]


# ---- what is found -----------------------------------------------------------------------------


def test_words_are_found_in_any_order_without_case_or_accents(store: ConversationStore) -> None:
    kube = store.new_conversation("/models/qwen.gguf", "")
    store.add_message(kube, "user", "How do I run Kubernetes\non a café laptop?")
    store.add_message(kube, "assistant", "Try minikube: it runs a cluster in a VM.")
    other = store.new_conversation(None, "")
    store.add_message(other, "user", "A recipe for CAFE au lait")

    (hit,) = store.search("laptop KUBERNETES")
    assert (hit.summary.id, hit.position, hit.role) == (kube, 0, "user")
    assert hit.summary.model_name == "qwen.gguf" and hit.summary.message_count == 2
    assert hit.line == "How do I run Kubernetes"  # the line with the most of the words
    assert shown(hit.line, hit.spans) == ["Kubernetes"]
    assert {h.summary.id for h in store.search("cafe")} == {kube, other}
    (found,) = store.search("café laptop")
    assert found.line == "on a café laptop?" and shown(found.line, found.spans) == [
        "café",
        "laptop",
    ]
    assert store.search("kubernetes recipe") == []  # every word, in one message


def test_the_last_word_is_a_prefix_while_typed(store: ConversationStore) -> None:
    conversation = store.new_conversation(None, "")
    store.add_message(conversation, "user", "Explain Kubernetes operators")
    assert [shown(h.line, h.spans) for h in store.search("kube")] == [["Kubernetes"]]
    assert [shown(h.line, h.spans) for h in store.search("explain oper")] == [
        ["Explain", "operators"]
    ]
    assert store.search("kube ") == []  # a space ends the word
    assert store.search("k") == []  # one letter is a whole word, not a prefix
    assert store.search("xplain") == []  # words, not substrings


def test_queries_without_words_or_with_fts_syntax_find_nothing_and_never_fail(
    store: ConversationStore,
) -> None:
    conversation = store.new_conversation(None, "")
    store.add_message(conversation, "user", 'snake_case and "quotes" NEAR(a b) OR NOT *')
    for query in ("", "   ", "%", "?!", '"', "*", "(", "^"):
        assert store.search(query) == []
    assert len(store.search('"quotes')) == 1
    assert len(store.search("NEAR OR NOT")) == 1  # operators are words like any other
    assert len(store.search("snake_case")) == 1  # the two words snake and case


def test_newest_match_first_one_hit_per_conversation_and_a_given_title(
    store: ConversationStore,
) -> None:
    ids = []
    for n in range(4):
        conversation = store.new_conversation(None, "")
        store.add_message(conversation, "user", f"question {n} about sqlite")
        store.add_message(conversation, "assistant", f"answer {n}: sqlite uses a b-tree")
        ids.append(conversation)
    titled = store.new_conversation(None, "", title="SQLite tuning notes")
    hits = store.search("sqlite")
    assert [h.summary.id for h in hits] == [titled, *reversed(ids)]
    assert hits[0].position is None and hits[0].line == "SQLite tuning notes"
    assert [h.position for h in hits[1:]] == [1, 1, 1, 1]  # the newest message of each
    assert [h.summary.id for h in store.search("sqlite", limit=2)] == [titled, ids[3]]
    store.delete_conversation(ids[3])
    store.delete_messages_from(ids[2], 1)
    hits = store.search("sqlite")
    assert [(h.summary.id, h.position) for h in hits[1:]] == [(ids[2], 0), (ids[1], 1), (ids[0], 1)]


def test_a_streamed_reply_is_found_by_its_final_text_only(store: ConversationStore) -> None:
    conversation = store.new_conversation(None, "")
    store.add_message(conversation, "user", "hi")
    reply = store.add_message(conversation, "assistant", "", partial=True)
    store.update_message(reply, "drafting a partial answer", partial=True)
    store.update_message(reply, "the final answer", partial=False)
    assert store.search("drafting") == []
    assert [h.message_id for h in store.search("final")] == [reply]


def test_a_long_line_is_cut_around_its_match() -> None:
    query = parse_query("needle")
    assert query is not None
    text = "x" * 500 + " needle " + "y" * 500
    line, spans = matching_line(text, query)
    assert len(line) <= LINE_MAX_CHARS and line.startswith("…") and line.endswith("…")
    assert shown(line, spans) == ["needle"]


# ---- the index stays in step ---------------------------------------------------------------------


def test_every_kind_of_write_leaves_the_index_consistent(
    store: ConversationStore, db_path: Path
) -> None:
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "délta", "ЖУК", "数据", "x_y", "[b]"]
    conversations: list[int] = []
    for step in range(300):
        action = rng.random()
        if action < 0.15 or not conversations:
            conversations.append(store.new_conversation(None, ""))
        elif action < 0.6:
            text = " ".join(rng.choices(words, k=rng.randint(0, 12)))
            store.add_message(rng.choice(conversations), "user", text)
        elif action < 0.75:
            conversation = store.load(rng.choice(conversations))
            if conversation.messages:
                message = rng.choice(conversation.messages)
                store.update_message(message.id, f"edited {step}", partial=False)
        elif action < 0.85:
            store.delete_messages_from(rng.choice(conversations), rng.randint(0, 3))
        else:
            store.delete_conversation(conversations.pop(rng.randrange(len(conversations))))
    assert index_problems(db_path) == []


def test_a_first_version_database_with_data_is_indexed_on_upgrade(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path, isolation_level=None)
    migrate(db, MIGRATIONS[:1])
    db.execute(
        "INSERT INTO conversations (title, created, updated, model_path) VALUES"
        " (NULL, 1, 5, '/m/old.gguf'), ('Named in v1', 2, 6, NULL)"
    )
    db.executemany(
        "INSERT INTO messages (conversation_id, position, role, content, created) VALUES"
        " (?, ?, ?, ?, ?)",
        [
            (1, 0, "user", "What is a write-ahead log?", 1),
            (1, 1, "assistant", "A journal written before the pages.", 2),
            (2, 0, "user", "unrelated", 3),
        ],
    )
    db.close()

    with ConversationStore(db_path) as store:
        (hit,) = store.search("journal pages")
        assert (hit.summary.id, hit.position, hit.summary.model_name) == (1, 1, "old.gguf")
        assert hit.summary.title == "What is a write-ahead log?"
        assert [h.summary.id for h in store.search("named")] == [2]
        old = store.load(1).messages[1]
        assert (old.model_path, old.settings, old.reasoning) == (None, None, "")
        # New writes go on in step with the upgraded index.
        reply = store.add_message(
            1,
            "assistant",
            "Checkpoints copy it back.",
            model_path="/m/new.gguf",
            settings=SamplingParams(temperature=0.2),
        )
        assert [h.message_id for h in store.search("checkpoints")] == [reply]
        saved = store.load(1).messages[-1]
        assert saved.model_name == "new.gguf" and saved.settings is not None
        assert saved.settings["temperature"] == 0.2
    reader = sqlite3.connect(db_path)
    assert schema_version(reader) == len(MIGRATIONS)
    reader.close()
    assert index_problems(db_path) == []


# ---- SIGKILL mid-write ---------------------------------------------------------------------------

_WRITER = """
import random, sys
from pathlib import Path
from tui_llm.store import ConversationStore

rng = random.Random(int(sys.argv[2]))
store = ConversationStore(Path(sys.argv[1]))
words = ["kill", "mid", "write", "index", "trigger", "wal", "page", "réplique", "文字"]
conversation = store.new_conversation(None, "")
print("ready", flush=True)
while True:
    text = " ".join(rng.choices(words, k=rng.randint(1, 60)))
    action = rng.random()
    if action < 0.1:
        conversation = store.new_conversation(None, "")
    elif action < 0.5:
        store.add_message(conversation, "user", text)
    elif action < 0.8:
        reply = store.add_message(conversation, "assistant", "", partial=True)
        for size in range(1, 8):
            store.update_message(reply, text * size, partial=size < 7)
    elif action < 0.9:
        store.delete_messages_from(conversation, rng.randint(0, 5))
    else:
        for summary in store.list_conversations(limit=3)[2:]:
            store.delete_conversation(summary.id)
"""


def test_the_index_is_consistent_after_sigkill_at_random_points(db_path: Path) -> None:
    """A real writer process is killed (SIGKILL) 20 times at random moments; each time the file
    and its search index pass SQLite's integrity checks and the store opens and searches."""
    db_path.parent.mkdir(parents=True)
    rng = random.Random(2024)
    for run in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(db_path), str(run)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline() == "ready\n", writer.stderr
            time.sleep(rng.uniform(0.0, 0.4))  # the random kill point, not a wait
            assert writer.poll() is None, "the writer stopped by itself"
            os.kill(writer.pid, signal.SIGKILL)
        finally:
            writer.kill()
            writer.communicate()
        assert writer.returncode == -signal.SIGKILL
        assert index_problems(db_path) == [], f"run {run}"
        with ConversationStore(db_path) as store:
            store.search("kill")  # opens (WAL recovered) and searches without an error
    with ConversationStore(db_path) as store:
        assert store.list_conversations(limit=None), "no write ever committed"
