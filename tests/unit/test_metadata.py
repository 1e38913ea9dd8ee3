"""Tests for ModelInfo: facts read from real GGUF files, split models, and their formatting."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from tui_llm.catalog.gguf_reader import GGUFError, read_gguf
from tui_llm.catalog.metadata import (
    ModelInfo,
    format_info,
    human_bytes,
    human_count,
    info_to_json,
    quantization_name,
    read_model_info,
)

Q8_0 = gguf.GGMLQuantizationType.Q8_0
ARRAYS: dict[str, np.ndarray] = {
    "token_embd.weight": np.zeros((40, 64), dtype=np.float32),
    "blk.0.attn_q.weight": np.zeros((64, 64), dtype=np.float16),
    "blk.1.attn_q.weight": np.zeros((64, 64), dtype=np.float16),
    "output_norm.weight": np.ones(64, dtype=np.float32),
}
N_PARAMS = 40 * 64 + 2 * 64 * 64 + 64


def write_model(
    path: Path,
    *,
    file_type: int | None = gguf.LlamaFileType.MOSTLY_Q4_K_M,
    name: str | None = "Tiny Chat",
    tokens: int | None = 40,
    template: str | None = "{{ messages }}",
    split_max_tensors: int = 0,
    extra: Callable[[gguf.GGUFWriter], None] | None = None,
) -> None:
    """Write a two-layer llama model (its tensors are ARRAYS), optionally split into shards."""
    writer = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    if name is not None:
        writer.add_name(name)
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(256)
    writer.add_head_count(8)
    writer.add_head_count_kv([2, 4])
    writer.add_key_length(8)
    writer.add_value_length(8)
    writer.add_sliding_window(512)
    if file_type is not None:
        writer.add_file_type(file_type)
    if tokens is not None:
        writer.add_tokenizer_model("llama")
        writer.add_token_list([f"t{i}" for i in range(tokens)])
    if template is not None:
        writer.add_chat_template(template)
    if extra is not None:
        extra(writer)
    for tensor_name, array in ARRAYS.items():
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_split(tmp_path: Path) -> list[Path]:
    """Write the model as two shards (two tensors each), as llama.cpp's gguf-split names them."""
    write_model(tmp_path / "chat.gguf", split_max_tensors=2)
    shards = sorted(tmp_path.glob("chat-*-of-*.gguf"))
    assert [p.name for p in shards] == ["chat-00001-of-00002.gguf", "chat-00002-of-00002.gguf"]
    return shards


def test_reads_the_facts_of_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny-chat.Q4_K_M.gguf"
    write_model(path)

    info = read_model_info(path)

    assert isinstance(info, ModelInfo)
    assert info.path == path
    assert info.shards == (path,)
    assert info.architecture == "llama"
    assert info.name == "Tiny Chat"
    assert info.parameter_count == N_PARAMS
    assert info.quantization == "Q4_K_M"
    assert info.n_layer == 2
    assert info.context_length == 4096
    assert info.embedding_length == 64
    assert info.feed_forward_length == 256
    assert info.head_count == 8
    assert info.head_count_kv == (2, 4)
    assert (info.key_length, info.value_length) == (8, 8)
    assert info.sliding_window == 512
    assert info.expert_count is None
    assert info.vocab_size == 40
    assert info.has_chat_template is True
    assert info.chat_template == "{{ messages }}"
    assert info.file_size == path.stat().st_size
    assert info.gguf_version == 3
    assert [t.name for t in info.tensors] == list(ARRAYS)
    assert dict(info.tensor_bytes) == {k: a.nbytes for k, a in ARRAYS.items()}
    assert dict(info.bytes_by_type) == {"F16": 2 * 64 * 64 * 2, "F32": (40 * 64 + 64) * 4}
    assert info.total_tensor_bytes == sum(a.nbytes for a in ARRAYS.values())


def test_defaults_when_the_file_says_less(tmp_path: Path) -> None:
    path = tmp_path / "bare-model.gguf"
    write_model(
        path,
        file_type=None,
        name=None,
        tokens=None,
        template=None,
        extra=lambda w: w.add_vocab_size(32000),
    )

    info = read_model_info(path)

    assert info.name == "bare-model"
    assert info.quantization == "F16"  # the type holding the most bytes
    assert info.vocab_size == 32000
    assert info.has_chat_template is False
    assert info.chat_template is None
    assert "Chat template    no\n" in format_info(info) + "\n"


def test_large_vocabulary_is_counted_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "big-vocab.gguf"
    write_model(path, tokens=5000)
    assert read_model_info(path).vocab_size == 5000


