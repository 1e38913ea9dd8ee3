"""One SQLite file a store keeps: opened with WAL and checked, migrated, one writer under a lock,
SQLite errors turned into one-line ``StoreError``s, and a damaged file moved aside on request.

A damaged or too-new database is never changed: the store stays unusable until ``recover()``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from tui_llm.store import migrations
from tui_llm.store.records import StoreError


def _is_corruption(exc: sqlite3.Error) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = str(exc)
    return (
        name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or "not a database" in text
    )


def _is_busy(exc: sqlite3.Error) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


_File = TypeVar("_File", bound="SQLiteFile")


class SQLiteFile:
    """The file under a store; ``clock`` gives timestamps (seconds since the epoch),
    ``busy_timeout_s`` how long a write waits for another writer; ``default_path`` gives the
    file when ``path`` is None (called at first use, not at construction)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        default_path: Callable[[], Path],
    ) -> None:
        self._path = path
        self._default_path = default_path
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._failure: StoreError | None = None
        self._lock = threading.RLock()

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file (the default one is resolved here, not at construction)."""
        return self._path if self._path is not None else self._default_path()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        """Open (creating file and folder if needed) and migrate; raises ``StoreError``."""
        with self._lock:
            self._connection()

    def close(self) -> None:
        """Close the connection; a later call opens it again (and retries a failed open)."""
        with self._lock:
            self._failure = None
            self._close_connection()

    def __enter__(self: _File) -> _File:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def recover(self) -> Path | None:
        """Move a damaged database aside and start a new one; returns where the old one went.

        The file (and its ``-wal``/``-shm`` companions) becomes
        ``conversations.sqlite3.corrupt-<timestamp>``. A database that opens fine is left alone
        (returns ``None``); a too-new one is not damaged, so its ``StoreError`` is raised again.
        """
        with self._lock:
            self.close()
            try:
                self._connection()
            except StoreError as exc:
                if exc.kind != "corrupt":
                    raise
            else:
                return None
            self.close()
            moved = self._move_aside()
            self._connection()
            return moved

    @contextmanager
    def _transaction(self, doing: str, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; SQLite errors become ``StoreError``.

        Writes take the write lock at the start (``BEGIN IMMEDIATE``) so they wait for another
        writer up front instead of failing halfway; reads see one consistent snapshot.
        """
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                try:
                    if db.in_transaction:
                        db.rollback()
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, doing) from exc
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self._failure is not None:
            raise self._failure
        try:
            self._db = self._open_database()
        except StoreError as exc:
            if exc.kind in ("corrupt", "too_new"):
                self._failure = exc
            raise
        return self._db

    def _open_database(self) -> sqlite3.Connection:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of conversation store {path}: {exc.strerror or exc}"
            ) from exc
        try:
            db = sqlite3.connect(
                path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "opening") from exc
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000):d}")
            db.execute("PRAGMA foreign_keys = ON")
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise StoreError(
                    f"conversation store {path} is damaged ({verdict}); it was left as it is",
                    "corrupt",
                )
            db.execute("PRAGMA journal_mode = WAL").fetchone()
            db.execute("PRAGMA synchronous = NORMAL")
            migrations.migrate(db)
        except migrations.SchemaTooNewError as exc:
            db.close()
            raise StoreError(
                f"conversation store {path} was written by a newer tui-llm (schema version"
                f" {exc.found}, this one knows {exc.known}); conversations will not be saved",
                "too_new",
            ) from exc
        except sqlite3.Error as exc:
            db.close()
            raise self._error(exc, "opening") from exc
        except BaseException:
            db.close()
            raise
        return db

    def _close_connection(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        with suppress(sqlite3.Error):
            db.execute("PRAGMA optimize")
        db.close()

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """The ``StoreError`` for an SQLite error; a damaged file also closes the store."""
        if _is_corruption(exc):
            error = StoreError(
                f"conversation store {self.path} is damaged ({exc}); it was left as it is",
                "corrupt",
            )
            self._failure = error
            with suppress(sqlite3.Error):
                self._close_connection()
            return error
        if _is_busy(exc):
            return StoreError(
                f"conversation store {self.path} is busy (another tui-llm may be writing): {exc}",
                "busy",
            )
        return StoreError(f"conversation store {self.path}: {doing} failed: {exc}")

    def _move_aside(self) -> Path:
        """Rename the damaged database and its WAL companions; returns the new main file."""
        path = self.path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        counter = 1
        while any(
            Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm", "-journal")
        ):
            counter += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        try:
            for suffix in ("-wal", "-shm", "-journal", ""):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    os.replace(source, f"{target}{suffix}")
        except OSError as exc:
            raise StoreError(
                f"cannot move damaged conversation store {path} aside: {exc.strerror or exc}"
            ) from exc
        return target
