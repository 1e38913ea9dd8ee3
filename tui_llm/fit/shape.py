"""A model's shapes as llama.cpp sees them: which block each tensor is in, and the graph's shapes.

Read once from a :class:`~tui_llm.catalog.metadata.ModelInfo` (all shards of a split model) for
:mod:`tui_llm.fit.estimate`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tui_llm.catalog.ggml_types import ggml_type_info
from tui_llm.catalog.gguf_reader import TensorInfo, read_gguf
from tui_llm.catalog.metadata import ModelInfo
from tui_llm.fit.llama_graph import GraphShape, LayerShape, MoeShape
from tui_llm.fit.placement import EXPERT_TENSORS

_INPUT_TENSORS = ("token_embd.", "position_embd.", "token_types.", "per_layer_token_embd.")
_REPEATED_TENSORS = ("rope_freqs.", "rope_factors_long.", "rope_factors_short.")
_BLOCK = re.compile(r"^blk\.(\d+)\.")
_EXPERTS = re.compile(EXPERT_TENSORS)
# Layers that use a sliding window, by architecture: a pattern n means n-1 SWA layers, 1 full.
_SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "llama4": 4}


class EstimateError(ValueError):
    """The model's header lacks what an estimate needs (one line for the user)."""


def per_layer(value: int | tuple[int, ...] | None, il: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, tuple):
        return value[il] if il < len(value) else value[-1]
    return value


def _layer_of(name: str, n_layer: int) -> int | None:
    """The block a tensor belongs to: 0..n_layer-1, ``n_layer`` for the output layer, -1 input."""
    match = _BLOCK.match(name)
    if match:
        return int(match[1]) if int(match[1]) < n_layer else n_layer
    if name.startswith(_INPUT_TENSORS):
        return -1
    if name.startswith(_REPEATED_TENSORS):
        return None
    return n_layer


@dataclass(frozen=True)
class ModelShape:
    """What the estimate reads from a ModelInfo, checked once."""

    info: ModelInfo
    n_layer: int
    n_vocab: int
    graph: GraphShape
    tied_output: bool
    layer_of: Mapping[str, int | None]
    shard_of: Mapping[str, int]
    offsets: Mapping[str, int]
    row_padding: Mapping[str, int]
    swa_layers: frozenset[int]
    sliding_window: int
    expert_tensors: frozenset[str] = frozenset()  # what --n-cpu-moe moves to host memory


def _row_padding(tensor: TensorInfo) -> int:
    """Bytes CUDA adds to a quantized tensor whose rows are not a multiple of 512 elements."""
    type_info = ggml_type_info(tensor.ggml_type)
    row = tensor.shape[0] if tensor.shape else 1
    if type_info is None or type_info[1] <= 1 or row % 512 == 0:
        return 0
    _, block, size = type_info
    return (512 - row % 512) // block * size


def _shards(info: ModelInfo) -> dict[str, int]:
    if len(info.shards) <= 1:
        return dict.fromkeys(info.tensor_bytes, 0)
    owner: dict[str, int] = {}
    for index, shard in enumerate(info.shards):
        for tensor in read_gguf(shard).tensors:
            owner[tensor.name] = index
    return owner


def _swa_layers(info: ModelInfo, n_layer: int) -> frozenset[int]:
    if not info.sliding_window:
        return frozenset()
    pattern = info.metadata.get(f"{info.architecture}.attention.sliding_window_pattern")
    if isinstance(pattern, tuple) and len(pattern) == n_layer:
        return frozenset(il for il, is_swa in enumerate(pattern) if is_swa)
    period = pattern if isinstance(pattern, int) else _SWA_PATTERNS.get(info.architecture)
    if not period:
        return frozenset()
    return frozenset(il for il in range(n_layer) if il % period < period - 1)


# role -> tensor name in a block, for mixture-of-experts feed-forward blocks
_MOE_ROLES = {
    "gate_inp": "ffn_gate_inp.weight",
    "up_exps": "ffn_up_exps.weight",
    "gate_exps": "ffn_gate_exps.weight",
    "down_exps": "ffn_down_exps.weight",
    "gate_inp_shexp": "ffn_gate_inp_shexp.weight",
    "up_shexp": "ffn_up_shexp.weight",
    "gate_shexp": "ffn_gate_shexp.weight",
    "down_shexp": "ffn_down_shexp.weight",
}
# Architectures whose routing weights are renormalised over the chosen experts (norm_w in
# llama.cpp's build_moe_ffn calls).
_NORMALISED_ROUTING = frozenset({"llama", "qwen3moe", "mixtral"})


