"""Writers of GGUF files: random-weight test models (dense llama, and mixture-of-experts qwen3moe
and qwen2moe), and the file writer that ``table_models`` (the demo and scripted models) builds on.
The SPM vocabulary they share lives in ``vocabulary`` (its names are re-exported here).

Both are real models that llama.cpp loads and runs, so tests and first-time users need no download.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gguf
import numpy as np
import numpy.typing as npt

from tui_llm.catalog.vocabulary import BOS_ID as BOS_ID
from tui_llm.catalog.vocabulary import BUILTIN_VOCAB_SIZE as BUILTIN_VOCAB_SIZE
from tui_llm.catalog.vocabulary import EOS_ID as EOS_ID
from tui_llm.catalog.vocabulary import FIRST_BYTE_ID as FIRST_BYTE_ID
from tui_llm.catalog.vocabulary import SPACE_MARK as SPACE_MARK
from tui_llm.catalog.vocabulary import UNK_ID as UNK_ID
from tui_llm.catalog.vocabulary import Vocabulary as Vocabulary
from tui_llm.catalog.vocabulary import build_vocabulary as build_vocabulary
from tui_llm.catalog.vocabulary import read_demo_corpus as read_demo_corpus

TensorType = Literal["f32", "f16", "q8_0", "q4_0"]
Weights = Literal["normal", "blocks"]
FloatArray = npt.NDArray[np.float32]

# Rendered by llama-cpp-python with jinja2 (trim_blocks), so newlines live inside expressions.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + eos_token + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
RANDOM_MODEL_NAME = "tui-llm random llama (random weights)"
RANDOM_MOE_MODEL_NAME = "tui-llm random mixture of experts (random weights)"

RMS_EPS = 1e-5
_ROPE_FREQ_BASE = 10000.0
_INIT_STD = 0.02
NEVER_LOGIT = -30.0

_TYPE_BY_NAME = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
# Quantized types whose blocks are written directly: (values per block, bytes per block, the
# standard deviation of a uniformly random quant, centred). Layouts from ggml-common.h: block_q8_0
# is an f16 scale then 32 int8; block_q4_0 an f16 scale then 16 bytes of 4-bit quants (minus 8).
_RANDOM_BLOCKS = {
    gguf.GGMLQuantizationType.Q8_0: (32, 34, 73.9),
    gguf.GGMLQuantizationType.Q4_0: (32, 18, 4.61),
}


@dataclass(frozen=True)
class ExpertShape:
    """A mixture-of-experts FFN: n_expert experts of width n_ff_exp, n_expert_used per token.

    n_ff_shexp > 0 adds a shared expert of that width beside the routed ones (qwen2moe's
    ``ffn_*_shexp`` tensors); 0 writes none (qwen3moe).
    """

    n_expert: int
    n_expert_used: int
    n_ff_exp: int
    n_ff_shexp: int = 0

    @property
    def architecture(self) -> str:
        """The llama.cpp architecture the tensors follow: qwen2moe with a shared expert."""
        return "qwen2moe" if self.n_ff_shexp else "qwen3moe"


@dataclass(frozen=True)
class ModelShape:
    """A model's sizes; head_dim may differ from n_embd / n_head (key_length).

    experts=None is a dense llama; otherwise every layer's FFN is a mixture of experts and n_ff
    is only the ``feed_forward_length`` key (the dense width the experts stand in for).
    """

    n_vocab: int
    n_embd: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    experts: ExpertShape | None = None

    @property
    def architecture(self) -> str:
        """``general.architecture``: llama, qwen3moe or qwen2moe."""
        return "llama" if self.experts is None else self.experts.architecture


def _tensor_plan(shape: ModelShape, tie_embeddings: bool) -> list[tuple[str, tuple[int, ...]]]:
    """Names and numpy shapes (GGUF stores them reversed: ne0 is the last) in file order.

    The expert tensors are 3-D, (n_expert, rows, columns): llama.cpp's ``{n_embd, n_ff_exp,
    n_expert}`` for gate and up, ``{n_ff_exp, n_embd, n_expert}`` for down.
    """
    q_width = shape.n_head * shape.head_dim
    kv_width = shape.n_head_kv * shape.head_dim
    experts = shape.experts
    plan: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (shape.n_vocab, shape.n_embd))]
    plan.append(("output_norm.weight", (shape.n_embd,)))
    if not tie_embeddings:
        plan.append(("output.weight", (shape.n_vocab, shape.n_embd)))
    for layer in range(shape.n_layer):
        block = f"blk.{layer}."
        plan += [
            (block + "attn_norm.weight", (shape.n_embd,)),
            (block + "attn_q.weight", (q_width, shape.n_embd)),
            (block + "attn_k.weight", (kv_width, shape.n_embd)),
            (block + "attn_v.weight", (kv_width, shape.n_embd)),
            (block + "attn_output.weight", (shape.n_embd, q_width)),
            (block + "ffn_norm.weight", (shape.n_embd,)),
        ]
        if shape.architecture == "qwen3moe":
            plan += [
                (block + "attn_q_norm.weight", (shape.head_dim,)),
                (block + "attn_k_norm.weight", (shape.head_dim,)),
            ]
        elif shape.architecture == "qwen2moe":
            plan += [
                (block + "attn_q.bias", (q_width,)),
                (block + "attn_k.bias", (kv_width,)),
                (block + "attn_v.bias", (kv_width,)),
            ]
        if experts is None:
            plan += [
                (block + "ffn_gate.weight", (shape.n_ff, shape.n_embd)),
                (block + "ffn_up.weight", (shape.n_ff, shape.n_embd)),
                (block + "ffn_down.weight", (shape.n_embd, shape.n_ff)),
            ]
            continue
        n_expert, n_ff_exp = experts.n_expert, experts.n_ff_exp
        plan += [
            (block + "ffn_gate_inp.weight", (n_expert, shape.n_embd)),
            (block + "ffn_gate_exps.weight", (n_expert, n_ff_exp, shape.n_embd)),
            (block + "ffn_up_exps.weight", (n_expert, n_ff_exp, shape.n_embd)),
            (block + "ffn_down_exps.weight", (n_expert, shape.n_embd, n_ff_exp)),
        ]
        if experts.n_ff_shexp:
            plan += [
                (block + "ffn_gate_inp_shexp.weight", (shape.n_embd,)),
                (block + "ffn_gate_shexp.weight", (experts.n_ff_shexp, shape.n_embd)),
                (block + "ffn_up_shexp.weight", (experts.n_ff_shexp, shape.n_embd)),
                (block + "ffn_down_shexp.weight", (shape.n_embd, experts.n_ff_shexp)),
            ]
    return plan


def _stored_type(
    tensor_name: str, numpy_shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    """Vectors and expert routers stay f32, as llama.cpp's converter and quantizer keep them."""
    if len(numpy_shape) == 1 or tensor_name.endswith("ffn_gate_inp.weight"):
        return gguf.GGMLQuantizationType.F32
    return qtype


