"""GGUF parsing under fuzzing: every mutated file gives metadata or one ``GGUFError``, quickly.

The corpus (``tests/gguf_mutations.py``) edits real and generated models: SmolLM2-135M where
installed, the random llama in F16 and Q8_0, a split model's two shards, the bigram demo, a
scripted model and a file with every metadata value type. The default run reads a few hundred
cases; ``pytest -m long -s tests/unit/test_gguf_fuzz.py`` reads 10,500 and prints the figures
kept in docs/reliability.md ("GGUF parsing under fuzzing").
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gguf_mutations import Outcome, field_map, mutants, run_case
from tui_llm.catalog import gguf_reader
from tui_llm.catalog.demo import smollm2_path
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.gguf_reader import ArrayInfo, GGUFError, read_gguf
from tui_llm.catalog.table_models import write_demo_model, write_scripted_model

# What one case may cost at most; the slowest measured is far below (docs/reliability.md).
CASE_SECONDS = 2.0
CASE_PEAK_BYTES = 96 << 20
DEFAULT_CASES_PER_SOURCE = 30
LONG_CASES_PER_SOURCE = 1500


def _every_type_model(path: Path) -> Path:
    """A file with every metadata value type, nested and long arrays, alignment 64, Q8_0."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_custom_alignment(64)
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -3)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -300)
    writer.add_int32("t.i32", -70000)
    writer.add_float32("t.f32", 0.5)
    writer.add_bool("t.bool", True)
    writer.add_uint64("t.u64", 1 << 40)
    writer.add_int64("t.i64", -(1 << 40))
    writer.add_float64("t.f64", 0.25)
    writer.add_string("t.str", "café ✓")
    writer.add_array("t.nested", [[1, 2], [3], ["a", "b"]])
    writer.add_array("t.strings", [f"s{i}" for i in range(1500)])
    writer.add_array("t.ints", list(range(2000)))
    writer.add_block_count(1)
    rng = np.random.default_rng(0)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "output.weight"):
        data = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), q8)
        writer.add_tensor(name, data, raw_dtype=q8)
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def fuzz_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The valid files the corpus is made from, by name; SmolLM2 where it is installed."""
    folder = tmp_path_factory.mktemp("fuzz-sources")
    split = write_llama_gguf(folder / "split.gguf", n_layer=2, n_embd=64, seed=5, n_shards=2)
    sources = {
        "random-f16": write_llama_gguf(folder / "random-f16.gguf", n_layer=2, n_embd=64, seed=1),
        "random-q8_0": write_llama_gguf(
            folder / "random-q8.gguf", n_layer=2, n_embd=64, seed=2, tensor_type="q8_0"
        ),
        "split-1-of-2": split,
        "split-2-of-2": split.with_name("split-00002-of-00002.gguf"),
        "bigram-demo": write_demo_model(folder / "demo.gguf"),
        "scripted": write_scripted_model(folder / "scripted.gguf", ["Hello", " there"]),
        "every-type": _every_type_model(folder / "every-type.gguf"),
    }
    real = smollm2_path()
    if real is not None:
        sources["smollm2"] = real
    return sources


def _cases(sources: dict[str, Path], per_source: int, seed: int) -> Iterator[tuple[str, object]]:
    for index, (name, path) in enumerate(sorted(sources.items())):
        yield from ((name, m) for m in mutants(name, path, per_source, seed + index))


def _run_corpus(sources: dict[str, Path], per_source: int, seed: int) -> list[Outcome]:
    """Run every case in a folder beside the source (so a split shard finds its partner)."""
    outcomes = []
    tracemalloc.start()
    try:
        for name, path in sorted(sources.items()):
            with tempfile.TemporaryDirectory(dir=None) as tmp:
                folder = Path(tmp)
                if name.startswith("split-"):
                    for shard in path.parent.glob("split-0000*-of-00002.gguf"):
                        if shard.name != path.name:
                            (folder / shard.name).write_bytes(shard.read_bytes())
                for mutant in mutants(name, path, per_source, seed + len(outcomes)):
                    outcomes.append(run_case(mutant, folder, path.name))
    finally:
        tracemalloc.stop()
    return outcomes


def _check(outcomes: list[Outcome]) -> None:
    crashes = [o for o in outcomes if o.result.startswith("crash")]
    assert crashes == [], crashes[:5]
    slow = [o for o in outcomes if o.seconds > CASE_SECONDS]
    assert slow == [], slow[:5]
    heavy = [o for o in outcomes if o.peak_bytes > CASE_PEAK_BYTES]
    assert heavy == [], heavy[:5]
    for outcome in outcomes:
        if outcome.result.startswith("error"):
            # One line naming the file (or, for a split model, the shard that is wrong).
            assert "\n" not in outcome.message and ".gguf: " in outcome.message


def report(outcomes: list[Outcome], seconds: float) -> str:
    """The figures for docs/reliability.md: cases, outcomes by kind, slowest, peak memory."""
    by_result = Counter(o.result for o in outcomes)
    by_kind: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        by_kind.setdefault(outcome.kind, Counter())[outcome.result] += 1
    slowest = max(outcomes, key=lambda o: o.seconds)
    heaviest = max(outcomes, key=lambda o: o.peak_bytes)
    sources = Counter(o.name.rsplit("-", 2)[0] for o in outcomes)
    lines = [
        f"cases: {len(outcomes)} in {seconds:.0f} s, from {dict(sorted(sources.items()))}",
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in by_result.most_common()),
        f"slowest: {slowest.name} {slowest.seconds * 1000:.1f} ms ({slowest.result})",
        f"peak traced memory: {heaviest.name} {heaviest.peak_bytes / (1 << 20):.1f} MiB",
        "",
        "| damage | cases | metadata | typed error (by kind) |",
        "|---|---|---|---|",
    ]
    for kind, counts in sorted(by_kind.items()):
        errors = ", ".join(
            f"{k.removeprefix('error: ')} {v}" for k, v in counts.most_common() if k != "metadata"
        )
        lines.append(f"| {kind} | {sum(counts.values())} | {counts['metadata']} | {errors} |")
    return "\n".join(lines)


def test_the_mutation_corpus_gives_metadata_or_a_typed_error(
    fuzz_sources: dict[str, Path],
) -> None:
    outcomes = _run_corpus(fuzz_sources, DEFAULT_CASES_PER_SOURCE, seed=1)
    assert len(outcomes) >= 200
    _check(outcomes)
    kinds = Counter(o.result for o in outcomes)
    # The corpus reaches both sides and the new checks: overlaps and duplicates are refused.
    assert kinds["metadata"] > 0 and kinds["error: truncated"] > 0
    assert kinds["error: duplicate"] > 0 and kinds["error: overlap"] > 0


@pytest.mark.long
def test_ten_thousand_mutants(fuzz_sources: dict[str, Path]) -> None:
    """The long run: 1,500 cases of each source; prints the figures for docs/reliability.md."""
    started = time.perf_counter()
    outcomes = _run_corpus(fuzz_sources, LONG_CASES_PER_SOURCE, seed=1000)
    seconds = time.perf_counter() - started
    print("\n" + report(outcomes, seconds))
    assert len(outcomes) >= 10_000
    _check(outcomes)


def test_the_field_map_finds_every_record(fuzz_sources: dict[str, Path]) -> None:
    path = fuzz_sources["every-type"]
    model = read_gguf(path)
    fmap = field_map(path.read_bytes()[: model.data_offset])
    assert len(fmap.kv_records) == len(model.metadata)
    assert len(fmap.tensor_records) == len(model.tensors)
    assert fmap.data_offset == model.data_offset


# --- at the limits: crafted files as costly as the caps allow ------------------------------


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def _gstr(raw: bytes) -> bytes:
    return _u64(len(raw)) + raw


def _header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + _u32(3) + _u64(n_tensors) + _u64(n_kv)


_ZEROS = 80 << 20  # the crafted records are followed by this many zero bytes (sparse)

LIMIT_CASES: dict[str, tuple[Callable[[int], bytes], str]] = {
    # n is the cap; each case is exactly at it (then one over: a GGUFError).
    "string array at the cap": (
        lambda n: _header(0, 1) + _gstr(b"a.b") + _u32(9) + _u32(8) + _u64(n),
        "ok",
    ),
    "nested arrays at the cap": (
        lambda n: _header(0, 1) + _gstr(b"a.b") + _u32(9) + _u32(9) + _u64(n),
        "ok",
    ),
    "keys at the cap": (
        lambda n: _header(0, n) + b"".join(_gstr(b"k%07d" % i) + _u32(0) + b"\0" for i in range(n)),
        "ok",
    ),
    "tensors at the cap": (
        lambda n: (
            _header(n, 0)
            + b"".join(
                _gstr(b"t%07d" % i) + _u32(1) + _u64(1) + _u32(0) + _u64(32 * i) for i in range(n)
            )
        ),
        "ok",
    ),
    "string at the cap": (
        lambda n: _header(0, 1) + _gstr(b"a.b") + _u32(8) + _u64(n),
        "ok",
    ),
}
_CAPS = {
    "string array at the cap": gguf_reader.MAX_STRING_ARRAY,
    "nested arrays at the cap": gguf_reader.MAX_NESTED_ITEMS,
    "keys at the cap": gguf_reader.MAX_KV,
    "tensors at the cap": gguf_reader.MAX_TENSORS,
    "string at the cap": gguf_reader.MAX_STRING_BYTES,
}


def measure_limit_case(case: str, over: bool, folder: Path) -> tuple[str, float, int]:
    """Read one crafted file at (or one over) its cap: (outcome or the error's problem,
    seconds untraced, peak traced bytes)."""
    make, _ = LIMIT_CASES[case]
    path = folder / "limit.gguf"
    with open(path, "wb") as handle:
        cap = _CAPS[case]
        if over and case in ("keys at the cap", "tensors at the cap"):
            # The count alone: it is refused before any record is read.
            handle.write(_header(cap + 1, 0) if case.startswith("tensors") else _header(0, cap + 1))
        else:
            handle.write(make(cap + (1 if over else 0)))
        handle.truncate(
            handle.tell() + _ZEROS + (_CAPS[case] if case == "tensors at the cap" else 0) * 32
        )
    started = time.perf_counter()
    try:
        read_gguf(path)
        outcome = "ok"
    except GGUFError as error:
        outcome = error.problem
    seconds = time.perf_counter() - started
    tracemalloc.start()  # a second read for the memory: tracing slows the reader 3-10 times
    with contextlib.suppress(GGUFError):
        read_gguf(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, seconds, peak


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case, marks=[pytest.mark.long] if case.split()[0] in ("keys", "tensors") else []
        )
        for case in LIMIT_CASES
    ],
)
def test_files_at_the_caps_are_read_within_bounds_and_one_more_is_refused(
    case: str, tmp_path: Path
) -> None:
    outcome, seconds, peak = measure_limit_case(case, False, tmp_path)
    assert outcome == "ok"
    assert seconds < CASE_SECONDS  # 0.15-1.4 s here (docs/reliability.md)
    assert peak < CASE_PEAK_BYTES  # the 64 MiB string itself; 54 MiB of tensor records
    outcome, _, _ = measure_limit_case(case, True, tmp_path)
    assert "limit" in outcome or "over the" in outcome or "nests more" in outcome


# --- properties --------------------------------------------------------------------------

_KEY = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1, max_size=20)
_VALUE = st.one_of(  # gguf writes no empty string or array
    st.integers(0, (1 << 32) - 1).map(lambda v: ("u32", v)),
    st.integers(-(1 << 63), (1 << 63) - 1).map(lambda v: ("i64", v)),
    st.booleans().map(lambda v: ("bool", v)),
    st.text(min_size=1, max_size=50).map(lambda v: ("str", v)),
    st.lists(st.integers(0, 255), min_size=1, max_size=1100).map(lambda v: ("u8s", v)),
    st.lists(st.text(max_size=8), min_size=1, max_size=1100).map(lambda v: ("strs", v)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata=st.dictionaries(_KEY, _VALUE, max_size=12))
def test_any_metadata_gguf_writes_is_read_back(metadata: dict[str, tuple[str, object]]) -> None:
    """Round trip: what ``gguf.GGUFWriter`` writes, the reader returns (long arrays as their
    type and length)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "written.gguf"
        writer = gguf.GGUFWriter(path, "llama")
        for key, (kind, value) in metadata.items():
            if key == "general.architecture" or key == "general.alignment":
                continue
            if kind == "u32":
                writer.add_uint32(key, value)  # type: ignore[arg-type]
            elif kind == "i64":
                writer.add_int64(key, value)  # type: ignore[arg-type]
            elif kind == "bool":
                writer.add_bool(key, value)  # type: ignore[arg-type]
            elif kind == "str":
                writer.add_string(key, value)  # type: ignore[arg-type]
            elif kind == "u8s":
                writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
            else:
                writer.add_array(key, value)  # type: ignore[arg-type]
        writer.add_tensor("t", np.ones(32, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        read = read_gguf(path).metadata
    for key, (_kind, value) in metadata.items():
        if key in ("general.architecture", "general.alignment"):
            continue
        got = read[key]
        if isinstance(value, list) and len(value) > gguf_reader.SMALL_ARRAY_MAX:
            assert isinstance(got, ArrayInfo) and got.length == len(value)
        elif isinstance(value, list):
            assert got == tuple(value)
        else:
            assert got == value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1 << 32), source=st.sampled_from(["random-f16", "every-type"]))
def test_any_structural_mutation_gives_metadata_or_a_typed_error(
    seed: int, source: str, fuzz_sources: dict[str, Path]
) -> None:
    path = fuzz_sources[source]
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        try:
            outcomes = [run_case(m, Path(tmp)) for m in mutants(source, path, 15, seed)]
        finally:
            tracemalloc.stop()
    _check(outcomes)