def _moe_shape(info: ModelInfo, tensors: Mapping[str, TensorInfo], prefix: str) -> MoeShape | None:
    """The block's expert FFN, from its tensors' shapes; None for a dense block."""
    up = tensors.get(prefix + "ffn_up_exps.weight")
    if up is None or len(up.shape) < 3 or not info.expert_used_count:
        return None
    shared = tensors.get(prefix + "ffn_up_shexp.weight")
    scale = info.metadata.get(f"{info.architecture}.expert_weights_scale")
    return MoeShape(
        n_expert=up.shape[2],
        n_expert_used=info.expert_used_count,
        n_ff_exp=up.shape[1],
        has_gate=prefix + "ffn_gate_exps.weight" in tensors,
        norm_weights=info.architecture in _NORMALISED_ROUTING,
        weights_scale=float(scale) if isinstance(scale, (int, float)) else 0.0,
        n_ff_shexp=shared.shape[1] if shared is not None and len(shared.shape) > 1 else 0,
        shexp_gate=prefix + "ffn_gate_inp_shexp.weight" in tensors,
    )


_BLOCK = re.compile(r"blk\.(\d+)\.")


def model_shape(info: ModelInfo) -> ModelShape:
    n_layer = info.n_layer
    n_embd = info.embedding_length
    if not n_layer or not n_embd:
        raise EstimateError(f"{info.path.name}: the header gives no layer count or width")
    tensors = {t.name: t for t in info.tensors}
    embd = tensors.get("token_embd.weight")
    n_vocab = info.vocab_size or (embd.shape[1] if embd is not None and len(embd.shape) > 1 else 0)
    if not n_vocab:
        raise EstimateError(f"{info.path.name}: the header gives no vocabulary size")
    # A header that claims more blocks than the file has tensors for (a damaged or hostile file)
    # would have the estimate rebuild that many distinct layers: minutes for 100,000. llama.cpp
    # refuses such a file anyway ("missing tensor").
    with_tensors = {int(found[1]) for name in tensors if (found := _BLOCK.match(name))}
    present = sum(1 for il in with_tensors if il < n_layer)
    if present < n_layer:
        raise EstimateError(
            f"{info.path.name}: the header gives {n_layer} layers, the file has tensors for "
            f"{present}"
        )
    n_head_default = per_layer(info.head_count, 0, 1) or 1
    layers = []
    for il in range(n_layer):
        n_head = per_layer(info.head_count, il, n_head_default) or n_head_default
        n_head_kv = per_layer(info.head_count_kv, il, n_head)
        head_k = info.key_length or n_embd // n_head
        head_v = info.value_length or head_k
        prefix = f"blk.{il}."
        n_ff = per_layer(info.feed_forward_length, il, 4 * n_embd)
        roles = {
            "q": "attn_q.weight",
            "k": "attn_k.weight",
            "v": "attn_v.weight",
            "qkv": "attn_qkv.weight",
            "o": "attn_output.weight",
            "up": "ffn_up.weight",
            "gate": "ffn_gate.weight",
            "down": "ffn_down.weight",
            **_MOE_ROLES,
        }
        matrix_bytes = tuple(
            (role, info.tensor_bytes[prefix + name])
            for role, name in roles.items()
            if prefix + name in info.tensor_bytes
        )
        moe = _moe_shape(info, tensors, prefix)
        layers.append(
            LayerShape(
                n_head=n_head,
                n_head_kv=n_head_kv,
                head_dim_k=head_k,
                head_dim_v=head_v,
                n_ff=n_ff,
                has_gate=prefix + "ffn_gate.weight" in tensors,
                fused_qkv=prefix + "attn_qkv.weight" in tensors,
                qkv_bias=prefix + "attn_q.bias" in tensors or prefix + "attn_qkv.bias" in tensors,
                out_bias=prefix + "attn_output.bias" in tensors,
                qk_norm=prefix + "attn_q_norm.weight" in tensors,
                matrix_bytes=matrix_bytes,
                moe=moe,
            )
        )
    tied = "output.weight" not in tensors
    embd_bytes = info.tensor_bytes.get("token_embd.weight", n_vocab * n_embd * 2)
    graph = GraphShape(
        n_embd=n_embd,
        n_vocab=n_vocab,
        layers=tuple(layers),
        has_rope_freqs="rope_freqs.weight" in tensors,
        output_bytes=info.tensor_bytes.get("output.weight", embd_bytes),
        token_embd_bytes=embd_bytes,
    )
    return ModelShape(
        info=info,
        n_layer=n_layer,
        n_vocab=n_vocab,
        graph=graph,
        tied_output=tied,
        layer_of={name: _layer_of(name, n_layer) for name in tensors},
        shard_of=_shards(info),
        offsets={name: t.offset for name, t in tensors.items()},
        row_padding={name: _row_padding(t) for name, t in tensors.items()},
        swa_layers=_swa_layers(info, n_layer),
        sliding_window=info.sliding_window or 0,
        expert_tensors=frozenset(
            name for name in tensors if _BLOCK.match(name) and _EXPERTS.search(name)
        ),
    )
