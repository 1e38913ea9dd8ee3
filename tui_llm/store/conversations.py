"""Conversations saved in SQLite as they happen, so nothing the user wrote is lost in a crash.

One file (``data_dir()/conversations.sqlite3`` by default) in WAL mode with ``synchronous=NORMAL``:
a committed call survives the app or the engine dying (a power cut may lose the last moments).
The schema is versioned by ``PRAGMA user_version`` (see ``migrations``).

Threading: the store holds one connection, the only writer. Every method is one short transaction
(milliseconds), so the caller may call it directly or from a worker thread; calls are serialised by
a lock, so worker threads taking turns are safe, but use one store per database file. Other
connections (a second tui-llm) may read at any time and wait up to ``busy_timeout_s`` to write.

Every failure is a ``StoreError`` whose message is one line naming the file. A damaged or
too-new database is never changed: the store stays unusable (the app goes on without saving)
until ``recover()`` is called, which moves a damaged file aside and starts a new one.

The record types, ``StoreError`` and the value conversions live in ``records``; the schema and its
migrations in ``migrations``; opening, locking, error mapping and recovery of the file in
``sqlite_file``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tui_llm import paths
from tui_llm.engine.protocol import ReplyStats, SamplingParams
from tui_llm.store.records import (
    UNTITLED,
    ConversationSummary,
    Role,
    StoredConversation,
    StoredMessage,
    StoreError,
    auto_title,
    check_role,
    stats_from_json,
    stats_json,
    storable,
)
from tui_llm.store.search import SearchHit, find_conversations, parse_query
from tui_llm.store.sqlite_file import SQLiteFile

DATABASE_NAME = "conversations.sqlite3"
_TITLE_SOURCE_CHARS = 4000  # enough of the first user message to find its first line


def default_path() -> Path:
    """Where conversations are saved by default."""
    return paths.data_dir() / DATABASE_NAME


_SUMMARY_SELECT = """
SELECT c.id, c.title, c.created, c.updated, c.model_path,
    (SELECT COUNT(*) FROM messages AS m WHERE m.conversation_id = c.id),
    (SELECT substr(m.content, 1, ?) FROM messages AS m
        WHERE m.conversation_id = c.id AND m.role = 'user' ORDER BY m.position LIMIT 1)
