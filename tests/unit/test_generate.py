"""Tests for the GGUF generator: random test models and the word-bigram demo model."""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from tui_llm.catalog.generate import (
    BOS_ID,
    BUILTIN_VOCAB_SIZE,
    DEFAULT_CHAT_TEMPLATE,
    EOS_ID,
    FIRST_BYTE_ID,
    SPACE_MARK,
    UNK_ID,
    build_vocabulary,
    read_demo_corpus,
    write_llama_gguf,
)
from tui_llm.catalog.table_models import (
    DEMO_MODEL_NAME,
    demo_bigram_log_probs,
    write_demo_model,
)


def llama_importable() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except Exception:
        return False
    return True


needs_llama = pytest.mark.skipif(
    not llama_importable(), reason="llama_cpp (llama-cpp-python) is not importable"
)
BLOCK_TENSORS = (
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
)


def field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def tensors(reader: gguf.GGUFReader) -> dict[str, gguf.ReaderTensor]:
    return {tensor.name: tensor for tensor in reader.tensors}


def corpus_words() -> set[str]:
    return set(re.findall(r"[A-Za-z]+", read_demo_corpus()))


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def test_same_arguments_write_identical_bytes_and_seed_changes_them(tmp_path: Path) -> None:
    first = write_llama_gguf(tmp_path / "a.gguf", n_layer=2, n_embd=64, seed=7)
    second = write_llama_gguf(tmp_path / "b.gguf", n_layer=2, n_embd=64, seed=7)
    other_seed = write_llama_gguf(tmp_path / "c.gguf", n_layer=2, n_embd=64, seed=8)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other_seed.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.gguf", "b.gguf", "c.gguf"]


def test_demo_model_is_deterministic_and_small(demo_model: Path, tmp_path: Path) -> None:
    again = write_demo_model(tmp_path / "nested" / "demo.gguf")
    assert again.read_bytes() == demo_model.read_bytes()
    assert demo_model.stat().st_size <= 40 * 1024 * 1024


