"""Tests for the header-only GGUF reader: files from gguf.GGUFWriter and a corpus of bad ones."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_llm.catalog.gguf_reader import ArrayInfo, GGUFError, GGUFFile, read_gguf

Q8_0 = gguf.GGMLQuantizationType.Q8_0


def write_model(
    path: Path,
    *,
    n_tokens: int = 16,
    alignment: int | None = None,
    extra: Callable[[gguf.GGUFWriter], None] | None = None,
) -> dict[str, bytes]:
    """Write a small llama GGUF with F32, F16 and Q8_0 tensors; return each tensor's bytes."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("Tiny Llama")
    writer.add_block_count(2)
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count([4, 8])
    writer.add_head_count_kv(2)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i}" for i in range(n_tokens)])
    writer.add_token_scores([float(-i) for i in range(n_tokens)])
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    if extra is not None:
        extra(writer)
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((3, 64)).astype(np.float32)
    f16 = rng.standard_normal((5, 64)).astype(np.float16)
    q8 = gguf.quants.quantize(rng.standard_normal((2, 96)).astype(np.float32), Q8_0)
    norm = np.ones(64, dtype=np.float32)
    writer.add_tensor("token_embd.weight", f32)
    writer.add_tensor("blk.0.ffn_up.weight", f16)
    writer.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=Q8_0)
    writer.add_tensor("output_norm.weight", norm)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "token_embd.weight": f32.tobytes(),
        "blk.0.ffn_up.weight": f16.tobytes(),
        "blk.0.attn_q.weight": q8.tobytes(),
        "output_norm.weight": norm.tobytes(),
    }