FROM conversations AS c
"""
_SUMMARY_ORDER = "ORDER BY c.updated DESC, c.id DESC LIMIT ?"


class ConversationStore(SQLiteFile):
    """Saved conversations in one SQLite file; opened by ``open()``, ``with``, or the first call.

    See the module docstring for threading and failure rules, ``SQLiteFile`` for the file's
    lifecycle (open, close, recover) and the constructor's arguments.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            path, busy_timeout_s=busy_timeout_s, clock=clock, default_path=default_path
        )

    # ---- writing ------------------------------------------------------------------------------

    def new_conversation(
        self, model_path: str | None = None, system_prompt: str = "", *, title: str | None = None
    ) -> int:
        """Start a conversation; returns its id."""
        now = self._clock()
        with self._transaction("saving a new conversation", write=True) as db:
            cursor = db.execute(
                "INSERT INTO conversations (title, created, updated, model_path, system_prompt)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    self._clean_title(title),
                    now,
                    now,
                    storable(model_path) if model_path is not None else None,
                    storable(system_prompt),
                ),
            )
            return int(cursor.lastrowid or 0)

    def add_message(
        self,
        conversation_id: int,
        role: Role,
        content: str,
        *,
        partial: bool = False,
        stats: Mapping[str, Any] | ReplyStats | None = None,
        model_path: str | None = None,
        settings: Mapping[str, Any] | SamplingParams | None = None,
    ) -> int:
        """Append a message at the end of a conversation; returns the message id.

        A reply records the model that writes it (``model_path``) and its sampling ``settings``.
        """
        check_role(role)
        stats_text = stats_json(stats)
        stored = storable(content)
        now = self._clock()
        with self._transaction("saving a message", write=True) as db:
            self._touch(db, conversation_id, now)
            (position,) = db.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM messages WHERE conversation_id = ?",
                (conversation_id,),
            ).fetchone()
            cursor = db.execute(
                "INSERT INTO messages (conversation_id, position, role, content, created,"
                " partial, stats_json, model_path, settings_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    position,
                    role,
                    stored,
                    now,
                    int(partial),
                    stats_text,
                    storable(model_path) if model_path is not None else None,
                    stats_json(settings),
                ),
            )
            return int(cursor.lastrowid or 0)

    def update_message(
        self,
        message_id: int,
        content: str,
        *,
        partial: bool,
        stats: Mapping[str, Any] | ReplyStats | None = None,
        reasoning: str = "",
    ) -> None:
        """Replace a message's content, thinking, partial flag and stats (``None`` clears them).

        A streaming reply is added with ``partial=True`` as soon as it starts, updated while it
        streams, and updated with ``partial=False`` and its stats when it finishes.
        """
        stats_text = stats_json(stats)
        with self._transaction("saving a reply", write=True) as db:
            row = db.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"message {message_id} is no longer in {self.path}", "missing")
            db.execute(
                "UPDATE messages SET content = ?, reasoning = ?, partial = ?, stats_json = ?"
                " WHERE id = ?",
                (storable(content), storable(reasoning), int(partial), stats_text, message_id),
            )
            self._touch(db, int(row[0]), self._clock())

    def delete_messages_from(self, conversation_id: int, position: int) -> int:
        """Delete the messages at ``position`` and after (regenerate, edit); returns how many."""
        with self._transaction("deleting messages", write=True) as db:
            cursor = db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                (conversation_id, position),
            )
            if cursor.rowcount:
                self._touch(db, conversation_id, self._clock())
            return cursor.rowcount

    def set_title(self, conversation_id: int, title: str | None) -> None:
        """Name a conversation; ``None`` or a blank title goes back to the automatic one."""
        self._set_column(conversation_id, "title", self._clean_title(title))

    def set_system_prompt(self, conversation_id: int, system_prompt: str) -> None:
        self._set_column(conversation_id, "system_prompt", storable(system_prompt))

    def set_model_path(self, conversation_id: int, model_path: str | None) -> None:
        self._set_column(
            conversation_id, "model_path", storable(model_path) if model_path else None
        )

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its messages; deleting a missing one does nothing."""
        with self._transaction("deleting a conversation", write=True) as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # ---- reading ------------------------------------------------------------------------------

    def list_conversations(self, limit: int | None = 50) -> list[ConversationSummary]:
        """Conversations, most recently changed first."""
        with self._transaction("listing conversations") as db:
            rows = db.execute(
                f"{_SUMMARY_SELECT} {_SUMMARY_ORDER}",
                (_TITLE_SOURCE_CHARS, -1 if limit is None else limit),
            ).fetchall()
        return [self._summary(row) for row in rows]

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Conversations whose messages (or given title) hold every word of ``text``, each with
        the line that matched; see ``search`` for what a word is and the order. No word in
        ``text`` (blank, punctuation only) finds nothing."""
        query = parse_query(storable(text))
        if query is None:
            return []
        with self._transaction("searching conversations") as db:
            return find_conversations(db, query, limit, lambda ids: self._summaries(db, ids))

    def load(self, conversation_id: int) -> StoredConversation:
        """A conversation with all its messages; ``StoreError`` (kind ``missing``) if gone."""
        with self._transaction("loading a conversation") as db:
            head = db.execute(
                "SELECT id, title, created, updated, model_path, system_prompt"
                " FROM conversations WHERE id = ?",
                (conversation_id,),
            ).fetchone()
            if head is None:
                raise StoreError(f"conversation {conversation_id} is not in {self.path}", "missing")
            rows = db.execute(
                "SELECT id, position, role, content, partial, stats_json, created, reasoning,"
                " model_path, settings_json"
                " FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        messages = [
            StoredMessage(
                id=row[0],
                position=row[1],
                role=row[2],
                content=row[3],
                partial=bool(row[4]),
                stats=stats_from_json(row[5]),
                created=row[6],
                reasoning=row[7],
                model_path=row[8],
                settings=stats_from_json(row[9]),
            )
            for row in rows
        ]
        first_user = next((m.content for m in messages if m.role == "user"), None)
        return StoredConversation(
            id=head[0],
            title=head[1] or auto_title(first_user) or UNTITLED,
            model_path=head[4],
            system_prompt=head[5],
            created=head[2],
            updated=head[3],
            messages=messages,
            custom_title=head[1],
        )

    def ids_created_at(self, created: float) -> list[int]:
        """The conversations started at exactly ``created`` (seconds since the epoch)."""
        with self._transaction("looking up conversations") as db:
            rows = db.execute(
                "SELECT id FROM conversations WHERE created = ? ORDER BY id", (created,)
            ).fetchall()
        return [row[0] for row in rows]

    def restore(self, conversation: StoredConversation) -> int:
        """Save a copy of ``conversation`` as a new one; returns its id.

        Everything is kept (title as given, timestamps, each message's thinking, partial flag,
        stats, model and settings) except the ids, which this database assigns; positions
        become 0, 1, 2... in the order given. One transaction: all of it or nothing.
        """
        for message in conversation.messages:
            check_role(message.role)
        with self._transaction("importing a conversation", write=True) as db:
            cursor = db.execute(
                "INSERT INTO conversations (title, created, updated, model_path, system_prompt)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    self._clean_title(conversation.custom_title),
                    conversation.created,
                    conversation.updated,
                    storable(conversation.model_path) if conversation.model_path else None,
                    storable(conversation.system_prompt),
                ),
            )
            conversation_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO messages (conversation_id, position, role, content, created,"
                " partial, stats_json, reasoning, model_path, settings_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        conversation_id,
                        position,
                        message.role,
                        storable(message.content),
                        message.created,
                        int(message.partial),
                        stats_json(message.stats),
                        storable(message.reasoning),
                        storable(message.model_path) if message.model_path else None,
                        stats_json(message.settings),
                    )
                    for position, message in enumerate(conversation.messages)
                ),
            )
            return conversation_id

    # ---- internals ----------------------------------------------------------------------------

    def _summaries(
        self, db: sqlite3.Connection, ids: Sequence[int]
    ) -> dict[int, ConversationSummary]:
        """The list rows of the conversations ``ids``, by id."""
        found: dict[int, ConversationSummary] = {}
        for start in range(0, len(ids), 500):  # within SQLite's limit on parameters
            chunk = list(ids[start : start + 500])
            rows = db.execute(
                f"{_SUMMARY_SELECT} WHERE c.id IN ({', '.join('?' for _ in chunk)})",
                (_TITLE_SOURCE_CHARS, *chunk),
            ).fetchall()
            found.update((row[0], self._summary(row)) for row in rows)
        return found

    def _summary(self, row: tuple[Any, ...]) -> ConversationSummary:
        return ConversationSummary(
            id=row[0],
            title=row[1] or auto_title(row[6]) or UNTITLED,
            created=row[2],
            updated=row[3],
            message_count=row[5],
            model_path=row[4],
        )

    @staticmethod
    def _clean_title(title: str | None) -> str | None:
        """A title on one line, or ``None`` (automatic) when blank."""
        cleaned = " ".join(storable(title).split()) if title is not None else ""
        return cleaned or None

    def _touch(self, db: sqlite3.Connection, conversation_id: int, now: float) -> None:
        """Mark a conversation changed; ``StoreError`` (missing) when it does not exist."""
        cursor = db.execute(
            "UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id)
        )
        if cursor.rowcount == 0:
            raise StoreError(f"conversation {conversation_id} is not in {self.path}", "missing")

    def _set_column(self, conversation_id: int, column: str, value: str | None) -> None:
        with self._transaction(f"saving the {column.replace('_', ' ')}", write=True) as db:
            cursor = db.execute(
                f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id)
            )
            if cursor.rowcount == 0:
                raise StoreError(f"conversation {conversation_id} is not in {self.path}", "missing")
