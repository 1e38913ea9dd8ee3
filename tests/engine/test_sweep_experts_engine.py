"""The offload sweep's expert levels through the real engine, a generated MoE model and the RPC
server on 127.0.0.1 as the GPU: the expert placements are measured beside the layer splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import engine, settings
from tests.unit.test_cli import tui_llm
from tui_llm.sweep import parse_levels
from tui_llm.sweep.records import MachineInfo
from tui_llm.sweep.run import SweepPlan, run_sweep

pytestmark = pytest.mark.rpc


def cpu_bytes(row_bytes: tuple[tuple[str, int], ...]) -> int:
    return sum(size for device, size in row_bytes if device.startswith("CPU"))


async def test_expert_levels_are_measured_at_the_vram_of_a_layer_split(
    moe_model: Path, rpc_server: str
) -> None:
    plan = SweepPlan(
        model_path=moe_model,
        total_layers=5,
        levels=tuple(parse_levels("4,all,experts,all:~2")),
        load=settings(moe_model, rpc_servers=(rpc_server,), use_mmap=False),
        prompt_tokens=16,
        gen_tokens=4,
        repeats=1,
        moe=True,
    )
    async with engine() as client:
        result = await run_sweep(
            client,
            plan,
            MachineInfo(cpu="test"),
            free_gpu_bytes=lambda: None,
            has_gpu_device=lambda: True,
        )
    rows = {row.label: row for row in result.levels}
    assert list(rows) == [
        "4",
        "all",
        "all, experts CPU all",
        "all, experts CPU 2 (VRAM of 4)",
        "all:~2",
    ]
    assert all(row.status == "ok" for row in result.levels[:4])
    assert rows["all:~2"].status == "skipped" and "all experts in RAM" in rows["all:~2"].reason
    matched = rows["all, experts CPU 2 (VRAM of 4)"]
    assert (matched.gpu_layers, matched.n_cpu_moe, matched.offloaded_layers) == (5, 2, 5)
    assert rows["all, experts CPU all"].n_cpu_moe == "all"
    # Experts in RAM: more on the CPU than with every layer's experts on the device.
    assert cpu_bytes(matched.bytes_by_device) > cpu_bytes(rows["all"].bytes_by_device)
    assert cpu_bytes(rows["all, experts CPU all"].bytes_by_device) > cpu_bytes(
        matched.bytes_by_device
    )


def test_bench_command_measures_expert_levels(moe_model: Path, rpc_server: str) -> None:
    result = tui_llm(
        "bench", str(moe_model), "--offload", "all,all:all", "--rpc", rpc_server,
        "--repeat", "1", "--prompt-tokens", "16", "--gen-tokens", "4", "--threads", "1",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(level["label"], level["n_cpu_moe"]) for level in data["levels"]] == [
        ("all", 0),
        ("all, experts CPU all", "all"),
    ]
    assert all(level["status"] == "ok" for level in data["levels"])
