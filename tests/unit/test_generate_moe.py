"""Tests for generated mixture-of-experts models: qwen3moe, and qwen2moe with shared experts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import pytest

from tests.unit.test_generate import field, needs_llama, tensors
from tui_llm.catalog.generate import BUILTIN_VOCAB_SIZE, write_moe_gguf

QWEN3MOE_BLOCK = {
    "attn_norm.weight": [64],
    "attn_q.weight": [64, 64],
    "attn_q_norm.weight": [16],
    "attn_k.weight": [64, 32],
    "attn_k_norm.weight": [16],
    "attn_v.weight": [64, 32],
    "attn_output.weight": [64, 64],
    "ffn_norm.weight": [64],
    "ffn_gate_inp.weight": [64, 4],
    "ffn_gate_exps.weight": [64, 96, 4],
    "ffn_up_exps.weight": [64, 96, 4],
    "ffn_down_exps.weight": [96, 64, 4],
}
SHARED_EXPERT_BLOCK = {
    "ffn_gate_inp_shexp.weight": [64],
    "ffn_gate_shexp.weight": [64, 160],
    "ffn_up_shexp.weight": [64, 160],
    "ffn_down_shexp.weight": [160, 64],
}


def small_moe(path: Path, **overrides: Any) -> Path:
    arguments: dict[str, Any] = {
        "n_layer": 3,
        "n_embd": 64,
        "n_head": 4,
        "n_head_kv": 2,
        "n_expert": 4,
        "n_expert_used": 2,
        "n_ff_exp": 96,
    }
    return write_moe_gguf(path, **(arguments | overrides))


@pytest.mark.parametrize("tensor_type", ["f16", "q8_0"])
def test_qwen3moe_has_expert_metadata_and_3d_expert_tensors(
    tmp_path: Path, tensor_type: Any
) -> None:
    reader = gguf.GGUFReader(small_moe(tmp_path / "m.gguf", tensor_type=tensor_type))
    assert field(reader, "general.architecture") == "qwen3moe"
    expected = {
        "qwen3moe.block_count": 3,
        "qwen3moe.embedding_length": 64,
        "qwen3moe.expert_count": 4,
        "qwen3moe.expert_used_count": 2,
        "qwen3moe.expert_feed_forward_length": 96,
        "qwen3moe.attention.head_count_kv": 2,
        "qwen3moe.vocab_size": BUILTIN_VOCAB_SIZE,
    }
    assert {key: field(reader, key) for key in expected} == expected
    assert "qwen3moe.expert_shared_feed_forward_length" not in reader.fields
    by_name = tensors(reader)
    assert len(by_name) == 3 + 3 * len(QWEN3MOE_BLOCK)
    shapes = {name: [int(n) for n in tensor.shape] for name, tensor in by_name.items()}
    assert {key: shapes["blk.2." + key] for key in QWEN3MOE_BLOCK} == QWEN3MOE_BLOCK
    matrix = gguf.GGMLQuantizationType[tensor_type.upper()]
    assert by_name["blk.0.ffn_up_exps.weight"].tensor_type == matrix
    assert by_name["blk.0.ffn_gate_inp.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_shared_expert_writes_qwen2moe_with_shexp_tensors(tmp_path: Path) -> None:
    reader = gguf.GGUFReader(small_moe(tmp_path / "s.gguf", n_ff_shexp=160))
    assert field(reader, "general.architecture") == "qwen2moe"
    assert field(reader, "qwen2moe.expert_shared_feed_forward_length") == 160
    shapes = {name: [int(n) for n in t.shape] for name, t in tensors(reader).items()}
    assert {key: shapes["blk.1." + key] for key in SHARED_EXPERT_BLOCK} == SHARED_EXPERT_BLOCK
    assert shapes["blk.1.attn_q.bias"] == [64]
    assert "blk.1.attn_q_norm.weight" not in shapes


def test_expert_blocks_dequantize_to_the_spread_of_normal_weights(tmp_path: Path) -> None:
    path = small_moe(tmp_path / "b.gguf", n_embd=128, tensor_type="q4_0", weights="blocks")
    by_name = tensors(gguf.GGUFReader(path))
    down = by_name["blk.0.ffn_down_exps.weight"]
    values = gguf.quants.dequantize(down.data, down.tensor_type)
    assert values.shape == (4, 128, 96)
    assert 0.015 < float(values.std()) < 0.025


def test_same_arguments_write_identical_moe_bytes(tmp_path: Path) -> None:
    first = small_moe(tmp_path / "a.gguf", seed=3).read_bytes()
    assert small_moe(tmp_path / "b.gguf", seed=3).read_bytes() == first
    assert small_moe(tmp_path / "c.gguf", seed=4).read_bytes() != first


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_expert_used": 5}, "n_expert_used must be 1 to n_expert"),
        ({"n_expert_used": 0}, "n_expert_used must be 1 to n_expert"),
        ({"n_ff_shexp": -1}, "n_ff_shexp must be 0"),
        ({"n_ff_exp": 100, "tensor_type": "q8_0"}, "multiples of 32"),
    ],
)
def test_sizes_llama_cpp_cannot_load_are_refused(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        small_moe(tmp_path / "bad.gguf", **overrides)


def greedy_text(path: Path) -> tuple[str, dict[str, str]]:
    from llama_cpp import Llama

    model = Llama(str(path), n_ctx=128, verbose=False)
    completion = model.create_completion("The sea", max_tokens=24, temperature=0.0)
    assert isinstance(completion, dict)
    return completion["choices"][0]["text"], model.metadata


@needs_llama
@pytest.mark.parametrize("fixture", ["moe_model", "moe_shexp_model"])
def test_moe_models_load_in_llama_cpp_and_greedy_text_is_deterministic(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    text, metadata = greedy_text(path)
    architecture = metadata["general.architecture"]
    assert architecture == ("qwen3moe" if fixture == "moe_model" else "qwen2moe")
    assert metadata[f"{architecture}.expert_count"] == "8"
    assert len(text) > 20
    assert greedy_text(path)[0] == text


@needs_llama
def test_the_router_picks_experts_the_text_depends_on(tmp_path: Path) -> None:
    """Fewer experts per token give other text: the routed FFN is really computed."""
    two = greedy_text(small_moe(tmp_path / "two.gguf", n_expert_used=2, seed=9))[0]
    one = greedy_text(small_moe(tmp_path / "one.gguf", n_expert_used=1, seed=9))[0]
    assert one != two
