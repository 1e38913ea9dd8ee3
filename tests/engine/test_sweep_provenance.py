"""The sweep's figures are the measurements of the engine process the app uses, nothing else:
each row is made of the ``BenchEvent``\\ s that the given ``EngineClient``'s child sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from benchmarks.bench_sweep import RecordingEngine, rows_match_events
from tests.helpers import settings
from tui_llm.sweep import Spread, parse_levels
from tui_llm.sweep.machine import machine_info
from tui_llm.sweep.run import SweepPlan, run_sweep

REPO = Path(__file__).resolve().parents[2]


async def test_sweep_rows_are_the_bench_events_of_the_engine_it_was_given(
    model_8l: Path, tmp_path: Path
) -> None:
    client = RecordingEngine(tmp_path / "engine.log")
    ready = await client.start()
    try:
        plan = SweepPlan(
            model_path=model_8l,
            total_layers=9,
            levels=tuple(parse_levels("0")),
            load=settings(model_8l),
            prompt_tokens=32,
            gen_tokens=8,
            repeats=3,
        )
        result = await run_sweep(
            client,
            plan,
            machine_info(ready),
            free_gpu_bytes=lambda: None,
            has_gpu_device=lambda: False,
        )
        pid = client.pid
        assert pid is not None
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        await client.close()

    # The process that answered is the app's engine: the worker module of this checkout,
    # writing the log the client named; it reported its own pid and build.
    assert ready.pid == pid
    assert argv[1:4] == [b"-m", b"tui_llm.engine.worker", str(tmp_path / "engine.log").encode()]
    assert any(v.startswith(f"PYTHONPATH={REPO}".encode()) for v in environ)
    assert model_8l.name in (tmp_path / "engine.log").read_text(errors="replace")
    assert result.machine.llama_cpp_python == ready.llama_cpp_version

    # One warm-up (seed -1), then one measurement per repeat (seeds 0, 1, 2).
    assert [seed for seed, _ in client.events] == [-1, 0, 1, 2]
    measured = [event for seed, event in client.events if seed >= 0]
    assert all((e.prompt_tokens, e.gen_tokens) == (32, 8) for e in measured)
    (row,) = result.levels
    assert row.status == "ok"
    assert row.gen_tokens_per_s == Spread.of([e.gen_tokens_per_s for e in measured])
    assert row.prompt_tokens_per_s == Spread.of([e.prompt_tokens_per_s for e in measured])
    assert row.time_to_first_token_s == Spread.of([e.first_token_s for e in measured])

    # The benchmark's own check (it prints "yes") says the same, and can say no.
    assert rows_match_events(row, measured)
    assert not rows_match_events(row, measured[:2])
    assert not rows_match_events(row, [client.events[0][1]])
    slower = dataclasses.replace(measured[0], gen_s=measured[0].gen_s * 2)
    assert not rows_match_events(row, [slower, *measured[1:]])
