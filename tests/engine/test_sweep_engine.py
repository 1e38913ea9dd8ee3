"""The offload sweep through the real engine, with the RPC server on 127.0.0.1 as the device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tests.unit.test_cli import tui_llm
from tui_llm.engine.protocol import SamplingParams
from tui_llm.sweep import LevelResult, parse_levels
from tui_llm.sweep.records import MachineInfo
from tui_llm.sweep.run import SweepCancel, SweepPlan, run_sweep

MACHINE = MachineInfo(cpu="test")


async def test_bench_request_measures_prompt_and_generation(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        first = await client.bench(64, 16, seed=1)
        assert (first.prompt_tokens, first.gen_tokens) == (64, 16)
        assert first.prompt_tokens_per_s > 0 and first.gen_tokens_per_s > 0
        assert 0 < first.prompt_s < first.first_token_s
        # The context is free again afterwards: a reply still works.
        reply = await client.chat([user("hi")], SamplingParams(temperature=0, max_tokens=4))
        assert reply.stats.prompt_tokens_evaluated == reply.stats.prompt_tokens


async def test_bench_that_does_not_fit_the_context_is_refused(model_8l: Path) -> None:
    from tui_llm.engine.client import EngineError

    async with engine() as client:
        await client.load(settings(model_8l, n_ctx=64))
        with pytest.raises(EngineError, match="do not fit the context of 64"):
            await client.bench(64, 16)


def plan_for(model: Path, levels: str, **load: object) -> SweepPlan:
    return SweepPlan(
        model_path=model,
        total_layers=9,
        levels=tuple(parse_levels(levels)),
        load=settings(model, **load),
        prompt_tokens=32,
        gen_tokens=8,
        repeats=2,
    )


async def test_without_a_gpu_device_only_cpu_only_is_measured(model_8l: Path) -> None:
    async with engine() as client:
        result = await run_sweep(
            client,
            plan_for(model_8l, "0,4,all"),
            MACHINE,
            free_gpu_bytes=lambda: None,
            has_gpu_device=lambda: False,
        )
    assert [(r.label, r.status) for r in result.levels] == [
        ("0", "ok"),
        ("4", "skipped"),
        ("all", "skipped"),
    ]
    assert result.levels[1].reason == "no GPU device: every layer stays on the CPU"


@pytest.mark.rpc
async def test_sweep_moves_layers_to_the_device_and_cancel_stops_it(
    model_8l: Path, rpc_server: str
) -> None:
    rows: list[LevelResult] = []
    cancel = SweepCancel()

    def on_level(row: LevelResult) -> None:
        rows.append(row)
        if len(rows) == 2:
            cancel.set()

    async with engine() as client:
        result = await run_sweep(
            client,
            plan_for(model_8l, "0,all,4", rpc_servers=(rpc_server,)),
            MACHINE,
            free_gpu_bytes=lambda: None,
            has_gpu_device=lambda: True,
            on_level=on_level,
            cancel=cancel,
        )
    assert rows == result.levels
    cpu, full, stopped = result.levels
    assert (cpu.status, full.status, stopped.status) == ("ok", "ok", "cancelled")
    assert full.offloaded_layers == 9
    assert any(device.startswith("RPC") for device, _ in full.bytes_by_device)
    assert not any(device.startswith("RPC") for device, _ in cpu.bytes_by_device)
    assert full.gen_tokens_per_s is not None and full.gen_tokens_per_s.low > 0
    assert result.speedup(full) is not None
    assert any(d.name.startswith("RPC") for d in result.machine.devices)


@pytest.mark.rpc
def test_bench_command_prints_a_json_table(model_8l: Path, rpc_server: str) -> None:
    result = tui_llm(
        "bench", str(model_8l), "--offload", "0,all", "--rpc", rpc_server, "--repeat", "1",
        "--prompt-tokens", "32", "--gen-tokens", "8", "--threads", "1", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [level["label"] for level in data["levels"]] == ["0", "all"]
    assert all(level["status"] == "ok" for level in data["levels"])
    assert data["settings"]["prompt_tokens"] == 32 and data["machine"]["llama_cpp_python"]


def test_bench_command_refuses_a_bad_level_list(model_8l: Path) -> None:
    result = tui_llm("bench", str(model_8l), "--offload", "eight")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("tui-llm: error: --offload: 'eight' is not a level")


async def test_the_conversation_cache_survives_a_sweep_into_the_next_load(model_8l: Path) -> None:
    """After benchmarks overwrite the context, the load that applies a level carries the
    conversation's KV cache as any offload change does."""
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    first_turn = [user("a question with a few words in it")]
    async with engine() as client:
        await client.load(settings(model_8l))
        reply = await client.chat(first_turn, greedy)
        await client.bench(32, 8)
        await client.load(settings(model_8l, n_threads=2), keep_kv=False)  # a sweep level
        await client.bench(32, 8)
        applied = await client.load(settings(model_8l, n_threads=2))  # apply, keep_kv
        assert applied.kv_restored_tokens == reply.n_past
        again = await client.load(settings(model_8l))
        assert again.kv_restored_tokens == reply.n_past  # carried on, as by any reload


async def test_a_clean_load_of_the_same_model_keeps_the_conversation_aside(
    model_8l: Path,
) -> None:
    """A sweep's first level is a clean load; the load that ends the sweep carries the chat."""
    async with engine() as client:
        await client.load(settings(model_8l))
        reply = await client.chat([user("keep me")], SamplingParams(temperature=0, max_tokens=6))
        await client.load(settings(model_8l, n_threads=2), keep_kv=False)
        assert (await client.bench(16, 4)).gen_tokens == 4
        back = await client.load(settings(model_8l))
        assert back.kv_restored_tokens == reply.n_past


async def test_an_engine_crash_at_one_level_is_recorded_and_the_sweep_goes_on(
    model_8l: Path,
) -> None:
    """The engine dies during a level's measurement: that row says so, the next level loads in
    a new engine and is measured."""
    import signal

    async with engine() as client:
        killed: list[int | None] = []

        def on_progress(text: str) -> None:
            if text == "0: run 1 of 2" and not killed:
                killed.append(client.pid)
                client.kill(signal.SIGKILL)

        result = await run_sweep(
            client,
            plan_for(model_8l, "0,2"),
            MACHINE,
            free_gpu_bytes=lambda: None,
            has_gpu_device=lambda: True,  # a CPU build accepts any level (and offloads nothing)
            on_progress=on_progress,
        )
        assert killed and client.pid not in killed  # the second level ran in a new engine
    crashed, measured = result.levels
    assert (crashed.status, measured.status) == ("failed", "ok")
    assert "the engine process killed by SIGKILL" in crashed.reason
