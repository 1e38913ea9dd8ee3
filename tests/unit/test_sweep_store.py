"""Offload sweeps saved in the store's SQLite file: what is saved comes back whole, a model's
sweeps list newest first, and a database of the previous schema gains the table, its data kept."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.test_sweep import sample_result
from tui_llm.store import ConversationStore, StoreError, SweepStore
from tui_llm.store.migrations import MIGRATIONS, migrate, schema_version
from tui_llm.sweep import SweepResult


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "conversations.sqlite3"


@pytest.fixture
def file(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path) as opened:
        yield opened


def sweep_of(model_path: str, started: float, gen_tokens_per_s: float = 55.0) -> SweepResult:
    """The sample sweep, of ``model_path``, started at ``started``, its GPU level that fast."""
    result = sample_result()
    result.model_path = model_path
    result.started = started
    gpu = result.levels[1]
    assert gpu.gen_tokens_per_s is not None
    result.levels[1] = replace(
        gpu, gen_tokens_per_s=replace(gpu.gen_tokens_per_s, median=gen_tokens_per_s)
    )
    return result


def test_a_saved_sweep_loads_back_equal(file: ConversationStore) -> None:
    sweeps = SweepStore(file)
    result = sample_result()
    sweep_id = sweeps.save(result)
    stored = sweeps.load(sweep_id)
    assert stored.id == sweep_id
    assert stored.result == result
    assert stored.result.fastest() == result.levels[1]


def test_a_models_sweeps_list_newest_first_and_only_that_models(
    file: ConversationStore,
) -> None:
    sweeps = SweepStore(file)
    old = sweeps.save(sweep_of("/m/a.gguf", 1_000.0, gen_tokens_per_s=40.0))
    sweeps.save(sweep_of("/m/b.gguf", 2_000.0))
    new = sweeps.save(sweep_of("/m/a.gguf", 3_000.0, gen_tokens_per_s=60.0))
    listed = sweeps.list_for_model("/m/a.gguf")
    assert [s.id for s in listed] == [new, old]
    newest = listed[0]
    assert (newest.started, newest.levels) == (3_000.0, 3)
    assert (newest.fastest_label, newest.fastest_layers) == ("33", 33)
    assert newest.fastest_tokens_per_s == 60.0
    assert (newest.prompt_tokens, newest.gen_tokens, newest.repeats) == (512, 128, 3)
    assert sweeps.list_for_model("/m/a.gguf", limit=1)[0].id == new
    assert sweeps.list_for_model("/m/none.gguf") == []


def test_a_sweep_survives_a_restart_next_to_the_conversations(db_path: Path) -> None:
    with ConversationStore(db_path) as first:
        conversation = first.new_conversation("/m/a.gguf", "")
        first.add_message(conversation, "user", "kept too")
        sweep_id = SweepStore(first).save(sample_result())
    with ConversationStore(db_path) as second:
        assert SweepStore(second).load(sweep_id).result == sample_result()
        assert second.load(conversation).messages[0].content == "kept too"


def test_deleted_and_missing_sweeps(file: ConversationStore) -> None:
    sweeps = SweepStore(file)
    sweep_id = sweeps.save(sample_result())
    sweeps.delete(sweep_id)
    sweeps.delete(sweep_id)  # gone already: nothing happens
    assert sweeps.list_for_model("/m/model.gguf") == []
    with pytest.raises(StoreError) as error:
        sweeps.load(sweep_id)
    assert error.value.kind == "missing" and str(file.path) in str(error.value)


def test_an_unreadable_sweep_is_listed_as_such_and_says_so_on_load(
    file: ConversationStore, db_path: Path
) -> None:
    sweeps = SweepStore(file)
    good = sweeps.save(sample_result())
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute(
        "INSERT INTO sweeps (model_path, started, result_json) VALUES (?, ?, ?)",
        ("/m/model.gguf", 2e9, '{"levels": "not a sweep"}'),
    )
    other.close()
    listed = sweeps.list_for_model("/m/model.gguf")
    assert [(s.readable, s.fastest_label) for s in listed] == [(False, None), (True, "33")]
    with pytest.raises(StoreError, match="cannot be read") as error:
        sweeps.load(listed[0].id)
    assert "\n" not in str(error.value)
    assert sweeps.load(good).result == sample_result()  # the rest of the store is fine


def test_a_previous_version_database_gains_the_sweeps_table_and_keeps_its_data(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path, isolation_level=None)
    migrate(db, MIGRATIONS[:2])
    db.execute("INSERT INTO conversations (created, updated, model_path) VALUES (1, 1, 'm')")
    db.execute(
        "INSERT INTO messages (conversation_id, position, role, content, created, reasoning)"
        " VALUES (1, 0, 'assistant', 'from v2', 1, 'thought')"
    )
    db.close()
    with ConversationStore(db_path) as store:
        sweeps = SweepStore(store)
        sweep_id = sweeps.save(sample_result())
        assert [s.id for s in sweeps.list_for_model("/m/model.gguf")] == [sweep_id]
        (message,) = store.load(1).messages
        assert (message.content, message.reasoning) == ("from v2", "thought")
    reader = sqlite3.connect(db_path)
    assert schema_version(reader) == len(MIGRATIONS) == 4
    reader.close()
