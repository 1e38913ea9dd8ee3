"""The memory estimate against the buffers llama.cpp reports when it really loads the model.

Generated models of several shapes are loaded by the real engine (one engine process for the
whole module) under several context sizes, KV cache types and flash attention on and off; the
estimate must match what llama.cpp logs: total within 5%, weights and KV each within 2%. llama.cpp
prints sizes in MiB with two decimals, so the estimate is rounded the same way before comparing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import pytest

from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.metadata import ModelInfo, read_model_info
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.logparse import is_host_buffer
from tui_llm.engine.protocol import BufferSize, LoadSettings
from tui_llm.fit.estimate import (
    CUDA,
    NO_GPU,
    EstimateSettings,
    MemorySplit,
    estimate,
    problems_with,
)

MIB = 1 << 20

SHAPES: dict[str, dict[str, object]] = {
    "2L-64": {"n_layer": 2, "n_embd": 64},
    "8L-128": {"n_layer": 8, "n_embd": 128},
    "8L-256-gqa": {"n_layer": 8, "n_embd": 256, "n_head": 8, "n_head_kv": 2},
    "4L-512-tied": {"n_layer": 4, "n_embd": 512, "n_head": 8, "tie_embeddings": True},
    "32L-64": {"n_layer": 32, "n_embd": 64},
    "6L-256-q8_0": {"n_layer": 6, "n_embd": 256, "tensor_type": "q8_0"},
}
SETTINGS: dict[str, dict[str, object]] = {
    "ctx256": {"n_ctx": 256},
    "ctx512": {"n_ctx": 512},
    "ctx1000": {"n_ctx": 1000},  # padded to 1024 cells
    "ctx2048": {"n_ctx": 2048},
    "ctx4096": {"n_ctx": 4096},
    "ctx2048-fa": {"n_ctx": 2048, "flash_attn": True},
    "ctx2048-fa-q8_0": {"n_ctx": 2048, "flash_attn": True, "kv_cache_type": "q8_0"},
    "ctx4096-fa-q4_0": {"n_ctx": 4096, "flash_attn": True, "kv_cache_type": "q4_0"},
    "ctx2048-ubatch128": {"n_ctx": 2048, "n_batch": 128, "n_ubatch": 128},
}


def head_size(shape: dict[str, object]) -> int:
    return int(str(shape["n_embd"])) // int(str(shape.get("n_head", 4)))


CASES = [
    (shape, setting)
    for shape in SHAPES
    for setting in SETTINGS
    # quantized KV caches need head sizes that are a multiple of their 32-element blocks
    if "kv_cache_type" not in SETTINGS[setting] or head_size(SHAPES[shape]) % 32 == 0
]


def as_logged(n: int) -> int:
    """A byte count as llama.cpp's log shows it (MiB, two decimals) and logparse reads it back."""
    return round(float(f"{n / MIB:.2f}") * MIB)


def host_split(buffers: tuple[BufferSize, ...]) -> MemorySplit:
    sizes = {"model": 0, "kv": 0, "compute": 0, "output": 0}
    for buf in buffers:
        if is_host_buffer(buf.device) and buf.kind in sizes:
            sizes[buf.kind] += buf.size_bytes
    return MemorySplit(sizes["model"], sizes["kv"], sizes["compute"], sizes["output"])


def within(estimated: int, reported: int, share: float) -> bool:
    """Whether the estimate, rounded as the log rounds, is within ``share`` of the report."""
    return abs(as_logged(estimated) - reported) <= share * reported


@dataclass(frozen=True)
class Loaded:
    info: ModelInfo
    settings: LoadSettings
    reported: MemorySplit


@pytest.fixture(scope="module")
def loads(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Loaded]:
    """Every case loaded for real by one engine process (a few seconds in all)."""
    folder = tmp_path_factory.mktemp("fit-models")
    paths = {
        name: write_llama_gguf(folder / f"{name}.gguf", seed=1, **shape)  # type: ignore[arg-type]
        for name, shape in SHAPES.items()
    }

    async def load_all() -> dict[tuple[str, str], Loaded]:
        client = EngineClient(log_path=folder / "engine.log")
        await client.start()
        out = {}
        try:
            for shape, setting in CASES:
                settings = LoadSettings(
                    model_path=str(paths[shape]),
                    n_threads=1,
                    **SETTINGS[setting],  # type: ignore[arg-type]
                )
                loaded = await client.load(settings, keep_kv=False)
                info = read_model_info(paths[shape])
                out[(shape, setting)] = Loaded(info, settings, host_split(loaded.buffers))
        finally:
            await client.close()
        return out

    return asyncio.run(load_all())