@pytest.mark.parametrize(
    ("tensor_type", "file_type", "matrix_type"),
    [
        ("f32", gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
        ("f16", gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
        ("q8_0", gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0),
        ("q4_0", gguf.LlamaFileType.MOSTLY_Q4_0, gguf.GGMLQuantizationType.Q4_0),
    ],
)
def test_random_model_has_llama_metadata_and_tensor_shapes(
    tmp_path: Path,
    tensor_type: Any,
    file_type: gguf.LlamaFileType,
    matrix_type: gguf.GGMLQuantizationType,
) -> None:
    path = write_llama_gguf(
        tmp_path / "m.gguf",
        n_layer=3,
        n_embd=64,
        n_head=4,
        n_head_kv=2,
        n_ctx=512,
        tensor_type=tensor_type,
    )
    reader = gguf.GGUFReader(path)
    n_vocab = BUILTIN_VOCAB_SIZE
    n_ff = 192
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.file_type") == file_type
    expected = {
        "llama.context_length": 512,
        "llama.embedding_length": 64,
        "llama.block_count": 3,
        "llama.feed_forward_length": n_ff,
        "llama.rope.dimension_count": 16,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.vocab_size": n_vocab,
        "tokenizer.ggml.bos_token_id": BOS_ID,
        "tokenizer.ggml.eos_token_id": EOS_ID,
        "tokenizer.ggml.unknown_token_id": UNK_ID,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.model": "llama",
        "tokenizer.chat_template": DEFAULT_CHAT_TEMPLATE,
    }
    assert {key: field(reader, key) for key in expected} == expected
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") > 0
    assert field(reader, "llama.rope.freq_base") > 0
    assert len(field(reader, "tokenizer.ggml.tokens")) == n_vocab
    by_name = tensors(reader)
    assert len(by_name) == 3 + 3 * len(BLOCK_TENSORS)
    shapes = {name: [int(n) for n in tensor.shape] for name, tensor in by_name.items()}
    assert shapes["token_embd.weight"] == [64, n_vocab]
    assert shapes["output.weight"] == [64, n_vocab]
    assert shapes["output_norm.weight"] == [64]
    assert shapes["blk.2.attn_q.weight"] == [64, 64]
    assert shapes["blk.2.attn_k.weight"] == [64, 32]
    assert shapes["blk.2.attn_v.weight"] == [64, 32]
    assert shapes["blk.2.attn_output.weight"] == [64, 64]
    assert shapes["blk.2.ffn_gate.weight"] == [64, n_ff]
    assert shapes["blk.2.ffn_down.weight"] == [n_ff, 64]
    for name, tensor in by_name.items():
        is_norm = name.endswith("norm.weight")
        assert tensor.tensor_type == (gguf.GGMLQuantizationType.F32 if is_norm else matrix_type)
    weights = gguf.quants.dequantize(by_name["blk.0.ffn_up.weight"].data, matrix_type)
    assert np.isfinite(weights).all()
    assert 0.01 < float(np.std(weights)) < 0.04


def test_tied_model_without_template_omits_output_and_template(tmp_path: Path) -> None:
    path = write_llama_gguf(
        tmp_path / "tied.gguf",
        n_layer=1,
        n_embd=32,
        n_head=2,
        chat_template=None,
        tie_embeddings=True,
        name="tied test",
    )
    reader = gguf.GGUFReader(path)
    assert "tokenizer.chat_template" not in reader.fields
    assert "output.weight" not in tensors(reader)
    assert field(reader, "general.name") == "tied test"


def test_split_model_is_cut_into_named_shards_with_split_keys(
    split_model: list[Path], tmp_path: Path
) -> None:
    whole = gguf.GGUFReader(write_llama_gguf(tmp_path / "whole.gguf", n_layer=2, n_embd=64, seed=5))
    readers = [gguf.GGUFReader(path) for path in split_model]

    assert [path.name for path in split_model] == [
        "split-2l-00001-of-00002.gguf",
        "split-2l-00002-of-00002.gguf",
    ]
    assert [field(r, "split.no") for r in readers] == [0, 1]
    assert {field(r, "split.count") for r in readers} == {2}
    assert {field(r, "split.tensors.count") for r in readers} == {len(whole.tensors)}
    assert [len(r.tensors) for r in readers] == [11, 10]
    assert field(readers[0], "llama.block_count") == 2
    shards = {t.name: t.data.tobytes() for r in readers for t in r.tensors}
    assert shards == {t.name: t.data.tobytes() for t in whole.tensors}, "same seed, same weights"
    left = sorted(p.name for p in split_model[0].parent.iterdir() if p.name.startswith(".split"))
    assert left == [], "no partial files left beside the shards"


@pytest.mark.parametrize("n_shards", [0, 5, 99])
def test_a_shard_count_the_tensors_cannot_fill_is_refused(tmp_path: Path, n_shards: int) -> None:
    # One layer is 12 tensors: 5 shards of at most 3 would leave the fifth empty.
    with pytest.raises(ValueError, match="shards"):
        write_llama_gguf(tmp_path / "m.gguf", n_layer=1, n_embd=32, n_head=2, n_shards=n_shards)
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_vocabulary_is_spm_with_byte_fallback_and_reachable_words() -> None:
    vocab = build_vocabulary()
    assert len(vocab.tokens) == BUILTIN_VOCAB_SIZE
    assert vocab.tokens[:3] == ["<unk>", "<s>", "</s>"]
    byte_tokens = vocab.tokens[FIRST_BYTE_ID : FIRST_BYTE_ID + 256]
    assert byte_tokens == [f"<0x{value:02X}>" for value in range(256)]
    byte_type = gguf.TokenType.BYTE
    assert set(vocab.token_types[FIRST_BYTE_ID : FIRST_BYTE_ID + 256]) == {byte_type}
    assert len(set(vocab.tokens)) == len(vocab.tokens)
    for word in ("the", "a", "llama", "terminal", "mountains", "The"):
        assert SPACE_MARK + word in vocab.tokens
    # llama.cpp's SPM tokenizer only merges into tokens, so every prefix of a word piece must exist.
    pieces = set(vocab.tokens)
    for token in vocab.tokens[FIRST_BYTE_ID + 256 :]:
        assert all(token[:end] in pieces for end in range(1, len(token)))
    assert len(build_vocabulary(300).tokens) == 300
    padded = build_vocabulary(6000)
    assert len(set(padded.tokens)) == 6000
    with pytest.raises(ValueError, match="n_vocab"):
        build_vocabulary(100)


def test_demo_model_is_a_bigram_table_in_llama_form(demo_model: Path) -> None:
    reader = gguf.GGUFReader(demo_model)
    by_name = tensors(reader)
    width = BUILTIN_VOCAB_SIZE
    assert field(reader, "general.name") == DEMO_MODEL_NAME
    assert field(reader, "llama.block_count") == 8
    assert field(reader, "llama.embedding_length") == width
    assert field(reader, "tokenizer.chat_template") == DEFAULT_CHAT_TEMPLATE
    embedding = np.asarray(by_name["token_embd.weight"].data, dtype=np.float32)
    assert np.array_equal(embedding, np.eye(width, dtype=np.float32))
    for layer in range(8):
        for name in ("attn_output", "ffn_down"):
            assert not np.asarray(by_name[f"blk.{layer}.{name}.weight"].data).any()
    assert np.all(np.asarray(by_name["output_norm.weight"].data) == 1.0)
    eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
    logits = np.asarray(by_name["output.weight"].data, dtype=np.float64).T / math.sqrt(
        1.0 / width + eps
    )
    vocab = build_vocabulary()
    expected = demo_bigram_log_probs(vocab, read_demo_corpus())
    assert np.allclose(logits, expected, atol=0.02)
    ids = vocab.ids()
    llama_row = np.exp(expected[ids[SPACE_MARK + "llama"]])
    assert math.isclose(llama_row.sum(), 1.0, rel_tol=1e-3)
    assert llama_row[EOS_ID] < 1e-6
    assert np.exp(expected[ids["."], EOS_ID]) > 0.05
    assert (expected[:, FIRST_BYTE_ID : FIRST_BYTE_ID + 256] <= -30).all()


@needs_llama
def test_random_model_loads_and_generates_in_llama_cpp(tiny_model: Path) -> None:
    from llama_cpp import Llama

    model = Llama(str(tiny_model), n_ctx=128, verbose=False)
    completion = model.create_completion("The llama", max_tokens=16, temperature=1.0, seed=1)
    assert isinstance(completion, dict)
    assert completion["usage"]["completion_tokens"] > 0
    assert completion["choices"][0]["text"]


@needs_llama
def test_random_model_emits_raw_control_bytes(tmp_path: Path) -> None:
    from llama_cpp import Llama

    path = write_llama_gguf(tmp_path / "bytes.gguf", n_layer=1, n_embd=32, n_vocab=300, seed=5)
    model = Llama(str(path), n_ctx=256, verbose=False)
    completion = model.create_completion("a", max_tokens=96, temperature=1.0, seed=2)
    assert isinstance(completion, dict)
    assert has_control_characters(completion["choices"][0]["text"])


@needs_llama
def test_demo_model_writes_words_from_its_corpus(demo_model: Path) -> None:
    from llama_cpp import Llama

    model = Llama(str(demo_model), n_ctx=256, verbose=False)
    words: list[str] = []
    for seed in range(3):
        completion = model.create_completion("The", max_tokens=40, temperature=0.8, seed=seed)
        assert isinstance(completion, dict)
        text = completion["choices"][0]["text"]
        assert not has_control_characters(text)
        words += text.split()
    known = corpus_words()
    in_corpus = [word for word in words if word.strip(".,;?!") in known]
    assert len(words) >= 10
    assert len(in_corpus) >= 0.8 * len(words)


@needs_llama
def test_demo_chat_replies_use_the_template_and_end(demo_model: Path) -> None:
    from llama_cpp import Llama

    model = Llama(str(demo_model), n_ctx=1024, verbose=False)
    finishes = []
    for seed in range(4):
        reply = model.create_chat_completion(
            [{"role": "user", "content": "Tell me about the sea."}],
            max_tokens=400,
            temperature=0.8,
            seed=seed,
        )
        assert isinstance(reply, dict)
        choice = reply["choices"][0]
        content = choice["message"]["content"]
        assert content is not None
        assert content.strip()
        assert content.strip()[0].isupper()
        finishes.append(choice["finish_reason"])
    assert finishes.count("stop") >= 3


@pytest.mark.parametrize("tensor_type", ["q8_0", "q4_0"])
def test_random_blocks_have_the_spread_of_normal_weights(tmp_path: Path, tensor_type: Any) -> None:
    """Blocks written directly dequantize to values with the normal weights' spread (0.02)."""
    path = write_llama_gguf(
        tmp_path / "b.gguf",
        n_layer=1,
        n_embd=128,
        n_head=4,
        tensor_type=tensor_type,
        weights="blocks",
    )
    reader = gguf.GGUFReader(path)
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    assert values.shape == (352, 128)
    assert 0.015 < float(values.std()) < 0.025
    assert abs(float(values.mean())) < 0.003  # q4_0 quants run -8..7: a mean of -d/2
