"""The estimate for mixture-of-experts placements, against what llama.cpp allocates for real.

A generated qwen3moe model (and a qwen2moe one with a shared expert) is loaded by the engine at
every (GPU layers, expert layers on the CPU) pair with an RPC server on 127.0.0.1 as the GPU; the
bytes llama.cpp reports per device (model, KV and compute buffers) must equal the estimate as
llama.cpp's log rounds it (two decimals of a MiB). Then two RPC servers as two GPUs: a 1:3 split
puts the blocks and buffers where the estimate says, with and without pipeline parallelism.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tui_llm.catalog.generate import write_moe_gguf
from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.client import EngineClient
from tui_llm.engine.logparse import is_host_buffer
from tui_llm.engine.protocol import BufferSize, LoadedEvent, LoadSettings
from tui_llm.fit.auto import choose_placement
from tui_llm.fit.estimate import NO_GPU, RPC, EstimateSettings, MemorySplit, estimate

pytestmark = pytest.mark.rpc

MIB = 1 << 20
N_LAYER = 4
PAIRS = [(level, moe) for level in range(N_LAYER + 2) for moe in range(N_LAYER + 1)]
SPLIT_CASES = [(level, moe) for level in (3, 5) for moe in (0, 2)]


def as_logged(n: int) -> int:
    """A byte count as llama.cpp's log shows it (MiB, two decimals)."""
    return round(float(f"{n / MIB:.2f}") * MIB)


def by_device(buffers: tuple[BufferSize, ...]) -> dict[str, MemorySplit]:
    """Reported bytes per device: each RPC server by its buffer name, all host buffers as CPU."""
    sizes: dict[str, dict[str, int]] = {}
    for buf in buffers:
        name = "CPU" if is_host_buffer(buf.device) else buf.device
        kinds = sizes.setdefault(name, {"model": 0, "kv": 0, "compute": 0, "output": 0})
        if buf.kind in kinds:
            kinds[buf.kind] += buf.size_bytes
    return {
        name: MemorySplit(k["model"], k["kv"], k["compute"], k["output"])
        for name, k in sizes.items()
    }


def assert_same(estimated: MemorySplit, reported: MemorySplit, where: str) -> None:
    for kind in ("weights", "kv", "compute"):
        est, rep = getattr(estimated, kind), getattr(reported, kind)
        assert as_logged(est) == rep, f"{where} {kind}: estimated {est}, reported {rep}"


@dataclass(frozen=True)
class Loads:
    paths: dict[str, Path]
    loaded: dict[tuple[str, int, int], LoadedEvent]
    split: dict[tuple[int, int], LoadedEvent]
    servers: tuple[str, str]


