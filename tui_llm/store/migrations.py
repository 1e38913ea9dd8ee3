"""Schema migrations of the store (conversations, sweeps), keyed by ``PRAGMA user_version``.

``MIGRATIONS[n]`` is the SQL script that takes a database from version ``n`` to ``n + 1``; a new
database (version 0) runs them all. Append new scripts, never edit a released one. A migration that
rebuilds a table must say so here, since ``foreign_keys`` cannot be switched off inside the
transaction that applies it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

_V1 = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    model_path TEXT,
    system_prompt TEXT NOT NULL DEFAULT ''
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    created REAL NOT NULL,
    partial INTEGER NOT NULL DEFAULT 0 CHECK (partial IN (0, 1)),
    stats_json TEXT
);
CREATE UNIQUE INDEX messages_by_position ON messages(conversation_id, position);
CREATE INDEX conversations_by_updated ON conversations(updated);
"""

# A reasoning model's thinking, kept apart from the answer in ``content``.
_V2 = """
ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT '';
"""

# Offload sweeps (tokens/s at each GPU offload level), one row each: the whole ``SweepResult`` as
# JSON, with the model and the start time apart for listing a model's sweeps newest first.
_V3 = """
CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_path TEXT NOT NULL,
    started REAL NOT NULL,
    result_json TEXT NOT NULL
);
CREATE INDEX sweeps_by_model ON sweeps(model_path, started);
"""

# Full-text search over every message, and the model and sampling settings of each reply.
# ``messages_fts`` is an external-content FTS5 index of ``messages.content`` (rowid = message id),
# kept in step by triggers, so every write and its index entry commit or roll back together; the
# last statement indexes what an older database already holds. Words are Unicode letters and
# digits, matched without case or diacritics; ``prefix`` indexes make a 2- or 3-letter prefix
# (search as you type) as fast as a whole word.
_V4 = """
ALTER TABLE messages ADD COLUMN model_path TEXT;
ALTER TABLE messages ADD COLUMN settings_json TEXT;
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content='messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2', prefix='2 3'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
"""

# AUTOINCREMENT keeps ids from being reused: a reply still streaming into a deleted conversation
# must never overwrite a newer message that happened to get the same id.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)


class SchemaTooNewError(Exception):
    """The database was written by a newer tui-llm whose schema this code does not know."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"schema version {found} is newer than {known}")
        self.found = found
        self.known = known


def statements(script: str) -> list[str]:
    """The statements of an SQL script, split where SQLite itself sees a statement end.

    ``executescript`` would commit any open transaction first, so scripts run statement by
    statement inside the migration's own transaction instead.
    """
    found: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:60]!r}")
    return found


def schema_version(db: sqlite3.Connection) -> int:
    """The database's ``PRAGMA user_version`` (0 for a new or empty file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)`` in one transaction; returns the version.

    Idempotent: an up-to-date database takes no write lock. The version is read again under the
    write lock, so two processes opening the same new file migrate it once. Any failure rolls
    every step back, leaving the database at its old version. ``db`` must be in autocommit mode
    (``isolation_level=None``). Raises ``SchemaTooNewError`` for a version above the known one.
    """
    if db.isolation_level is not None:
        raise ValueError("migrate() needs a connection opened with isolation_level=None")
    known = len(migrations)
    found = schema_version(db)
    if found > known:
        raise SchemaTooNewError(found, known)
    if found == known:
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(db)
        if found > known:
            raise SchemaTooNewError(found, known)
        for version in range(found, known):
            for statement in statements(migrations[version]):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {known:d}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise
    return known
