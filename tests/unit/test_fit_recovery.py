"""Recovery from a load that ran out of memory: the sequence of levels, and the retry loop.

The loop runs here against a fake client whose "GPU" holds a given number of layers (the real
allocation failure is in tests/engine/test_estimate_rpc.py, with a capped RPC server).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import ErrorKind, LoadedEvent, LoadSettings
from tui_llm.fit.auto import MIB
from tui_llm.fit.estimate import CUDA, Estimate, EstimateSettings, estimate
from tui_llm.fit.recovery import (
    load_with_recovery,
    next_offload,
    recovery_message,
    recovery_sequence,
)


@pytest.fixture(scope="module")
def est_32(model_32l: Path) -> Estimate:
    return estimate(read_model_info(model_32l), EstimateSettings(n_ctx=512), CUDA)


class FakeEngine:
    """Loads succeed up to ``holds`` layers; above that they fail with ``kind``."""

    def __init__(self, holds: int, kind: ErrorKind = "out_of_memory") -> None:
        self.holds = holds
        self.kind: ErrorKind = kind
        self.tried: list[int] = []
        self.ready = None

    async def load(
        self,
        settings: LoadSettings,
        on_progress: Callable[[float], None] | None = None,
        keep_kv: bool = True,
    ) -> LoadedEvent:
        offload = settings.offload_layers
        level = 33 if offload == "all" else int(offload)
        self.tried.append(level)
        if level > self.holds:
            raise EngineError(self.kind, f"cannot load: failed to allocate ({level} layers)")
        return LoadedEvent(0, settings, 32, level, 33, (), (), "gguf", None, 0.1, 0, 2048)


def test_without_an_estimate_each_step_gives_up_a_quarter() -> None:
    assert recovery_sequence(20) == [20, 15, 11, 8, 6, 4, 0]  # six failures, then CPU only
    assert next_offload(1) == 0
    assert next_offload(0) is None


def test_the_estimate_guides_the_next_level(est_32: Estimate) -> None:
    failed = 30
    following = next_offload(failed, est_32)
    assert following is not None and following < failed
    assert est_32.level(following).gpu.total <= 0.85 * est_32.level(failed).gpu.total
    assert est_32.level(following + 1).gpu.total > 0.85 * est_32.level(failed).gpu.total


def test_known_free_memory_jumps_straight_under_it(est_32: Estimate) -> None:
    """A level chosen by hand above the free memory falls to what fits, in one step."""
    free = est_32.level(10).gpu.total + 64 * MIB
    assert next_offload(33, est_32, free_gpu_bytes=free, margin_bytes=64 * MIB) == 10


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=40),
    free=st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 34)),
)
def test_sequences_always_go_down_and_end_at_zero(
    est_32: Estimate, start: int, free: int | None
) -> None:
    for guide in (None, est_32):
        levels = recovery_sequence(start, guide, free, 0)
        assert levels[0] == start and levels[-1] == 0
        assert all(b < a for a, b in itertools.pairwise(levels))
        assert len(levels) <= 7


async def test_out_of_memory_retries_lower_until_it_loads(
    est_32: Estimate, model_32l: Path
) -> None:
    engine = FakeEngine(holds=12)
    settings = LoadSettings(model_path=str(model_32l), n_ctx=512, offload_layers="all")
    loaded, message = await load_with_recovery(
        engine, settings, None, estimate=est_32, record=False
    )
    assert engine.tried[0] == 33 and engine.tried[-1] <= 12
    assert all(b < a for a, b in itertools.pairwise(engine.tried))
    assert loaded.settings.offload_layers == engine.tried[-1]
    assert message is not None and message.startswith("all 33")
    assert message.endswith(f"did not fit, loaded with {engine.tried[-1]}")


async def test_an_engine_crash_during_load_is_retried_too(
    est_32: Estimate, model_32l: Path
) -> None:
    engine = FakeEngine(holds=20, kind="crashed")
    settings = LoadSettings(model_path=str(model_32l), n_ctx=512, offload_layers=24)
    loaded, message = await load_with_recovery(
        engine, settings, None, estimate=est_32, record=False
    )
    assert engine.tried[0] == 24 and loaded.offloaded_layers <= 20
    assert message == recovery_message(engine.tried[:-1], engine.tried[-1], 33)


async def test_a_load_that_fits_says_nothing(est_32: Estimate, model_32l: Path) -> None:
    engine = FakeEngine(holds=33)
    settings = LoadSettings(model_path=str(model_32l), n_ctx=512, offload_layers=16)
    loaded, message = await load_with_recovery(engine, settings, None, estimate=est_32)
    assert engine.tried == [16] and message is None and loaded.offloaded_layers == 16


async def test_failing_on_the_cpu_too_is_raised_not_looped(model_32l: Path) -> None:
    engine = FakeEngine(holds=-1)
    settings = LoadSettings(model_path=str(model_32l), n_ctx=512, offload_layers=8)
    with pytest.raises(EngineError) as caught:
        await load_with_recovery(engine, settings, None, record=False)
    assert caught.value.kind == "out_of_memory"
    assert engine.tried[-1] == 0 and len(engine.tried) == len(set(engine.tried))


async def test_other_errors_are_not_retried(model_32l: Path) -> None:
    engine = FakeEngine(holds=0, kind="bad_model")
    settings = LoadSettings(model_path=str(model_32l), n_ctx=512, offload_layers=8)
    with pytest.raises(EngineError):
        await load_with_recovery(engine, settings, None, record=False)
    assert engine.tried == [8]


def test_messages() -> None:
    assert recovery_message([20], 16, 33) == "20 layers did not fit, loaded with 16"
    assert recovery_message([33, 20], 16, 33) == "all 33 and 20 layers did not fit, loaded with 16"
    assert recovery_message([1], 0, 33) == "1 layer did not fit, loaded on the CPU only"
