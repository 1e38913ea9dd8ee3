"""The estimate's GPU/CPU split at every offload level, against an RPC device for real.

The RPC server on 127.0.0.1 is llama.cpp's stand-in for a GPU (``RPC0[...]``): what llama.cpp
reports on it (model, KV and compute buffers) is compared with the estimate's GPU bytes at every
level 0 .. n_layer+1, and the host buffers with its CPU bytes. Then the automatic level is loaded
for real, and a load that really runs out of device memory (an RPC server whose address space is
capped) recovers with fewer layers.
"""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.logparse import is_host_buffer
from tui_llm.engine.protocol import BufferSize, LoadedEvent, LoadSettings
from tui_llm.fit.auto import choose_offload
from tui_llm.fit.estimate import RPC, EstimateSettings, MemorySplit, estimate
from tui_llm.fit.recovery import load_with_recovery

pytestmark = pytest.mark.rpc

MIB = 1 << 20
N_LAYER = 8
SETTINGS: dict[str, dict[str, object]] = {
    "ctx512": {"n_ctx": 512},
    "ctx2048-fa": {"n_ctx": 2048, "flash_attn": True},
    "ctx1024-no-kqv-offload": {"n_ctx": 1024, "offload_kqv": False},
}
CASES = [(name, level) for name in SETTINGS for level in range(N_LAYER + 2)]


def as_logged(n: int) -> int:
    """A byte count as llama.cpp's log shows it (MiB, two decimals)."""
    return round(float(f"{n / MIB:.2f}") * MIB)


def split(buffers: tuple[BufferSize, ...], host: bool) -> MemorySplit:
    sizes = {"model": 0, "kv": 0, "compute": 0, "output": 0}
    for buf in buffers:
        if is_host_buffer(buf.device) == host and buf.kind in sizes:
            sizes[buf.kind] += buf.size_bytes
    return MemorySplit(sizes["model"], sizes["kv"], sizes["compute"], sizes["output"])


def close_to(estimated: int, reported: int, share: float) -> bool:
    """Within ``share``, after rounding the estimate as the log rounds (a buffer may hold
    several tensors, each rounded up separately: allow one log unit per side)."""
    return abs(as_logged(estimated) - reported) <= max(share * reported, 0.011 * MIB)


@dataclass(frozen=True)
class Levels:
    path: Path
    loaded: dict[tuple[str, int], LoadedEvent]


@pytest.fixture(scope="module")
def levels(rpc_server: str, tmp_path_factory: pytest.TempPathFactory) -> Levels:
    """An 8-layer model loaded at every level under each setting, by one engine process."""
    folder = tmp_path_factory.mktemp("fit-rpc")
    path = write_llama_gguf(folder / "rpc-8l.gguf", n_layer=N_LAYER, n_embd=128, seed=8)

    async def load_all() -> dict[tuple[str, int], LoadedEvent]:
        client = EngineClient(log_path=folder / "engine.log")
        out = {}
        try:
            for name, level in CASES:
                settings = LoadSettings(
                    model_path=str(path),
                    n_threads=1,
                    offload_layers=level,
                    rpc_servers=(rpc_server,),
                    **SETTINGS[name],  # type: ignore[arg-type]
                )
                out[(name, level)] = await client.load(settings, keep_kv=False)
        finally:
            await client.close()
        return out

    return Levels(path, asyncio.run(load_all()))


@pytest.mark.parametrize(("setting", "level"), CASES, ids=[f"{s}-L{n}" for s, n in CASES])
def test_gpu_and_cpu_bytes_at_every_level(levels: Levels, setting: str, level: int) -> None:
    loaded = levels.loaded[(setting, level)]
    assert loaded.offloaded_layers == level
    est = estimate(
        read_model_info(levels.path), EstimateSettings.from_load_settings(loaded.settings), RPC
    ).level(level)
    gpu, cpu = split(loaded.buffers, host=False), split(loaded.buffers, host=True)
    for side, estimated, reported in (("GPU", est.gpu, gpu), ("CPU", est.cpu, cpu)):
        detail = f"{side}: estimated {estimated}, reported {reported}"
        assert close_to(estimated.weights, reported.weights, 0.02), detail
        assert close_to(estimated.kv, reported.kv, 0.02), detail
        assert close_to(estimated.compute, reported.compute, 0.05), detail
        assert close_to(estimated.total, reported.total, 0.05), detail


