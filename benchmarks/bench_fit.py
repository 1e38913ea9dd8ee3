"""Estimated memory against what llama.cpp reports when it really loads generated models.

Run: ``.venv/bin/python benchmarks/bench_fit.py [--rpc] [--markdown]``. Each row loads a
generated model with the engine (llama.cpp in its child process), reads the buffers llama.cpp
logs, and prints them beside ``tui_llm.fit.estimate`` for the same settings. With ``--rpc`` it
also starts an RPC server on 127.0.0.1 (llama.cpp's stand-in GPU) and compares the GPU and CPU
bytes at every offload level of an 8-layer model.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from tui_llm.catalog.generate import write_llama_gguf, write_moe_gguf
from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.client import EngineClient
from tui_llm.engine.logparse import is_host_buffer
from tui_llm.engine.protocol import BufferSize, LoadSettings
from tui_llm.fit.estimate import NO_GPU, RPC, EstimateSettings, LevelEstimate, estimate

# name -> write_llama_gguf arguments
SHAPES: dict[str, dict[str, object]] = {
    "2L x 64": {"n_layer": 2, "n_embd": 64},
    "8L x 128": {"n_layer": 8, "n_embd": 128},
    "8L x 256 GQA 8/2": {"n_layer": 8, "n_embd": 256, "n_head": 8, "n_head_kv": 2},
    "4L x 512 tied": {"n_layer": 4, "n_embd": 512, "n_head": 8, "tie_embeddings": True},
    "32L x 64": {"n_layer": 32, "n_embd": 64},
    "6L x 256 q8_0": {"n_layer": 6, "n_embd": 256, "n_head": 4, "tensor_type": "q8_0"},
}
# settings -> which shapes (head sizes must be a multiple of 32 for quantized KV)
SETTINGS: list[dict[str, object]] = [
    {"n_ctx": 256},
    {"n_ctx": 512},
    {"n_ctx": 1000},
    {"n_ctx": 2048},
    {"n_ctx": 4096},
    {"n_ctx": 8192},
    {"n_ctx": 2048, "flash_attn": True},
    {"n_ctx": 2048, "flash_attn": True, "kv_cache_type": "q8_0"},
    {"n_ctx": 4096, "flash_attn": True, "kv_cache_type": "q4_0"},
    {"n_ctx": 2048, "n_batch": 128, "n_ubatch": 128},
]
KINDS = ("model", "kv", "compute", "output")


@dataclass(frozen=True)
class Row:
    """One comparison: reported and estimated bytes of each kind, and totals."""

    shape: str
    setting: str
    reported: dict[str, int]
    estimated: dict[str, int]

    def error(self, kind: str) -> float:
        """Percent error of the estimate, rounded as llama.cpp's log rounds, against the log."""
        reported = self.reported[kind]
        if reported == 0:
            return 0.0
        return 100.0 * (as_logged(self.estimated[kind]) - reported) / reported

    def raw_error(self, kind: str) -> float:
        """Percent error of the unrounded estimate."""
        reported = self.reported[kind]
        return 0.0 if reported == 0 else 100.0 * (self.estimated[kind] - reported) / reported


def as_logged(n: int) -> int:
    """A byte count as llama.cpp prints it (MiB with two decimals) and logparse reads it back."""
    return round(float(f"{n / 2**20:.2f}") * 2**20)


def describe(setting: dict[str, object]) -> str:
    parts = [f"ctx {setting['n_ctx']}"]
    if setting.get("flash_attn"):
        parts.append("FA")
    parts.append(f"KV {setting.get('kv_cache_type', 'f16')}")
    if "n_ubatch" in setting:
        parts.append(f"ubatch {setting['n_ubatch']}")
    return ", ".join(parts)


def head_size(shape: dict[str, object]) -> int:
    return int(shape["n_embd"]) // int(shape.get("n_head", 4))  # type: ignore[call-overload]


