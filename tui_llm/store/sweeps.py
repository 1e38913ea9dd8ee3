"""Offload sweeps saved in the store's SQLite file: save one, list a model's, load one.

A sweep is kept whole as its ``SweepResult`` JSON (``SweepResult.to_json``), with the model's path
and the start time in their own columns for listing; the table comes from migration 3. This is
a view on the file a ``ConversationStore`` (or any ``SQLiteFile``) keeps: the same connection,
lock and error rules (one writer, short transactions, every failure a one-line ``StoreError``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tui_llm.store.records import StoreError, storable
from tui_llm.store.sqlite_file import SQLiteFile
from tui_llm.sweep.records import SweepResult


@dataclass(frozen=True)
class SweepSummary:
    """One row of a model's sweep list.

    ``levels`` counts the rows measured or skipped; ``fastest_label`` and
    ``fastest_tokens_per_s`` name the level with the highest generation tokens/s (``None`` when
    none was measured, or when the saved JSON cannot be read: then ``readable`` is false).
    """

    id: int
    model_path: str
    started: float  # seconds since the epoch
    levels: int
    prompt_tokens: int
    gen_tokens: int
    repeats: int
    fastest_label: str | None
    fastest_layers: int | None
    fastest_tokens_per_s: float | None
    readable: bool = True


@dataclass(frozen=True)
class StoredSweep:
    """A saved sweep: its id in the store and what it measured."""

    id: int
    result: SweepResult


def _result(sweep_id: int, text: str, where: str) -> SweepResult:
    try:
        data = json.loads(text)
        return SweepResult.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"sweep {sweep_id} in {where} cannot be read: {exc!r}") from exc


class SweepStore:
    """The sweeps in ``file`` (opened on first use, like every store call)."""

    def __init__(self, file: SQLiteFile) -> None:
        self._file = file

    @property
    def path(self) -> str:
        return str(self._file.path)

    def save(self, result: SweepResult) -> int:
        """Keep a sweep; returns its id."""
        text = storable(json.dumps(result.to_json(), separators=(",", ":")))
        with self._file._transaction("saving a sweep", write=True) as db:
            cursor = db.execute(
                "INSERT INTO sweeps (model_path, started, result_json) VALUES (?, ?, ?)",
                (storable(result.model_path), result.started, text),
            )
            return int(cursor.lastrowid or 0)

    def list_for_model(self, model_path: str, limit: int | None = 50) -> list[SweepSummary]:
        """The sweeps of the model at ``model_path``, newest first."""
        with self._file._transaction("listing sweeps") as db:
            rows = db.execute(
                "SELECT id, model_path, started, result_json FROM sweeps WHERE model_path = ?"
                " ORDER BY started DESC, id DESC LIMIT ?",
                (storable(model_path), -1 if limit is None else limit),
            ).fetchall()
        return [self._summary(*row) for row in rows]

    def load(self, sweep_id: int) -> StoredSweep:
        """One sweep; ``StoreError`` (kind ``missing``) if gone, (``io``) if unreadable."""
        with self._file._transaction("loading a sweep") as db:
            row = db.execute("SELECT result_json FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise StoreError(f"sweep {sweep_id} is not in {self.path}", "missing")
        return StoredSweep(sweep_id, _result(sweep_id, row[0], self.path))

    def delete(self, sweep_id: int) -> None:
        """Forget a sweep; deleting a missing one does nothing."""
        with self._file._transaction("deleting a sweep", write=True) as db:
            db.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,))

    def _summary(self, sweep_id: int, model_path: str, started: float, text: str) -> SweepSummary:
        try:
            result = _result(sweep_id, text, self.path)
        except StoreError:
            return SweepSummary(
                sweep_id, model_path, started, 0, 0, 0, 0, None, None, None, readable=False
            )
        fastest = result.fastest()
        settings = result.settings
        return SweepSummary(
            id=sweep_id,
            model_path=model_path,
            started=started,
            levels=len(result.levels),
            prompt_tokens=settings.prompt_tokens,
            gen_tokens=settings.gen_tokens,
            repeats=settings.repeats,
            fastest_label=fastest.label if fastest else None,
            fastest_layers=fastest.gpu_layers if fastest else None,
            fastest_tokens_per_s=(
                fastest.gen_tokens_per_s.median if fastest and fastest.gen_tokens_per_s else None
            ),
        )
