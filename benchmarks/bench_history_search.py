"""How fast F3 and ``tui-llm history --search`` answer on a large history: 10,000 conversations of
100 messages (1,000,000 messages) in a real SQLite file, searched through ``ConversationStore``.

The database is made the store's way (its migrations, so the FTS5 index and its triggers) and
filled in one transaction with ``executemany``: the triggers index every message as it goes in.
Messages are 10-80 words drawn from a Zipf-like vocabulary of 20,000 made-up words, with a few
marker words planted at known rates, so each query below has a known number of matches.

Each query is timed through ``store.search`` (index, summaries, the matching line) as the screen
calls it, after one warm-up; the target is 100 ms for every kind of query.

    .venv/bin/python -m benchmarks.bench_history_search [--conversations N] [--repeats N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sections import markdown_table
from tui_llm.store import ConversationStore

MESSAGES_PER_CONVERSATION = 100
TARGET_MS = 100.0
VOCABULARY = 20_000
# Planted words: (word, one message in N holds it).
PLANTED = (("zeppelin", 100_000), ("quasar", 1_000), ("kernel", 20))
QUERIES = (
    ("rare word (1 message in 100,000)", "zeppelin"),
    ("uncommon word (1 in 1,000)", "quasar"),
    ("common word (1 in 20)", "kernel"),
    ("most common word (in nearly every message)", "w0"),
    ("two words, rarely together", "kernel quasar"),
    ("five words", "kernel w0 w1 w2 w3"),
    ("being typed: 2 letters", "ze"),
    ("being typed: 3 letters", "qua"),
    ("being typed: 5 letters", "zeppe"),
    ("being typed: a prefix of 11,111 words", "w1"),
    ("no match", "nowhereword"),
)


def _words(rng: random.Random) -> tuple[list[str], list[float]]:
    words = [f"w{rank}" for rank in range(VOCABULARY)]
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(VOCABULARY)))
    return words, cumulative


def build(path: Path, conversations: int, seed: int = 1) -> tuple[float, int]:
    """Fill a new store at ``path``; returns (seconds, messages)."""
    ConversationStore(path).open()  # the schema, by the store's own migrations
    rng = random.Random(seed)
    words, cumulative = _words(rng)
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN IMMEDIATE")
    base = 1_700_000_000.0
    db.executemany(
        "INSERT INTO conversations (id, title, created, updated, model_path, system_prompt)"
        " VALUES (?, NULL, ?, ?, '/models/bench.gguf', '')",
        ((c + 1, base + c * 1000, base + c * 1000 + 999) for c in range(conversations)),
    )

    def messages() -> object:
        for c in range(conversations):
            for position in range(MESSAGES_PER_CONVERSATION):
                text = rng.choices(words, cum_weights=cumulative, k=rng.randint(10, 80))
                for word, every in PLANTED:
                    if rng.randrange(every) == 0:
                        text[rng.randrange(len(text))] = word
                yield (
                    c + 1,
                    position,
                    "user" if position % 2 == 0 else "assistant",
                    " ".join(text),
                    base + c * 1000 + position,
                )

    db.executemany(
        "INSERT INTO messages (conversation_id, position, role, content, created)"
        " VALUES (?, ?, ?, ?, ?)",
        messages(),  # type: ignore[arg-type]
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started, conversations * MESSAGES_PER_CONVERSATION


def measure(path: Path, repeats: int) -> list[tuple[str, str, int, float, float]]:
    """Per query: (what, query, conversations found, median ms, p99 ms)."""
    rows = []
    with ConversationStore(path) as store:
        for what, query in QUERIES:
            found = len(store.search(query))  # warm-up
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                store.search(query)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            rows.append((what, query, found, statistics.median(times), p99))
    return rows


def report(conversations: int, repeats: int) -> str:
    with tempfile.TemporaryDirectory(prefix="tui-llm-bench-search-") as folder:
        path = Path(folder) / "conversations.sqlite3"
        print(f"building {conversations:,} conversations...", file=sys.stderr, flush=True)
        seconds, messages = build(path, conversations)
        size_mb = sum(os.path.getsize(p) for p in Path(folder).iterdir() if p.is_file()) / (
            1024 * 1024
        )
        print(f"built in {seconds:.0f} s; searching...", file=sys.stderr, flush=True)
        rows = measure(path, repeats)
    worst = max(p99 for *_, p99 in rows)
    verdict = "met" if worst < TARGET_MS else "missed"
    table = markdown_table(
        ("query", "typed", "conversations found", "median ms", "p99 ms"),
        (
            (what, f"`{query}`", str(found), f"{median:.1f}", f"{p99:.1f}")
            for what, query, found, median, p99 in rows
        ),
    )
    return (
        f"{conversations:,} conversations × {MESSAGES_PER_CONVERSATION} messages "
        f"({messages:,} messages, {size_mb:,.0f} MiB with the index), built in {seconds:.0f} s; "
        f"{repeats} searches a query, each listing up to 50 conversations.\n\n{table}\n\n"
        f"**Target {verdict}:** the slowest p99 is {worst:.1f} ms against {TARGET_MS:.0f} ms."
    )


def collect(quick: bool) -> dict[str, str]:
    """Run the benchmark (``quick``: 500 conversations); its Markdown for the docs."""
    return {"history_search": report(500 if quick else 10_000, 20 if quick else 100)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    print(report(args.conversations, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