def split(level: LevelEstimate, side: str) -> dict[str, int]:
    part = level.gpu if side == "gpu" else level.cpu
    return {"model": part.weights, "kv": part.kv, "compute": part.compute, "output": part.output}


def reported_by_kind(buffers: tuple[BufferSize, ...], host: bool) -> dict[str, int]:
    totals = dict.fromkeys(KINDS, 0)
    for buf in buffers:
        if is_host_buffer(buf.device) == host and buf.kind in totals:
            totals[buf.kind] += buf.size_bytes
    totals["total"] = sum(totals[k] for k in KINDS)
    return totals


async def cpu_rows(folder: Path) -> list[Row]:
    rows = []
    client = EngineClient()
    await client.start()
    try:
        for name, shape in SHAPES.items():
            model_file = folder / f"{name.replace(' ', '_')}.gguf"
            path = write_llama_gguf(model_file, seed=1, **shape)  # type: ignore[arg-type]
            info = read_model_info(path)
            for setting in SETTINGS:
                if setting.get("kv_cache_type") and head_size(shape) % 32:
                    continue
                load = LoadSettings(
                    model_path=str(path),
                    n_threads=1,
                    **setting,  # type: ignore[arg-type]
                )
                loaded = await client.load(load, keep_kv=False)
                est = estimate(info, EstimateSettings.from_load_settings(load), NO_GPU).level(0)
                estimated = split(est, "cpu")
                estimated["total"] = est.cpu.total
                rows.append(
                    Row(name, describe(setting), reported_by_kind(loaded.buffers, True), estimated)
                )
    finally:
        await client.close()
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rpc_server() -> Iterator[str]:
    """An RPC server on 127.0.0.1 backed by the CPU, as the tests' ``rpc_server`` fixture."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_llm", "rpc-server", "--port", str(port), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


async def rpc_rows(folder: Path, endpoint: str) -> list[Row]:
    path = write_llama_gguf(folder / "rpc-8l.gguf", n_layer=8, n_embd=128, seed=8)
    info = read_model_info(path)
    rows = []
    client = EngineClient()
    await client.start()
    try:
        for setting in ({"n_ctx": 512}, {"n_ctx": 2048, "flash_attn": True}):
            for level in range(info.n_layer + 2 if info.n_layer else 0):
                load = LoadSettings(
                    model_path=str(path),
                    n_threads=1,
                    rpc_servers=(endpoint,),
                    offload_layers=level,
                    **setting,  # type: ignore[arg-type]
                )
                est = estimate(info, EstimateSettings.from_load_settings(load), RPC)
                loaded = await client.load(load, keep_kv=False)
                for side, host in (("gpu", False), ("cpu", True)):
                    estimated = split(est.level(level), side)
                    estimated["total"] = sum(estimated.values())
                    rows.append(
                        Row(
                            f"8L x 128 level {level} {side.upper()}",
                            describe(setting),
                            reported_by_kind(loaded.buffers, host),
                            estimated,
                        )
                    )
    finally:
        await client.close()
    return rows


async def moe_rows(folder: Path, endpoint: str) -> list[Row]:
    """Every (GPU layers, expert layers on the CPU) pair of a 4-layer qwen3moe model, RPC0 and
    host buffers each."""
    path = write_moe_gguf(folder / "moe-4l.gguf", n_layer=4, n_embd=128, seed=3)
    info = read_model_info(path)
    device = replace(RPC, name=f"RPC0[{endpoint}]")
    n_layer = info.n_layer or 0
    rows = []
    client = EngineClient()
    await client.start()
    try:
        for level in range(n_layer + 2):
            for moe in range(n_layer + 1):
                load = LoadSettings(
                    model_path=str(path),
                    n_threads=1,
                    rpc_servers=(endpoint,),
                    offload_layers=level,
                    n_cpu_moe=moe,
                    n_ctx=512,
                )
                est = estimate(info, EstimateSettings.from_load_settings(load), device)
                loaded = await client.load(load, keep_kv=False)
                for side, host in (("gpu", False), ("cpu", True)):
                    estimated = split(est.pair(level, moe), side)
                    estimated["total"] = sum(estimated.values())
                    rows.append(
                        Row(
                            f"qwen3moe 4L layers {level} experts-on-CPU {moe} {side.upper()}",
                            "ctx 512, KV f16",
                            reported_by_kind(loaded.buffers, host),
                            estimated,
                        )
                    )
    finally:
        await client.close()
    return rows


def mib(n: int) -> str:
    return f"{n / 2**20:.2f}"


def table(rows: list[Row], markdown: bool) -> str:
    head = ["shape", "settings"]
    for kind in ("model", "kv", "compute", "total"):
        head += [f"{kind} rep MiB", f"{kind} est MiB", f"{kind} err %"]
    lines = []
    sep = " | " if markdown else "  "
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
    else:
        lines.append(sep.join(head))
    for row in rows:
        cells = [row.shape, row.setting]
        for kind in ("model", "kv", "compute", "total"):
            rep, est = row.reported[kind], row.estimated[kind]
            cells += [mib(rep), mib(est), f"{row.error(kind):+.2f}" if rep else "-"]
        lines.append(("| " + sep.join(cells) + " |") if markdown else sep.join(cells))
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    kinds = (*KINDS, "total")
    worst = {kind: max((abs(r.error(kind)) for r in rows), default=0.0) for kind in kinds}
    raw = {kind: max((abs(r.raw_error(kind)) for r in rows), default=0.0) for kind in kinds}
    return (
        "worst |error| (estimate rounded as the log rounds): "
        + ", ".join(f"{k} {v:.2f}%" for k, v in worst.items())
        + "\n\nworst |error| (unrounded estimate): "
        + ", ".join(f"{k} {v:.2f}%" for k, v in raw.items())
    )


@dataclass
class Comparison:
    """A run: the CPU rows, the RPC rows (``None`` without ``--rpc``), loads and seconds."""

    cpu: list[Row]
    rpc: list[Row] | None
    loads: int
    seconds: float
    moe: list[Row] | None = None


async def compare(with_rpc: bool) -> Comparison:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        cpu = await cpu_rows(folder)
        rpc = moe = None
        if with_rpc:
            with rpc_server() as endpoint:
                rpc = await rpc_rows(folder, endpoint)
                moe = await moe_rows(folder, endpoint)
        loads = len(cpu) + (len(rpc) // 2 if rpc else 0) + (len(moe) // 2 if moe else 0)
        return Comparison(cpu, rpc, loads, time.perf_counter() - started, moe)


def sections(comparison: Comparison, markdown: bool) -> dict[str, str]:
    """The comparison's tables and summaries by section of ``docs/fit-accuracy.md``."""
    out = {"fit.cpu": table(comparison.cpu, markdown) + "\n\n" + summary(comparison.cpu)}
    if comparison.rpc is not None:
        out["fit.rpc"] = table(comparison.rpc, markdown) + "\n\n" + summary(comparison.rpc)
    if comparison.moe is not None:
        out["fit.moe"] = table(comparison.moe, markdown) + "\n\n" + summary(comparison.moe)
    last = list(out)[-1]
    out[last] += f"\n\n{comparison.loads} loads in {comparison.seconds:.1f} s"
    return out


def collect(quick: bool) -> dict[str, str]:
    """The full comparison (it takes seconds: ``quick`` changes nothing), as Markdown."""
    return sections(asyncio.run(compare(with_rpc=True)), markdown=True)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rpc", action="store_true", help="also compare every offload level")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    parts = sections(await compare(args.rpc), args.markdown)
    print("CPU only (no GPU): every shape and setting\n")
    print(parts["fit.cpu"])
    if "fit.rpc" in parts:
        print("\nRPC device as the GPU: every offload level of an 8-layer model\n")
        print(parts["fit.rpc"])
    if "fit.moe" in parts:
        print("\nMixture of experts: every (layers, expert layers on the CPU) pair on RPC0\n")
        print(parts["fit.moe"])
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
