"""Writers of small llama-architecture GGUF files: random-weight test models, and the file writer
and SPM vocabulary that ``table_models`` (the demo and scripted models) build on.

Both are real models that llama.cpp loads and runs, so tests and first-time users need no download.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import gguf
import numpy as np
import numpy.typing as npt

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
BUILTIN_VOCAB_SIZE = 2560

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_BYTE_ID = 3
SPACE_MARK = "\u2581"  # SentencePiece's word-start marker, what a space becomes.

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
class Vocabulary:
    """An SPM ("llama") token list with scores and types, as llama.cpp's tokenizer reads them."""

    tokens: list[str]
    scores: list[float]
    token_types: list[int]

    def ids(self) -> dict[str, int]:
        """Token text to id, for building the demo's bigram table."""
        return {token: token_id for token_id, token in enumerate(self.tokens)}


@dataclass(frozen=True)
class ModelShape:
    """A llama model's sizes; head_dim may differ from n_embd / n_head (key_length)."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int


def read_demo_corpus() -> str:
    """The shipped English text that the demo model's vocabulary and word pairs are counted from."""
    return (resources.files("tui_llm.catalog") / "data" / "demo_corpus.txt").read_text("utf-8")


def _corpus_words_by_frequency(corpus: str) -> list[str]:
    counts: dict[str, int] = {}
    for word in re.findall(r"[A-Za-z]+", corpus):
        counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda word: (-counts[word], word))


def _filler_pieces(taken: set[str]) -> Iterator[str]:
    for length in itertools.count(2):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            piece = SPACE_MARK + "".join(letters)
            if piece not in taken:
                yield piece


def build_vocabulary(n_vocab: int | None = None, corpus: str | None = None) -> Vocabulary:
    """The first n_vocab tokens of the built-in SPM vocabulary (BUILTIN_VOCAB_SIZE when None).

    Order is <unk>, <s>, </s>, the 256 byte tokens, the space mark, printable ASCII, then every
    prefix of "▁word" for the corpus words, most frequent first: llama.cpp's SPM tokenizer only
    merges pairs whose concatenation is a token, so each word needs all its prefixes, and any
    truncation of this order keeps that property. Past the corpus it pads with letter pieces.
    """
    size = BUILTIN_VOCAB_SIZE if n_vocab is None else n_vocab
    if size < FIRST_BYTE_ID + 256:
        raise ValueError(f"n_vocab must be at least {FIRST_BYTE_ID + 256}, got {size}")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    pieces = [SPACE_MARK] + [chr(code) for code in range(0x21, 0x7F)]
    seen = set(pieces)
    for word in _corpus_words_by_frequency(read_demo_corpus() if corpus is None else corpus):
        marked = SPACE_MARK + word
        for end in range(2, len(marked) + 1):
            if marked[:end] not in seen:
                seen.add(marked[:end])
                pieces.append(marked[:end])
        if len(tokens) + len(pieces) >= size:
            break
    pieces.extend(itertools.islice(_filler_pieces(seen), max(0, size - len(tokens) - len(pieces))))
    tokens += pieces[: size - len(tokens)]
    types += [gguf.TokenType.NORMAL] * (size - len(types))
    scores = [0.0] * (FIRST_BYTE_ID + 256) + [-float(i) for i in range(size - FIRST_BYTE_ID - 256)]
    return Vocabulary(tokens=tokens, scores=scores, token_types=[int(t) for t in types])


def _tensor_plan(shape: ModelShape, tie_embeddings: bool) -> list[tuple[str, tuple[int, ...]]]:
    """Names and numpy shapes (rows, columns; GGUF stores them reversed) in file order."""
    q_width = shape.n_head * shape.head_dim
    kv_width = shape.n_head_kv * shape.head_dim
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
            (block + "ffn_gate.weight", (shape.n_ff, shape.n_embd)),
            (block + "ffn_up.weight", (shape.n_ff, shape.n_embd)),
            (block + "ffn_down.weight", (shape.n_embd, shape.n_ff)),
        ]
    return plan


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
    """A quantized 2-D tensor of random blocks with a fixed scale, as stored bytes (rows, bytes).

    About 50 times faster than quantizing normal values, so models of realistic size (several GB)
    are written in seconds for benchmarks; the values have the same spread as ``normal`` weights.
    Raises KeyError for a type without a block layout here (see ``_RANDOM_BLOCKS``).
    """
    per_block, block_bytes, quant_std = _RANDOM_BLOCKS[qtype]
    rows, columns = numpy_shape
    blocks = rng.integers(0, 256, size=(rows, columns // per_block, block_bytes), dtype=np.uint8)
    scale = np.frombuffer(np.float16(_INIT_STD / quant_std).tobytes(), dtype=np.uint8)
    blocks[:, :, :2] = scale
    return blocks.reshape(rows, -1)


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
    given, makes each quantized 2-D tensor's stored bytes directly (``random_blocks``).
    """
    qtype, file_type = _TYPE_BY_NAME[tensor_type]
    plan = _tensor_plan(shape, tie_embeddings)
    if not 1 <= n_shards <= len(plan):
        raise ValueError(f"n_shards must be 1 to {len(plan)} (the tensor count), not {n_shards}")
    # The files are written in a hidden folder beside the model and renamed out of it when done.
    partial_dir = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial_dir.mkdir(parents=True, exist_ok=True)
    per_shard = 0 if n_shards == 1 else -(-len(plan) // n_shards)
    writer = gguf.GGUFWriter(partial_dir / path.name, "llama", split_max_tensors=per_shard)
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
            tensor_qtype = gguf.GGMLQuantizationType.F32 if len(numpy_shape) == 1 else qtype
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
            tensor_qtype = gguf.GGMLQuantizationType.F32 if len(numpy_shape) == 1 else qtype
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
    kv_heads = n_head if n_head_kv is None else n_head_kv
    ff = n_ff if n_ff is not None else -(-8 * n_embd // 3 // 32) * 32
    if min(n_layer, n_embd, n_head, kv_heads, ff, n_ctx) < 1:
        raise ValueError("n_layer, n_embd, n_head, n_head_kv, n_ff and n_ctx must be positive")
    if n_embd % n_head or (n_embd // n_head) % 2:
        raise ValueError(f"n_embd {n_embd} must split into {n_head} heads of an even size")
    if n_head % kv_heads:
        raise ValueError(f"n_head {n_head} must be a multiple of n_head_kv {kv_heads}")
    if tensor_type in ("q8_0", "q4_0") and (n_embd % 32 or ff % 32):
        raise ValueError(f"{tensor_type} needs n_embd and n_ff to be multiples of 32")
    vocab = build_vocabulary(n_vocab)
    shape = ModelShape(
        n_vocab=len(vocab.tokens),
        n_embd=n_embd,
        n_layer=n_layer,
        n_ff=ff,
        n_head=n_head,
        n_head_kv=kv_heads,
        head_dim=n_embd // n_head,
        n_ctx=n_ctx,
    )
    rng = np.random.default_rng(seed)
    qtype = _TYPE_BY_NAME[tensor_type][0]

    def fill(tensor_name: str, numpy_shape: tuple[int, ...]) -> FloatArray:
        if len(numpy_shape) == 1:
            return np.ones(numpy_shape, dtype=np.float32)
        values: FloatArray = rng.standard_normal(numpy_shape, dtype=np.float32)
        values *= np.float32(_INIT_STD)
        return values

    return write_model_file(
        Path(path),
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