def _encode(values: FloatArray, qtype: gguf.GGMLQuantizationType) -> npt.NDArray[np.generic]:
    if qtype == gguf.GGMLQuantizationType.F32:
        return values.astype(np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return values.astype(np.float16)
    encoded: npt.NDArray[np.generic] = gguf.quants.quantize(values, qtype)
    return encoded


def random_blocks(
    rng: np.random.Generator, numpy_shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType
) -> npt.NDArray[np.uint8]:
    """A quantized tensor of random blocks with a fixed scale, as stored bytes (..., rows, bytes).

    About 50 times faster than quantizing normal values, so models of realistic size (several GB)
    are written in seconds for benchmarks; the values have the same spread as ``normal`` weights.
    Raises KeyError for a type without a block layout here (see ``_RANDOM_BLOCKS``).
    """
    per_block, block_bytes, quant_std = _RANDOM_BLOCKS[qtype]
    *outer, columns = numpy_shape
    blocks = rng.integers(0, 256, size=(*outer, columns // per_block, block_bytes), dtype=np.uint8)
    scale = np.frombuffer(np.float16(_INIT_STD / quant_std).tobytes(), dtype=np.uint8)
    blocks[..., :2] = scale
    return blocks.reshape(*outer, -1)


def write_model_file(
    path: Path,
    *,
    shape: ModelShape,
    vocab: Vocabulary,
    tensor_type: TensorType,
    name: str,
    chat_template: str | None,
    tie_embeddings: bool,
    fill: Callable[[str, tuple[int, ...]], FloatArray],
    n_shards: int = 1,
    fill_blocks: Callable[[str, tuple[int, ...]], npt.NDArray[np.uint8]] | None = None,
) -> Path:
    """Write metadata, then each tensor as fill makes it, to temporary files moved into place.

    Streaming keeps memory at one tensor, and the rename means a crash never leaves a half model.
    With n_shards > 1 the tensors are cut into that many files named as llama.cpp's gguf-split
    names them (``STEM-00001-of-00002.gguf``), each with the split.* keys; the first holds all
    other metadata. Returns the path to load: the file, or the first shard. ``fill_blocks``, when
    given, makes each quantized tensor's stored bytes directly (``random_blocks``). The
    architecture (and its expert keys) comes from ``shape.architecture``.
    """
    qtype, file_type = _TYPE_BY_NAME[tensor_type]
    plan = _tensor_plan(shape, tie_embeddings)
    if not 1 <= n_shards <= len(plan):
        raise ValueError(f"n_shards must be 1 to {len(plan)} (the tensor count), not {n_shards}")
    # The files are written in a hidden folder beside the model and renamed out of it when done.
    partial_dir = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial_dir.mkdir(parents=True, exist_ok=True)
    per_shard = 0 if n_shards == 1 else -(-len(plan) // n_shards)
    writer = gguf.GGUFWriter(
        partial_dir / path.name, shape.architecture, split_max_tensors=per_shard
    )
    try:
        writer.add_name(name)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_vocab_size(shape.n_vocab)
        writer.add_context_length(shape.n_ctx)
        writer.add_embedding_length(shape.n_embd)
        writer.add_block_count(shape.n_layer)
        writer.add_feed_forward_length(shape.n_ff)
        writer.add_head_count(shape.n_head)
        writer.add_head_count_kv(shape.n_head_kv)
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
        writer.add_rope_dimension_count(shape.head_dim)
        writer.add_rope_freq_base(_ROPE_FREQ_BASE)
        writer.add_layer_norm_rms_eps(RMS_EPS)
        if shape.experts is not None:
            writer.add_expert_count(shape.experts.n_expert)
            writer.add_expert_used_count(shape.experts.n_expert_used)
            writer.add_expert_feed_forward_length(shape.experts.n_ff_exp)
            if shape.experts.n_ff_shexp:
                writer.add_expert_shared_feed_forward_length(shape.experts.n_ff_shexp)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(vocab.tokens)
        writer.add_token_scores(vocab.scores)
        writer.add_token_types(vocab.token_types)
        writer.add_unk_token_id(UNK_ID)
        writer.add_bos_token_id(BOS_ID)
        writer.add_eos_token_id(EOS_ID)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(True)
        if chat_template is not None:
            writer.add_chat_template(chat_template)
        for tensor_name, numpy_shape in plan:
            tensor_qtype = _stored_type(tensor_name, numpy_shape, qtype)
            if tensor_qtype in _RANDOM_BLOCKS:
                stored_shape = gguf.quant_shape_to_byte_shape(numpy_shape, tensor_qtype)
                writer.add_tensor_info(
                    tensor_name,
                    stored_shape,
                    np.dtype(np.uint8),
                    math.prod(stored_shape),
                    raw_dtype=tensor_qtype,
                )
            else:
                dtype = np.dtype(
                    np.float32 if tensor_qtype == gguf.GGMLQuantizationType.F32 else np.float16
                )
                writer.add_tensor_info(
                    tensor_name, numpy_shape, dtype, math.prod(numpy_shape) * dtype.itemsize
                )
        partial_paths = writer.format_shard_names(partial_dir / path.name)
        if len(partial_paths) != n_shards:
            raise ValueError(f"{len(plan)} tensors cannot be cut into {n_shards} even shards")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor_name, numpy_shape in plan:
            tensor_qtype = _stored_type(tensor_name, numpy_shape, qtype)
            if fill_blocks is not None and tensor_qtype in _RANDOM_BLOCKS:
                writer.write_tensor_data(fill_blocks(tensor_name, numpy_shape))
            else:
                writer.write_tensor_data(_encode(fill(tensor_name, numpy_shape), tensor_qtype))
        writer.close()
        for partial in partial_paths:
            os.replace(partial, path.with_name(partial.name))
    finally:
        writer.close()
        shutil.rmtree(partial_dir, ignore_errors=True)
    return path.with_name(partial_paths[0].name)


def write_llama_gguf(
    path: str | os.PathLike[str],
    *,
    n_layer: int,
    n_embd: int,
    n_vocab: int | None = None,
    n_ctx: int = 2048,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int | None = None,
    seed: int = 0,
    tensor_type: TensorType = "f16",
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    name: str = RANDOM_MODEL_NAME,
    tie_embeddings: bool = False,
    n_shards: int = 1,
    weights: Weights = "normal",
) -> Path:
    """Write a random-weight llama model with a real SPM tokenizer; same arguments, same bytes.

    n_vocab is the total token count (None: BUILTIN_VOCAB_SIZE); n_ff defaults to llama's 8/3 of
    n_embd rounded up to 32; chat_template=None leaves tokenizer.chat_template out of the file.
    n_shards > 1 writes a split model (``STEM-00001-of-0000N.gguf`` beside `path`, as gguf-split
    names them) and returns its first shard; otherwise returns `path`.
    The output is random tokens, raw control bytes included, which terminal-safety tests rely on.
    weights="blocks" writes q8_0/q4_0 matrices as random quantized blocks (``random_blocks``):
    a 7B-shaped model in well under a minute, for benchmarks (the text is as random either way).
    """
    ff = n_ff if n_ff is not None else -(-8 * n_embd // 3 // 32) * 32
    return _write_random_model(
        Path(path),
        n_layer=n_layer,
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_ctx=n_ctx,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=ff,
        experts=None,
        seed=seed,
        tensor_type=tensor_type,
        chat_template=chat_template,
        name=name,
        tie_embeddings=tie_embeddings,
        n_shards=n_shards,
        weights=weights,
    )


def write_moe_gguf(
    path: str | os.PathLike[str],
    *,
    n_layer: int,
    n_embd: int,
    n_expert: int = 8,
    n_expert_used: int = 2,
    n_ff_exp: int | None = None,
    n_ff_shexp: int = 0,
    n_vocab: int | None = None,
    n_ctx: int = 2048,
    n_head: int = 4,
    n_head_kv: int | None = None,
    seed: int = 0,
    tensor_type: TensorType = "f16",
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    name: str = RANDOM_MOE_MODEL_NAME,
    tie_embeddings: bool = False,
    n_shards: int = 1,
    weights: Weights = "normal",
) -> Path:
    """Write a random-weight mixture-of-experts model llama.cpp runs; same arguments, same bytes.

    Every layer routes each token to n_expert_used of n_expert experts of width n_ff_exp (default:
    n_embd / 2 rounded up to 32) through ``ffn_gate_inp``; the experts are the 3-D tensors
    ``blk.N.ffn_{gate,up,down}_exps.weight``. n_ff_shexp=0 writes qwen3moe (attention with
    ``attn_q_norm``/``attn_k_norm``); n_ff_shexp > 0 writes qwen2moe with a shared expert of that
    width (``ffn_{gate,up,down}_shexp``, ``ffn_gate_inp_shexp``) beside the routed ones.
    Other arguments as ``write_llama_gguf``. For a benchmark model of realistic shape, e.g.
    n_layer=24, n_embd=2048, n_expert=32, n_expert_used=4, n_ff_exp=1024 (about 5 GB in q8_0),
    use weights="blocks": the expert tensors are written as random blocks too.
    Raises ValueError for sizes llama.cpp cannot load (n_expert_used outside 1..n_expert, ...).
    """
    ff_exp = n_ff_exp if n_ff_exp is not None else -(-n_embd // 2 // 32) * 32
    if not 1 <= n_expert_used <= n_expert:
        raise ValueError(f"n_expert_used must be 1 to n_expert ({n_expert}), not {n_expert_used}")
    if n_ff_shexp < 0:
        raise ValueError(f"n_ff_shexp must be 0 (no shared expert) or positive, not {n_ff_shexp}")
    experts = ExpertShape(
        n_expert=n_expert, n_expert_used=n_expert_used, n_ff_exp=ff_exp, n_ff_shexp=n_ff_shexp
    )
    return _write_random_model(
        Path(path),
        n_layer=n_layer,
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_ctx=n_ctx,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=ff_exp * n_expert_used,
        experts=experts,
        seed=seed,
        tensor_type=tensor_type,
        chat_template=chat_template,
        name=name,
        tie_embeddings=tie_embeddings,
        n_shards=n_shards,
        weights=weights,
    )


def _write_random_model(
    path: Path,
    *,
    n_layer: int,
    n_embd: int,
    n_vocab: int | None,
    n_ctx: int,
    n_head: int,
    n_head_kv: int | None,
    n_ff: int,
    experts: ExpertShape | None,
    seed: int,
    tensor_type: TensorType,
    chat_template: str | None,
    name: str,
    tie_embeddings: bool,
    n_shards: int,
    weights: Weights,
) -> Path:
    """Check the sizes, then write random normal (or block) weights, unit norms and zero biases."""
    kv_heads = n_head if n_head_kv is None else n_head_kv
    widths = [n_ff] if experts is None else [experts.n_ff_exp, experts.n_ff_shexp or 32]
    if min(n_layer, n_embd, n_head, kv_heads, n_ctx, *widths) < 1:
        raise ValueError("n_layer, n_embd, n_head, n_head_kv, n_ff and n_ctx must be positive")
    if n_embd % n_head or (n_embd // n_head) % 2:
        raise ValueError(f"n_embd {n_embd} must split into {n_head} heads of an even size")
    if n_head % kv_heads:
        raise ValueError(f"n_head {n_head} must be a multiple of n_head_kv {kv_heads}")
    if tensor_type in ("q8_0", "q4_0") and any(width % 32 for width in (n_embd, *widths)):
        raise ValueError(f"{tensor_type} needs n_embd and the FFN widths to be multiples of 32")
    vocab = build_vocabulary(n_vocab)
    shape = ModelShape(
        n_vocab=len(vocab.tokens),
        n_embd=n_embd,
        n_layer=n_layer,
        n_ff=n_ff,
        n_head=n_head,
        n_head_kv=kv_heads,
        head_dim=n_embd // n_head,
        n_ctx=n_ctx,
        experts=experts,
    )
    rng = np.random.default_rng(seed)
    qtype = _TYPE_BY_NAME[tensor_type][0]

    def fill(tensor_name: str, numpy_shape: tuple[int, ...]) -> FloatArray:
        if tensor_name.endswith(".bias"):
            return np.zeros(numpy_shape, dtype=np.float32)
        if len(numpy_shape) == 1:
            return np.ones(numpy_shape, dtype=np.float32)
        values: FloatArray = rng.standard_normal(numpy_shape, dtype=np.float32)
        values *= np.float32(_INIT_STD)
        return values

    return write_model_file(
        path,
        shape=shape,
        vocab=vocab,
        tensor_type=tensor_type,
        name=name,
        chat_template=chat_template,
        tie_embeddings=tie_embeddings,
        fill=fill,
        n_shards=n_shards,
        fill_blocks=(lambda _name, numpy_shape: random_blocks(rng, numpy_shape, qtype))
        if weights == "blocks"
        else None,
    )