@pytest.mark.parametrize(("shape", "setting"), CASES, ids=[f"{a}-{b}" for a, b in CASES])
def test_estimate_matches_what_llama_cpp_allocates(
    loads: dict[tuple[str, str], Loaded], shape: str, setting: str
) -> None:
    case = loads[(shape, setting)]
    est = estimate(case.info, EstimateSettings.from_load_settings(case.settings), NO_GPU)
    level = est.level(0)
    reported = case.reported
    assert level.gpu.total == 0
    assert within(level.cpu.weights, reported.weights, 0.02), (level.cpu, reported)
    assert within(level.cpu.kv, reported.kv, 0.02), (level.cpu, reported)
    assert within(level.cpu.compute, reported.compute, 0.05), (level.cpu, reported)
    assert within(level.cpu.total, reported.total, 0.05), (level.cpu, reported)


def test_no_gpu_means_every_level_is_the_cpu(loads: dict[tuple[str, str], Loaded]) -> None:
    """Without a GPU llama.cpp ignores the offload count, and so does the estimate."""
    case = loads[("8L-128", "ctx512")]
    est = estimate(case.info, EstimateSettings.from_load_settings(case.settings), NO_GPU)
    assert {lv.cpu for lv in est.levels} == {est.level(0).cpu}
    assert all(lv.gpu.total == 0 for lv in est.levels)


def test_offload_order_output_layer_first_then_last_blocks(
    loads: dict[tuple[str, str], Loaded],
) -> None:
    info = loads[("8L-128", "ctx512")].info
    est = estimate(info, EstimateSettings(n_ctx=512), CUDA)
    bytes_of = info.tensor_bytes
    output_layer = bytes_of["output.weight"] + bytes_of["output_norm.weight"]
    block = sum(size for name, size in bytes_of.items() if name.startswith("blk.7."))
    level1, level2 = est.level(1).gpu, est.level(2).gpu
    assert level1.kv == 0 and level1.weights == pytest.approx(output_layer, rel=0.01)
    assert level2.weights - level1.weights == pytest.approx(block, rel=0.01)
    assert level2.kv > 0
    # token_embd never leaves the CPU
    assert est.level(est.max_level).cpu.weights == pytest.approx(
        bytes_of["token_embd.weight"], rel=0.01
    )


def test_tied_embeddings_are_duplicated_on_the_gpu(loads: dict[tuple[str, str], Loaded]) -> None:
    info = loads[("4L-512-tied", "ctx512")].info
    assert "output.weight" not in info.tensor_bytes
    est = estimate(info, EstimateSettings(n_ctx=512), CUDA)
    embd = info.tensor_bytes["token_embd.weight"]
    assert est.level(1).gpu.weights >= embd
    assert est.level(est.max_level).cpu.weights == pytest.approx(embd, rel=0.01)


def test_context_is_padded_to_256_cells(loads: dict[tuple[str, str], Loaded]) -> None:
    info = loads[("8L-128", "ctx1000")].info
    assert estimate(info, EstimateSettings(n_ctx=1000), NO_GPU).kv_cells == 1024
    kv_1000 = estimate(info, EstimateSettings(n_ctx=1000), NO_GPU).level(0).cpu.kv
    kv_1024 = estimate(info, EstimateSettings(n_ctx=1024), NO_GPU).level(0).cpu.kv
    assert kv_1000 == kv_1024


def test_gqa_kv_uses_the_kv_heads(loads: dict[tuple[str, str], Loaded]) -> None:
    """8 query heads, 2 KV heads: the cache is a quarter of a full-attention one."""
    info = loads[("8L-256-gqa", "ctx2048")].info
    kv = estimate(info, EstimateSettings(n_ctx=2048), NO_GPU).level(0).cpu.kv
    assert kv == 8 * 2 * 2048 * (2 * 32) * 2  # layers x (K, V) x cells x kv width x f16


def test_settings_llama_cpp_refuses_are_reported(
    loads: dict[tuple[str, str], Loaded], tmp_path: Path
) -> None:
    """A quantized V cache without flash attention, and blocks that do not divide the head."""
    info = loads[("2L-64", "ctx512")].info
    found = problems_with(info, EstimateSettings(type_k="q8_0", type_v="q8_0"))
    assert any("flash attention" in p for p in found)
    assert any("head size 16" in p for p in found)
    assert problems_with(info, EstimateSettings()) == ()

    async def load_refused() -> str:
        client = EngineClient(log_path=tmp_path / "engine.log")
        try:
            await client.load(
                LoadSettings(model_path=str(info.path), n_ctx=512, kv_cache_type="q8_0"),
                keep_kv=False,
            )
        except EngineError as exc:
            return str(exc)
        finally:
            await client.close()
        return ""

    assert asyncio.run(load_refused()), "llama.cpp loaded what the estimate said it refuses"