@pytest.mark.parametrize(
    ("file_type", "expected"),
    [
        (0, "F32"),
        (1, "F16"),
        (7, "Q8_0"),
        (15, "Q4_K_M"),
        (18, "Q6_K"),
        (30, "IQ4_XS"),
        (32, "BF16"),
        (38, "MXFP4_MOE"),
        (15 | 1024, "Q4_K_M (guessed)"),
        (999, "ftype 999"),
    ],
)
def test_quantization_names(file_type: int, expected: str) -> None:
    assert quantization_name(file_type) == expected


def test_our_ftype_names_agree_with_the_gguf_package() -> None:
    for ftype in gguf.LlamaFileType:
        if ftype is gguf.LlamaFileType.GUESSED:
            continue
        expected = ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        assert quantization_name(int(ftype)) == expected


def test_split_model_is_read_from_any_shard(tmp_path: Path) -> None:
    shards = write_split(tmp_path)

    from_first = read_model_info(shards[0])
    from_second = read_model_info(shards[1])

    assert from_first == from_second
    assert from_first.path == shards[0]
    assert from_first.shards == tuple(shards)
    assert from_first.file_size == sum(p.stat().st_size for p in shards)
    assert [t.name for t in from_first.tensors] == list(ARRAYS)
    assert from_first.parameter_count == N_PARAMS
    assert from_first.name == "Tiny Chat"
    assert from_first.n_layer == 2
    assert "in 2 shards" in format_info(from_first)
    # Each tensor's offset is in its own shard's file.
    second = read_gguf(shards[1])
    assert from_first.tensors[2:] == second.tensors


def test_missing_shard_is_named(tmp_path: Path) -> None:
    shards = write_split(tmp_path)
    shards[1].unlink()

    with pytest.raises(GGUFError) as caught:
        read_model_info(shards[0])

    assert "chat-00002-of-00002.gguf is missing" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_shard_from_another_position_is_refused(tmp_path: Path) -> None:
    shards = write_split(tmp_path)
    shutil.copyfile(shards[0], shards[1])

    with pytest.raises(GGUFError, match=r"split\.no/split\.count are 0/2, expected 1/2"):
        read_model_info(shards[0])


def test_renamed_shard_cannot_find_its_siblings(tmp_path: Path) -> None:
    shards = write_split(tmp_path)
    renamed = shards[0].rename(tmp_path / "renamed.gguf")

    with pytest.raises(GGUFError, match=r"does not follow NAME-00001-of-00002\.gguf"):
        read_model_info(renamed)


def test_format_info_shows_what_a_user_asks_about(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_model(path)

    text = format_info(read_model_info(path))

    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines())
    assert rows["Name"] == "Tiny Chat"
    assert rows["File"] == str(path)
    assert rows["Architecture"] == "llama"
    assert rows["Parameters"] == f"10.8K ({N_PARAMS:,})"
    assert rows["Quantization"] == "Q4_K_M"
    assert rows["Layers"] == "2"
    assert rows["Context length"] == "4,096"
    assert rows["Attention heads"] == "8 (KV 2-4 per layer)"
    assert rows["Sliding window"] == "512"
    assert rows["Vocabulary"] == "40"
    assert rows["Chat template"] == "yes (14 chars)"
    assert rows["Tensors"] == "4: F16 16 KiB, F32 10.2 KiB"
    # Values start in one column.
    lines = text.splitlines()
    assert (
        len({len(line) - len(value) for line, value in zip(lines, rows.values(), strict=True)}) == 1
    )


def test_info_to_json_is_serialisable(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_model(path)

    data = info_to_json(read_model_info(path))
    round_tripped = json.loads(json.dumps(data))

    assert round_tripped["path"] == str(path)
    assert round_tripped["quantization"] == "Q4_K_M"
    assert round_tripped["head_count_kv"] == [2, 4]
    assert round_tripped["parameter_count"] == N_PARAMS
    assert round_tripped["shards"] == [str(path)]
    assert round_tripped["has_chat_template"] is True


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (37, "37 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (512 << 20, "512 MiB"),
        (3 << 29, "1.5 GiB"),
        ((1 << 30) - 1, "1 GiB"),
        (int(4.37 * (1 << 30)), "4.4 GiB"),
        (int(770.3 * (1 << 20)), "770 MiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_human_bytes(n: int, expected: str) -> None:
    assert human_bytes(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0"),
        (999, "999"),
        (1100, "1.1K"),
        (410_000_000, "410M"),
        (7_241_732_096, "7.2B"),
        (12_500_000_000, "12.5B"),
        (70_000_000_000, "70B"),
        (999_999, "1M"),
        (N_PARAMS, "10.8K"),
    ],
)
def test_human_count(n: int, expected: str) -> None:
    assert human_count(n) == expected