@pytest.fixture(scope="module")
def loads(
    rpc_server: str, second_rpc_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Loads:
    """Every pair for both models on one RPC server, and the split cases over two."""
    folder = tmp_path_factory.mktemp("fit-moe")
    paths = {
        "qwen3moe": write_moe_gguf(folder / "q3moe.gguf", n_layer=N_LAYER, n_embd=128, seed=3),
        "qwen2moe": write_moe_gguf(
            folder / "q2moe.gguf", n_layer=N_LAYER, n_embd=128, n_ff_shexp=128, seed=2
        ),
    }

    async def load_all() -> tuple[
        dict[tuple[str, int, int], LoadedEvent], dict[tuple[int, int], LoadedEvent]
    ]:
        client = EngineClient(log_path=folder / "engine.log")
        out: dict[tuple[str, int, int], LoadedEvent] = {}
        split: dict[tuple[int, int], LoadedEvent] = {}
        try:
            for name, path in paths.items():
                for level, moe in PAIRS if name == "qwen3moe" else PAIRS[::3]:
                    settings = LoadSettings(
                        model_path=str(path),
                        n_threads=1,
                        n_ctx=512,
                        offload_layers=level,
                        n_cpu_moe=moe,
                        rpc_servers=(rpc_server,),
                    )
                    out[(name, level, moe)] = await client.load(settings, keep_kv=False)
            for level, moe in SPLIT_CASES:
                settings = LoadSettings(
                    model_path=str(paths["qwen3moe"]),
                    n_threads=1,
                    n_ctx=512,
                    offload_layers=level,
                    n_cpu_moe=moe,
                    rpc_servers=(rpc_server, second_rpc_server),
                    tensor_split=(1.0, 3.0),
                )
                split[(level, moe)] = await client.load(settings, keep_kv=False)
        finally:
            await client.close()
        return out, split

    loaded, split = asyncio.run(load_all())
    return Loads(paths, loaded, split, (rpc_server, second_rpc_server))


@pytest.mark.parametrize(("level", "moe"), PAIRS, ids=[f"L{a}-M{b}" for a, b in PAIRS])
def test_every_pair_on_the_rpc_device_is_exact(loads: Loads, level: int, moe: int) -> None:
    loaded = loads.loaded[("qwen3moe", level, moe)]
    assert loaded.offloaded_layers == level
    server = loads.servers[0]
    est = estimate(
        read_model_info(loads.paths["qwen3moe"]),
        EstimateSettings.from_load_settings(loaded.settings),
        replace(RPC, name=f"RPC0[{server}]"),
    ).pair(level, moe)
    reported = by_device(loaded.buffers)
    assert_same(est.cpu, reported["CPU"], "CPU")
    gpu = reported.get(f"RPC0[{server}]", MemorySplit())
    assert_same(est.gpu, gpu, "RPC0")


def test_shared_experts_stay_with_their_layer(loads: Loads) -> None:
    """qwen2moe: the shared expert and its gate are not moved by n_cpu_moe; every pair exact."""
    info = read_model_info(loads.paths["qwen2moe"])
    server = loads.servers[0]
    for (name, level, moe), loaded in loads.loaded.items():
        if name != "qwen2moe":
            continue
        est = estimate(
            info,
            EstimateSettings.from_load_settings(loaded.settings),
            replace(RPC, name=f"RPC0[{server}]"),
        ).pair(level, moe)
        reported = by_device(loaded.buffers)
        assert_same(est.cpu, reported["CPU"], f"L{level} M{moe} CPU")
        assert_same(est.gpu, reported.get(f"RPC0[{server}]", MemorySplit()), f"L{level} M{moe}")
    everything = estimate(info, EstimateSettings(n_ctx=512), RPC).pair(N_LAYER + 1, N_LAYER)
    shared = sum(b for n, b in info.tensor_bytes.items() if "_shexp" in n)
    assert everything.gpu.weights > shared


def test_cpu_only_matches_for_any_expert_count(loads: Loads) -> None:
    """Level 0 puts everything on the CPU whatever n_cpu_moe says, and the estimate agrees."""
    info = read_model_info(loads.paths["qwen3moe"])
    for moe in range(N_LAYER + 1):
        loaded = loads.loaded[("qwen3moe", 0, moe)]
        est = estimate(info, EstimateSettings.from_load_settings(loaded.settings), NO_GPU)
        assert_same(est.pair(0, moe).cpu, by_device(loaded.buffers)["CPU"], f"M{moe}")


def test_experts_in_ram_move_their_bytes_off_the_gpu(loads: Loads) -> None:
    """All layers offloaded: each expert layer kept on the CPU takes its experts off RPC0."""
    server = loads.servers[0]
    info = read_model_info(loads.paths["qwen3moe"])
    per_layer = sum(b for n, b in info.tensor_bytes.items() if n.startswith("blk.0.ffn_up_exps"))
    on_gpu = [
        by_device(loads.loaded[("qwen3moe", N_LAYER + 1, moe)].buffers)[f"RPC0[{server}]"]
        for moe in range(N_LAYER + 1)
    ]
    drops = [a.weights - b.weights for a, b in zip(on_gpu, on_gpu[1:], strict=False)]
    assert all(drop >= 3 * per_layer - 0.011 * MIB for drop in drops)


@pytest.mark.parametrize(("level", "moe"), SPLIT_CASES, ids=[f"L{a}-M{b}" for a, b in SPLIT_CASES])
def test_a_1_to_3_split_over_two_servers_is_exact_per_device(
    loads: Loads, level: int, moe: int
) -> None:
    loaded = loads.split[(level, moe)]
    devices = [replace(RPC, name=f"RPC0[{server}]") for server in loads.servers]
    est = estimate(
        read_model_info(loads.paths["qwen3moe"]),
        EstimateSettings.from_load_settings(loaded.settings),
        devices,
    ).pair(level, moe)
    reported = by_device(loaded.buffers)
    assert_same(est.cpu, reported["CPU"], "CPU")
    assert len(est.devices) == 2
    for name, split in est.devices:
        assert_same(split, reported.get(name, MemorySplit()), name)
    first, second = (split for _, split in est.devices)
    if level > N_LAYER:
        assert second.weights > first.weights  # three quarters of the blocks on the second


def test_auto_placement_spills_experts_before_layers(loads: Loads) -> None:
    """Given room for everything but one layer's experts, auto keeps every layer on the GPU and
    puts the fewest expert layers in RAM; the reason says so."""
    info = read_model_info(loads.paths["qwen3moe"])
    est = estimate(info, EstimateSettings(n_ctx=512), RPC)
    full = est.pair(N_LAYER + 1, 0).gpu.total
    one_out = est.pair(N_LAYER + 1, 1).gpu.total
    assert one_out < full
    choice = choose_placement(est, [one_out], margin_bytes=0, host_bytes=1 << 40)
    assert (choice.offload_layers, choice.n_cpu_moe) == (N_LAYER + 1, 1)
    assert "experts of the first 1 of 4 layers in RAM" in choice.reason
    assert "0 expert layers in RAM would need" in choice.reason
    too_little_ram = choose_placement(est, [one_out], margin_bytes=0, host_bytes=1 << 20)
    assert not too_little_ram.fits and too_little_ram.reason.startswith("too big")