def write_split_copy(source: Path, folder: Path, max_tensors: int) -> list[Path]:
    """Rewrite a model as shards named as llama.cpp's gguf-split names them."""
    reader = gguf.GGUFReader(source)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(folder / "split.gguf", arch, split_max_tensors=max_tensors)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), value_type, sub_type)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(folder.glob("split-*-of-*.gguf"))


def test_split_model_counts_every_shard(
    loads: dict[tuple[str, str], Loaded], tmp_path: Path
) -> None:
    whole = loads[("8L-128", "ctx512")]
    shards = write_split_copy(whole.info.path, tmp_path, max_tensors=30)
    assert len(shards) == 3
    info = read_model_info(shards[1])
    settings = LoadSettings(model_path=str(shards[0]), n_ctx=512, n_threads=1)

    async def load() -> tuple[BufferSize, ...]:
        client = EngineClient(log_path=tmp_path / "engine.log")
        try:
            return (await client.load(settings, keep_kv=False)).buffers
        finally:
            await client.close()

    buffers = asyncio.run(load())
    mapped = [b for b in buffers if b.kind == "model"]
    assert len(mapped) == 3  # one mapping per shard
    est = estimate(info, EstimateSettings.from_load_settings(settings), NO_GPU).level(0).cpu
    reported = sum(b.size_bytes for b in mapped)
    assert abs(est.weights - reported) <= 0.02 * reported
    assert est.weights == pytest.approx(whole.reported.weights, rel=0.02)


def write_sparse_llama(
    path: Path, *, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int, n_vocab: int
) -> Path:
    """A full-size Q8_0 llama header whose data region is a hole (no disk, no time)."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(n_layer)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_context_length(8192)
    writer.add_vocab_size(n_vocab)
    q8 = gguf.GGMLQuantizationType.Q8_0
    head = n_embd // n_head
    shapes = [
        ("token_embd.weight", (n_vocab, n_embd)),
        ("output_norm.weight", (n_embd,)),
        ("output.weight", (n_vocab, n_embd)),
    ]
    for il in range(n_layer):
        shapes += [
            (f"blk.{il}.attn_norm.weight", (n_embd,)),
            (f"blk.{il}.attn_q.weight", (n_embd, n_embd)),
            (f"blk.{il}.attn_k.weight", (n_head_kv * head, n_embd)),
            (f"blk.{il}.attn_v.weight", (n_head_kv * head, n_embd)),
            (f"blk.{il}.attn_output.weight", (n_embd, n_embd)),
            (f"blk.{il}.ffn_norm.weight", (n_embd,)),
            (f"blk.{il}.ffn_gate.weight", (n_ff, n_embd)),
            (f"blk.{il}.ffn_up.weight", (n_ff, n_embd)),
            (f"blk.{il}.ffn_down.weight", (n_embd, n_ff)),
        ]
    for name, shape in shapes:
        if len(shape) == 1:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            stored = gguf.quant_shape_to_byte_shape(shape, q8)
            writer.add_tensor_info(
                name, stored, np.dtype(np.uint8), stored[0] * stored[1], raw_dtype=q8
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    info_end = path.stat().st_size
    data = sum(-(-size // 32) * 32 for size in _sizes(shapes, q8))
    with open(path, "r+b") as handle:
        handle.truncate(-(-info_end // 32) * 32 + data)
    return path


def _sizes(shapes: list[tuple[str, tuple[int, ...]]], q8: gguf.GGMLQuantizationType) -> list[int]:
    out = []
    for _, shape in shapes:
        if len(shape) == 1:
            out.append(shape[0] * 4)
        else:
            stored = gguf.quant_shape_to_byte_shape(shape, q8)
            out.append(stored[0] * stored[1])
    return out


def test_estimating_a_realistic_model_is_quick(tmp_path: Path) -> None:
    """An 8B-shaped header (32 layers, 4096 wide, GQA) estimates fast (the browser asks often)."""
    import time

    path = write_sparse_llama(
        tmp_path / "8b.gguf",
        n_layer=32,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        n_ff=14336,
        n_vocab=128256,
    )
    info = read_model_info(path)
    started = time.perf_counter()
    est = estimate(info, EstimateSettings(n_ctx=8192), CUDA)
    assert time.perf_counter() - started < 2.0
    assert len(est.levels) == 34
    gpu = [lv.gpu.total for lv in est.levels]
    assert gpu == sorted(gpu)
    full = est.level(est.max_level)
    # 8B at Q8_0 is ~8 GB of weights; KV for 8192 cells is 1 GiB in f16
    assert 7.5e9 < full.gpu.weights < 8.5e9
    assert full.gpu.kv == 32 * 2 * 8192 * 1024 * 2
