"""Mutated GGUF files through the real engine: llama.cpp's own failures stop at the process.

The reader refuses most damaged files before llama.cpp sees them; what it accepts (a layer count
of 100,000, a token id past the vocabulary, bits flipped in a name) goes to llama.cpp, which may
refuse it, run it, or abort. An abort kills only the engine child: the client reports it as a
``crashed`` error and a new engine loads the next file. ``pytest -m long -s`` on this file runs
200 mutants and prints the figures kept in docs/reliability.md ("GGUF parsing under fuzzing").
"""

from __future__ import annotations

import asyncio
import re
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.gguf_mutations import Mutant, mutants, run_case
from tests.helpers import settings, user
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.gguf_reader import read_gguf
from tui_llm.catalog.table_models import write_demo_model
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.protocol import SamplingParams

ENGINE_CASES = 200
LOAD_DEADLINE_S = 60.0
# Damage the reader lets through more often (values, shapes, types), so llama.cpp sees most cases.
_KINDS = ("value", "dims", "type", "array_length", "bitflip", "offset", "ggml_type", "splice")


def write_with_data(mutant: Mutant, source: Path, path: Path) -> Path:
    """The case with the source's tensor data after its header (the engine reads the weights)."""
    data_offset = read_gguf(source).data_offset
    with open(source, "rb") as src, open(path, "wb") as out:
        out.write(mutant.head)
        if len(mutant.head) < mutant.size:
            src.seek(data_offset)
            out.write(src.read(mutant.size - len(mutant.head)))
    return path


def block_count_offset(raw: bytes) -> int:
    """Where the u32 value of ``llama.block_count`` lies in a generated model."""
    key = b"llama.block_count"
    at = raw.index(key) + len(key)
    assert struct.unpack_from("<I", raw, at)[0] == 4  # uint32
    return at + 4


def write_aborting_model(good: Path, path: Path, n_layer: int = 100_000) -> Path:
    """A model the reader accepts but llama.cpp aborts on: more layers than LLAMA_MAX_LAYERS."""
    raw = bytearray(good.read_bytes())
    struct.pack_into("<I", raw, block_count_offset(raw), n_layer)
    path.write_bytes(bytes(raw))
    return path


async def _load_and_reply(client: EngineClient, path: Path) -> str:
    await asyncio.wait_for(client.load(settings(path)), LOAD_DEADLINE_S)
    await asyncio.wait_for(client.chat([user("hi")], SamplingParams(max_tokens=4)), LOAD_DEADLINE_S)
    return "replied"


async def test_an_abort_in_llama_cpp_is_a_crashed_error_and_a_new_engine_loads(
    tiny_model: Path, tmp_path: Path
) -> None:
    aborting = write_aborting_model(tiny_model, tmp_path / "100k-layers.gguf")
    assert read_gguf(aborting).metadata["llama.block_count"] == 100_000
    client = EngineClient()
    await client.start()
    try:
        with pytest.raises(EngineError) as caught:
            await client.load(settings(aborting))
        assert caught.value.kind == "crashed"
        assert "SIGABRT" in str(caught.value) and "\n" not in str(caught.value)
    finally:
        await client.close()
    client = EngineClient()
    await client.start()
    try:
        assert await _load_and_reply(client, tiny_model) == "replied"
    finally:
        await client.close()


@pytest.mark.long
async def test_two_hundred_mutants_through_the_engine(tmp_path: Path) -> None:
    """Each case: the reader's verdict, then the engine's; a crash costs only the engine."""
    sources = {
        "random-f16": write_llama_gguf(tmp_path / "random.gguf", n_layer=2, n_embd=64, seed=1),
        "bigram-demo": write_demo_model(tmp_path / "demo.gguf"),
    }
    picked: list[tuple[Mutant, Path]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, source) in enumerate(sources.items()):
            wanted = {"metadata": 80, "error": 20}
            for mutant in mutants(name, source, 20_000, seed=77 + index):
                if mutant.kind not in _KINDS:
                    continue
                verdict = (
                    "metadata" if run_case(mutant, Path(tmp)).result == "metadata" else "error"
                )
                if wanted[verdict]:
                    wanted[verdict] -= 1
                    picked.append((mutant, source))
                if not any(wanted.values()):
                    break
    assert len(picked) == ENGINE_CASES
    outcomes: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    slowest = (0.0, "")
    client = EngineClient()
    await client.start()
    started = time.perf_counter()
    try:
        for mutant, source in picked:
            path = write_with_data(mutant, source, tmp_path / "case.gguf")
            case_started = time.perf_counter()
            try:
                result = await _load_and_reply(client, path)
            except EngineError as error:
                assert "\n" not in str(error)
                result = error.kind
                if error.kind == "crashed":
                    signal = re.search(r"SIG[A-Z]+|status -?\d+", str(error))
                    result = f"crashed ({signal.group() if signal else str(error)})"
                    await client.close()
                    client = EngineClient()
                    await client.start()
            took = time.perf_counter() - case_started
            slowest = max(slowest, (took, f"{mutant.name}: {result}"))
            outcomes[result] += 1
            by_kind.setdefault(mutant.kind, Counter())[result] += 1
        # After every case, the engine still loads a good model and answers.
        assert await _load_and_reply(client, sources["random-f16"]) == "replied"
    finally:
        await client.close()
    total = time.perf_counter() - started
    print(
        f"\nengine cases: {len(picked)} in {total:.0f} s; slowest {slowest[1]} {slowest[0]:.2f} s"
    )
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    for kind, counts in sorted(by_kind.items()):
        print(f"| {kind} | " + ", ".join(f"{k} {v}" for k, v in counts.most_common()) + " |")
    assert slowest[0] < LOAD_DEADLINE_S
    assert set(outcomes) <= {"replied", "bad_model", "internal", "out_of_memory"} | {
        k for k in outcomes if k.startswith("crashed")
    }
