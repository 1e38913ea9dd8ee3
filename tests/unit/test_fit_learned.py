"""Learned corrections: a real load recorded beside its estimate, used for the next estimate."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import engine, settings
from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.protocol import BufferSize, LoadedEvent
from tui_llm.fit.estimate import NO_GPU, Estimate, EstimateSettings, estimate
from tui_llm.fit.learned import (
    NO_CORRECTION,
    correction_for,
    learned_path,
    record_load,
)


@pytest.fixture(scope="module")
def real_load(model_8l: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedEvent:
    """One real CPU load of the 8-layer model (its buffers as llama.cpp reported them)."""
    import asyncio

    from tui_llm.engine.client import EngineClient

    log = tmp_path_factory.mktemp("learned") / "engine.log"

    async def load() -> LoadedEvent:
        client = EngineClient(log_path=log)
        try:
            return await client.load(settings(model_8l), keep_kv=False)
        finally:
            await client.close()

    return asyncio.run(load())


def estimate_for(loaded: LoadedEvent) -> Estimate:
    info = read_model_info(loaded.settings.model_path)
    return estimate(info, EstimateSettings.from_load_settings(loaded.settings), NO_GPU)


def scaled(loaded: LoadedEvent, factors: dict[str, float]) -> LoadedEvent:
    """The same load as if llama.cpp had reported some kinds bigger."""
    buffers = tuple(
        BufferSize(b.device, b.kind, round(b.size_bytes * factors.get(b.kind, 1.0)))
        for b in loaded.buffers
    )
    return replace(loaded, buffers=buffers)


def test_a_real_load_is_recorded_with_a_small_error(
    real_load: LoadedEvent, caplog: pytest.LogCaptureFixture
) -> None:
    est = estimate_for(real_load)
    with caplog.at_level(logging.INFO, logger="tui_llm.fit.learned"):
        comparison = record_load(real_load, est)
    assert "memory at 0 layers" in caplog.text and "estimated" in caplog.text
    stored = json.loads(learned_path().read_text())
    (entry,) = stored["entries"].values()
    assert entry["offload_layers"] == 0 and entry["device"] == "none"
    for kind, ratio in comparison.ratios().items():
        assert ratio == pytest.approx(1.0, abs=0.03), kind
    assert entry["reported"]["cpu"]["kv"] == comparison.reported_cpu.kv


def test_the_next_estimate_is_corrected_kind_by_kind(real_load: LoadedEvent) -> None:
    est = estimate_for(real_load)
    bigger = scaled(real_load, {"compute": 1.2, "kv": 1.1})
    record_load(bigger, est)
    correction = correction_for(real_load.settings.model_path, real_load.settings)
    assert correction.samples == 1
    assert correction.compute == pytest.approx(1.2, rel=0.01)
    assert correction.kv == pytest.approx(1.1, rel=0.01)
    assert correction.weights == pytest.approx(1.0, abs=0.01)
    corrected = correction.apply(est.level(0))
    reported_compute = sum(b.size_bytes for b in bigger.buffers if b.kind == "compute")
    assert corrected.cpu.compute == pytest.approx(reported_compute, rel=0.001)

    # other settings of the same file only borrow the weights ratio
    other = correction_for(real_load.settings.model_path, replace(real_load.settings, n_ctx=4096))
    assert other.samples == 1 and other.compute == 1.0 and other.kv == 1.0

    # a changed file starts over
    stat = os.stat(real_load.settings.model_path)
    os.utime(real_load.settings.model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        assert correction_for(real_load.settings.model_path, real_load.settings) == NO_CORRECTION
    finally:
        os.utime(real_load.settings.model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_absurd_ratio_is_not_a_correction(real_load: LoadedEvent) -> None:
    record_load(scaled(real_load, {"compute": 5.0}), estimate_for(real_load))
    correction = correction_for(real_load.settings.model_path, real_load.settings)
    assert correction.compute == 1.0


def test_a_corrupt_file_is_set_aside_with_a_warning(
    real_load: LoadedEvent, caplog: pytest.LogCaptureFixture
) -> None:
    path = learned_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"version": 1, "entries": [truncated')
    with caplog.at_level(logging.WARNING, logger="tui_llm.fit.learned"):
        assert correction_for(real_load.settings.model_path, real_load.settings) == NO_CORRECTION
    assert "unreadable" in caplog.text
    kept = list(path.parent.glob(f"{path.name}.corrupt-*"))
    assert len(kept) == 1 and "truncated" in kept[0].read_text()
    record_load(real_load, estimate_for(real_load))
    assert json.loads(path.read_text())["version"] == 1


def test_writes_are_atomic_and_a_failed_write_is_only_logged(
    real_load: LoadedEvent, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    est = estimate_for(real_load)
    record_load(real_load, est)
    path = learned_path()
    before = path.read_text()

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("tui_llm.fit.learned.os.replace", refuse)
    with caplog.at_level(logging.WARNING, logger="tui_llm.fit.learned"):
        comparison = record_load(scaled(real_load, {"kv": 1.3}), est)
    assert comparison.offload_layers == 0
    assert "disk full" in caplog.text
    assert path.read_text() == before  # the old file is whole
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


async def test_recovery_records_each_real_load(model_8l: Path) -> None:
    """load_with_recovery stores the load, so the next estimate for this model is corrected."""
    from tui_llm.fit.recovery import load_with_recovery

    async with engine() as client:
        loaded, message = await load_with_recovery(client, settings(model_8l), None)
    assert message is None and loaded.offloaded_layers == 0
    assert correction_for(model_8l, settings(model_8l)).samples == 1