@lru_cache(maxsize=1)
def valid_file_bytes() -> bytes:
    """The bytes of a small valid model, made once for the byte-level tests."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "valid.gguf"
        write_model(path)
        return path.read_bytes()


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value % (1 << 64))


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv(key: str, value_type: int, payload: bytes) -> bytes:
    return gstr(key) + u32(value_type) + payload


def tinfo(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)
    )


def gguf_bytes(
    *,
    version: int = 3,
    kvs: tuple[bytes, ...] = (),
    tensors: tuple[bytes, ...] = (),
    n_kv: int | None = None,
    n_tensors: int | None = None,
    data: bytes = b"",
) -> bytes:
    """Assemble a GGUF file by hand, with counts that may lie."""
    head = (
        b"GGUF"
        + u32(version)
        + u64(len(tensors) if n_tensors is None else n_tensors)
        + u64(len(kvs) if n_kv is None else n_kv)
        + b"".join(kvs)
        + b"".join(tensors)
    )
    padding = b"\0" * (-len(head) % 32)
    return head + padding + data


def assert_one_line_error(path: Path) -> GGUFError:
    with pytest.raises(GGUFError) as caught:
        read_gguf(path)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path.name}: ")
    return caught.value


# --- valid files ---------------------------------------------------------------------------


def test_reads_metadata_and_tensors_written_by_gguf(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    written = write_model(path)

    model = read_gguf(path)

    assert isinstance(model, GGUFFile)
    assert model.version == 3
    assert model.path == path
    assert model.file_size == path.stat().st_size
    assert model.metadata["general.architecture"] == "llama"
    assert model.metadata["general.name"] == "Tiny Llama"
    assert model.metadata["llama.block_count"] == 2
    assert model.metadata["llama.attention.head_count"] == (4, 8)
    assert model.metadata["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert model.metadata["tokenizer.ggml.tokens"] == tuple(f"tok{i}" for i in range(16))
    assert model.metadata["tokenizer.ggml.scores"] == tuple(float(-i) for i in range(16))
    assert [t.name for t in model.tensors] == list(written)
    by_name = {t.name: t for t in model.tensors}
    assert by_name["token_embd.weight"].shape == (64, 3)  # GGML order: ne[0] first
    assert by_name["blk.0.attn_q.weight"].shape == (96, 2)
    assert by_name["output_norm.weight"].shape == (64,)
    assert [t.type_name for t in model.tensors] == ["F32", "F16", "Q8_0", "F32"]
    assert by_name["blk.0.attn_q.weight"].n_elements == 192


def test_tensor_sizes_and_offsets_match_the_bytes_gguf_wrote(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    written = write_model(path)
    raw = path.read_bytes()

    model = read_gguf(path)

    assert model.alignment == 32
    assert model.data_offset % 32 == 0
    for tensor in model.tensors:
        assert tensor.n_bytes == len(written[tensor.name])
        assert raw[tensor.offset : tensor.offset + tensor.n_bytes] == written[tensor.name]
    padded = sum(-(-t.n_bytes // 32) * 32 for t in model.tensors)
    assert model.data_offset + padded == model.file_size


def test_custom_alignment_moves_the_data(tmp_path: Path) -> None:
    path = tmp_path / "aligned.gguf"
    written = write_model(path, alignment=256)
    raw = path.read_bytes()

    model = read_gguf(path)

    assert model.alignment == 256
    assert model.data_offset % 256 == 0
    for tensor in model.tensors:
        assert raw[tensor.offset : tensor.offset + tensor.n_bytes] == written[tensor.name]


def test_version_2_is_read(tmp_path: Path) -> None:
    raw = bytearray(valid_file_bytes())
    raw[4:8] = u32(2)
    path = tmp_path / "v2.gguf"
    path.write_bytes(bytes(raw))

    assert read_gguf(path).version == 2


def test_long_arrays_are_summarised_and_short_ones_kept(tmp_path: Path) -> None:
    def extra(writer: gguf.GGUFWriter) -> None:
        writer.add_array("test.short_ints", list(range(1024)))
        writer.add_array("test.long_ints", list(range(1025)))
        writer.add_array("test.nested", [[1, 2], [3], [4, 5, 6]])

    path = tmp_path / "arrays.gguf"
    write_model(path, n_tokens=3000, extra=extra)

    metadata = read_gguf(path).metadata

    assert metadata["test.short_ints"] == tuple(range(1024))
    long_ints = metadata["test.long_ints"]
    assert isinstance(long_ints, ArrayInfo) and long_ints.length == 1025
    assert metadata["tokenizer.ggml.tokens"] == ArrayInfo(8, 3000)
    assert metadata["tokenizer.ggml.scores"] == ArrayInfo(6, 3000)
    assert metadata["test.nested"] == ArrayInfo(9, 3)
    assert ArrayInfo(8, 3000).item_type_name == "string"


def test_invalid_utf8_is_replaced_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "utf8.gguf"
    path.write_bytes(gguf_bytes(kvs=(kv("general.name", 8, gstr(b"caf\xe9 \xff")),)))

    assert read_gguf(path).metadata["general.name"] == "caf\ufffd \ufffd"


def test_200k_token_array_is_read_quickly_and_not_materialised(tmp_path: Path) -> None:
    path = tmp_path / "big-vocab.gguf"
    write_model(path, n_tokens=200_000)

    started = time.perf_counter()
    read_gguf(path)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        model = read_gguf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert model.metadata["tokenizer.ggml.tokens"] == ArrayInfo(8, 200_000)
    # 200k Python strings would take well over 10 MB; the header parse keeps a few KB.
    assert peak < 1_000_000
    # About 15 ms on a laptop; the bound only catches a parse that materialises the array.
    assert elapsed < 1.0


def test_multi_gb_file_is_read_from_its_header_only(tmp_path: Path) -> None:
    """A sparse 4 GiB file: only the header pages are read, so it takes milliseconds."""
    path = tmp_path / "huge.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    shape = (32768, 65536)  # numpy order: 2**31 F16 elements = 4 GiB
    writer.add_tensor_info("token_embd.weight", shape, np.dtype(np.float16), 2 * 32768 * 65536)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header_size = path.stat().st_size
    data_offset = -(-header_size // 32) * 32
    with open(path, "r+b") as handle:
        handle.truncate(data_offset + (4 << 30))

    started = time.perf_counter()
    model = read_gguf(path)
    elapsed = time.perf_counter() - started

    assert model.tensors[0].shape == (65536, 32768)
    assert model.tensors[0].n_bytes == 4 << 30
    assert model.data_offset == data_offset
    assert elapsed < 1.0
    with open(path, "r+b") as handle:
        handle.truncate(data_offset + (4 << 30) - 1)
    assert "truncated" in str(assert_one_line_error(path))


def test_reading_a_header_does_not_import_gguf_or_numpy(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_model(path)
    code = (
        "import sys; from tui_llm.catalog.gguf_reader import read_gguf; "
        f"read_gguf({str(path)!r}); "
        "print(sorted(m for m in ('gguf', 'numpy', 'textual', 'rich') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --- bad files -----------------------------------------------------------------------------

_HUGE = 1 << 62
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty file"),
    "wrong magic": (b"PK\x03\x04" + b"\0" * 60, "not a GGUF file (magic b'PK\\x03\\x04')"),
    "short magic": (b"GG", "truncated at byte 2"),
    "version 1": (gguf_bytes(version=1), "unsupported GGUF version 1"),
    "version 99": (gguf_bytes(version=99), "unsupported GGUF version 99"),
    "big endian": (b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "big-endian"),
    "header cut": (b"GGUF" + u32(3) + b"\0\0", "truncated at byte 10"),
    "tensor count 2**63": (gguf_bytes(n_tensors=1 << 63), "tensor count at byte 8 is"),
    "kv count 2**64-1": (gguf_bytes(n_kv=(1 << 64) - 1), "metadata key count"),
    "key length 2**62": (gguf_bytes(n_kv=1, kvs=(u64(_HUGE) + b"abc",)), "claims"),
    "value length 2**62": (
        gguf_bytes(kvs=(kv("general.name", 8, u64(_HUGE) + b"x"),)),
        "string value of 'general.name'",
    ),
    "unknown value type": (gguf_bytes(kvs=(kv("a.b", 77, b"\0" * 8),)), "unknown value type 77"),
    "array of 2**60 u8": (
        gguf_bytes(kvs=(kv("a.b", 9, u32(0) + u64(1 << 60)),)),
        "array length of 'a.b'",
    ),
    "array of 2**60 strings": (
        gguf_bytes(kvs=(kv("tokenizer.ggml.tokens", 9, u32(8) + u64(1 << 60)),)),
        "array length",
    ),
    "array of 2**60 arrays": (
        gguf_bytes(kvs=(kv("a.b", 9, u32(9) + u64(1 << 60)),)),
        "array length",
    ),
    "long string array with a huge item": (
        gguf_bytes(kvs=(kv("a.b", 9, u32(8) + u64(2000) + u64(_HUGE) + b"\0" * 20000),)),
        "run past the end",
    ),
    "arrays nested too deep": (
        gguf_bytes(kvs=(kv("a.b", 9, (u32(9) + u64(1)) * 20 + b"\0" * 64),)),
        "nests arrays deeper",
    ),
    "unknown array item type": (
        gguf_bytes(kvs=(kv("a.b", 9, u32(50) + u64(1) + b"\0" * 8),)),
        "unknown item type 50",
    ),
    "duplicate key": (
        gguf_bytes(kvs=(kv("a.b", 4, u32(1)), kv("a.b", 4, u32(2)))),
        "duplicate metadata key 'a.b'",
    ),
    "alignment 3": (gguf_bytes(kvs=(kv("general.alignment", 4, u32(3)),)), "power of two"),
    "alignment is a string": (
        gguf_bytes(kvs=(kv("general.alignment", 8, gstr("32")),)),
        "not an integer",
    ),
    "n_dims 1000": (gguf_bytes(tensors=(tinfo("t", [1] * 1000),)), "1000 dimensions"),
    "dim 0": (gguf_bytes(tensors=(tinfo("t", [4, 0]),)), "dimension 0"),
    "dim negative": (gguf_bytes(tensors=(tinfo("t", [4, -5]),)), "dimension -5"),
    "absurd shape": (gguf_bytes(tensors=(tinfo("t", [1 << 40] * 4),)), "absurd shape"),
    "unknown ggml type": (gguf_bytes(tensors=(tinfo("t", [4], 999),)), "ggml type type 999"),
    "removed ggml type": (gguf_bytes(tensors=(tinfo("t", [32], 31),)), "Q4_0_4_4"),
    "row not whole blocks": (
        gguf_bytes(tensors=(tinfo("t", [33, 2], 8),), data=b"\0" * 128),
        "not a multiple of the Q8_0 block size 32",
    ),
    "misaligned offset": (
        gguf_bytes(tensors=(tinfo("t", [4], 0, 4),), data=b"\0" * 64),
        "offset 4, not a multiple of 32",
    ),
    "data beyond EOF": (
        gguf_bytes(tensors=(tinfo("t", [64, 64]),), data=b"\0" * 100),
        "data of tensor 't' ends at byte",
    ),
    "offset beyond EOF": (
        gguf_bytes(tensors=(tinfo("t", [4], 0, 1 << 40),), data=b"\0" * 64),
        "truncated",
    ),
    "duplicate tensor": (
        gguf_bytes(tensors=(tinfo("t", [8]), tinfo("t", [8], 0, 32)), data=b"\0" * 64),
        "duplicate tensor name 't'",
    ),
    "newline in a tensor name": (
        gguf_bytes(tensors=(tinfo("a\nb", [4], 0, 0),)),
        "'a\\nb'",
    ),
    "random bytes": (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), ""),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_file_gives_one_line_gguf_error(tmp_path: Path, case: str) -> None:
    content, expected = BAD_FILES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)

    error = assert_one_line_error(path)

    assert expected in str(error)
    assert isinstance(error, ValueError)


def test_missing_file_and_directory_give_gguf_error(tmp_path: Path) -> None:
    assert "cannot read" in str(assert_one_line_error(tmp_path / "absent.gguf"))
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    assert "not a regular file" in str(assert_one_line_error(folder))


def test_newline_in_the_file_name_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.gguf"
    path.write_bytes(b"nope")
    with pytest.raises(GGUFError) as caught:
        read_gguf(path)
    assert str(caught.value) == "two\\nlines.gguf: not a GGUF file (magic b'nope')"


def test_gguf_error_survives_pickling() -> None:
    error = GGUFError(Path("/models/x.gguf"), "empty file")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, GGUFError)
    assert str(copy) == "x.gguf: empty file"
    assert copy.path == Path("/models/x.gguf") and copy.problem == "empty file"


def test_every_truncation_is_an_error_until_the_last_tensor_ends(tmp_path: Path) -> None:
    raw = valid_file_bytes()
    source = tmp_path / "whole.gguf"
    source.write_bytes(raw)
    model = read_gguf(source)
    data_end = max(t.offset + t.n_bytes for t in model.tensors)
    path = tmp_path / "cut.gguf"

    for cut in range(len(raw)):
        path.write_bytes(raw[:cut])
        if cut < data_end:
            assert_one_line_error(path)
        else:
            assert read_gguf(path).tensors == model.tensors


_INTERESTING_U64 = [0, 1, 4, 1023, 1025, 1 << 31, 1 << 32, 1 << 60, 1 << 63, (1 << 64) - 1]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    mutations=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.one_of(
                st.binary(min_size=1, max_size=1),
                st.sampled_from(_INTERESTING_U64).map(u64),
                st.integers(0, 0xFFFFFFFF).map(u32),
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_headers_give_gguf_error_or_a_sane_result(
    mutations: list[tuple[int, bytes]],
) -> None:
    raw = bytearray(valid_file_bytes())
    header_size = 1024  # the metadata and tensor infos of the valid file lie in its first KiB
    for position, patch in mutations:
        start = position % header_size
        raw[start : start + len(patch)] = patch
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutated.gguf"
        path.write_bytes(bytes(raw))
        try:
            model = read_gguf(path)
        except GGUFError as error:
            assert "\n" not in str(error)
            return
    for tensor in model.tensors:
        assert model.data_offset <= tensor.offset
        assert tensor.offset + tensor.n_bytes <= model.file_size
