"""Engine faults through the whole app (docs/reliability.md, "Engine faults"): a signal to the
engine or its RPC server at load, prompt processing and streaming is said within a bounded time,
the conversation and the partial reply are kept, F5 brings a new engine that answers.

The default run holds one case per kind of device; ``pytest -m long`` runs the whole table."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.reliability.engine_faults import (
    STALL_TIMEOUT_S,
    FaultCase,
    FaultOutcome,
    all_cases,
    run_case,
)
from benchmarks.reliability.harness import RpcServer
from tui_llm.engine.client import STOP_TIMEOUT_S, STOP_WAIT_S

CRASH_SAID_WITHIN_S = 2.0
"""A process that died is seen at once (its pipe closes); the margin is for a loaded machine."""


def check(outcome: FaultOutcome) -> None:
    print(f"\n{outcome}")
    assert not outcome.error, outcome.error
    assert outcome.detected_s is not None, outcome.message
    bound = CRASH_SAID_WITHIN_S
    if outcome.case.target == "engine" and outcome.case.sig == signal.SIGSTOP:
        bound += STALL_TIMEOUT_S
    elif outcome.case.sig == signal.SIGSTOP:  # the RPC server: Esc, then the stop deadline
        bound += STOP_WAIT_S + STOP_TIMEOUT_S
    assert outcome.detected_s < bound, outcome
    assert outcome.kept, outcome
    if outcome.case.phase == "streaming":
        assert outcome.partial_chars > 0, outcome
    assert outcome.recovered_s is not None and outcome.replied, outcome
    assert outcome.leftovers == 0, outcome


@pytest.fixture
def own_rpc_server(tmp_path: Path) -> Iterator[RpcServer]:
    """An RPC server these tests may kill (the session's is shared)."""
    with RpcServer(tmp_path / "rpc.log") as server:
        yield server


async def test_engine_killed_mid_reply_on_the_cpu(smollm2: Path) -> None:
    outcome = await run_case(FaultCase("engine", signal.SIGKILL, "streaming", "cpu"), smollm2, None)
    check(outcome)
    assert "SIGKILL" in outcome.message


@pytest.mark.rpc
async def test_rpc_server_killed_mid_reply(smollm2: Path, own_rpc_server: RpcServer) -> None:
    case = FaultCase("rpc-server", signal.SIGKILL, "streaming", "rpc")
    outcome = await run_case(case, smollm2, own_rpc_server)
    check(outcome)
    assert f"the connection to the RPC server at {own_rpc_server.address} dropped" in (
        outcome.message
    )


@pytest.mark.long
@pytest.mark.rpc
@pytest.mark.parametrize("case", all_cases(), ids=lambda case: case.label)
async def test_every_fault(case: FaultCase, smollm2: Path, own_rpc_server: RpcServer) -> None:
    check(await run_case(case, smollm2, own_rpc_server if case.device == "rpc" else None))