def test_nothing_on_the_gpu_at_level_0_and_only_token_embd_left_at_all(levels: Levels) -> None:
    none = split(levels.loaded[("ctx512", 0)].buffers, host=False)
    full_cpu = split(levels.loaded[("ctx512", N_LAYER + 1)].buffers, host=True)
    assert none.total == 0
    info = read_model_info(levels.path)
    assert abs(full_cpu.weights - info.tensor_bytes["token_embd.weight"]) <= 0.011 * MIB
    assert full_cpu.kv == 0


async def test_auto_level_loads_within_the_free_memory_it_was_given(
    rpc_server: str, model_8l: Path
) -> None:
    """Free memory for 5 levels' worth: auto picks 5, and the device really holds no more."""
    base = LoadSettings(model_path=str(model_8l), n_ctx=512, n_threads=1, rpc_servers=(rpc_server,))
    est = estimate(read_model_info(model_8l), EstimateSettings.from_load_settings(base), RPC)
    margin = 1 * MIB
    free = est.level(5).gpu.total + margin + 1000
    choice = choose_offload(est, free, margin_bytes=margin, check_host=False)
    assert choice.offload_layers == 5 and choice.label == "5/9 layers"
    client = EngineClient()
    try:
        loaded = await client.load(replace(base, offload_layers=choice.offload_layers))
    finally:
        await client.close()
    on_device = split(loaded.buffers, host=False).total
    assert 0 < on_device <= free - margin + 0.011 * MIB


# ---- a real out-of-memory on the device, and recovery ---------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _virtual_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


@pytest.fixture
def capped_rpc_server(tmp_path: Path) -> Iterator[str]:
    """An RPC server that can allocate only ~180 MiB more: its buffers fail like a full GPU's."""
    if not sys.platform.startswith("linux"):
        pytest.skip("capping another process's address space needs Linux prlimit")
    port = _free_port()
    with open(tmp_path / "rpc.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui_llm", "rpc-server", "--port", str(port), "--threads", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the capped rpc-server did not start")
                time.sleep(0.1)
        cap = _virtual_size(proc.pid) + 180 * MIB
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (cap, cap))
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


class RecordingClient:
    """An EngineClient that remembers which levels were tried and how each ended."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.tries: list[tuple[int, str]] = []

    @property
    def ready(self) -> object:
        return self.client.ready

    async def load(
        self,
        settings: LoadSettings,
        on_progress: Callable[[float], None] | None = None,
        keep_kv: bool = True,
    ) -> LoadedEvent:
        level = int(settings.offload_layers)
        try:
            loaded = await self.client.load(settings, on_progress=on_progress, keep_kv=keep_kv)
        except EngineError as exc:
            self.tries.append((level, exc.kind))
            raise
        self.tries.append((level, "loaded"))
        return loaded


async def test_a_load_that_runs_out_of_device_memory_recovers_with_fewer_layers(
    capped_rpc_server: str, tmp_path: Path
) -> None:
    # 64 MiB of KV cache per layer: a few layers fit the capped server, most do not
    path = write_llama_gguf(tmp_path / "long-ctx.gguf", n_layer=8, n_embd=256, seed=3)
    settings = LoadSettings(
        model_path=str(path),
        n_ctx=65536,
        n_batch=64,
        n_ubatch=64,
        flash_attn=True,
        n_threads=1,
        rpc_servers=(capped_rpc_server,),
    )
    est = estimate(read_model_info(path), EstimateSettings.from_load_settings(settings), RPC)
    claimed_free = 300 * MIB  # what a device might report; the cap leaves far less
    first = choose_offload(est, claimed_free, margin_bytes=0, check_host=False).offload_layers
    assert first >= 4
    client = RecordingClient(EngineClient())
    try:
        loaded, message = await load_with_recovery(
            client,
            replace(settings, offload_layers=first),
            claimed_free,
            estimate=est,
            margin_bytes=0,
            keep_kv=False,
            record=False,
        )
    finally:
        await client.client.close()
    tried = [level for level, _ in client.tries]
    assert tried[0] == first and tried == sorted(tried, reverse=True)
    assert len(set(tried)) == len(tried)  # strictly decreasing: never the same level twice
    assert [kind for _, kind in client.tries[:-1]] == ["out_of_memory"] * (len(tried) - 1)
    assert client.tries[-1][1] == "loaded"
    assert 0 < loaded.offloaded_layers == tried[-1] < first
    assert message is not None
    assert re.fullmatch(
        r"\d+( and \d+|(, \d+)+ and \d+)? layers did not fit, loaded with \d+", message
    )
    listed = [int(n) for n in re.findall(r"\d+", message.split(" layers")[0])]
    assert listed == tried[:-1] and message.endswith(f"loaded with {tried[-1]}")
    assert split(loaded.buffers, host=False).kv > 0
