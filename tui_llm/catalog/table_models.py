"""Models whose next token is a table lookup on the current one: the demo and scripted models.

The width equals the vocabulary: token embeddings are one-hot, attention and MLP outputs are zero
so the residual stays one-hot, and RMSNorm scales it by s = 1/sqrt(1/width + eps), so
output.weight = table / s gives logits equal to the table's row for the current token. llama.cpp
loads and runs them like any llama model; greedy decoding follows the table exactly.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tui_llm.catalog.generate import (
    BOS_ID,
    BUILTIN_VOCAB_SIZE,
    DEFAULT_CHAT_TEMPLATE,
    EOS_ID,
    FIRST_BYTE_ID,
    NEVER_LOGIT,
    RMS_EPS,
    SPACE_MARK,
    UNK_ID,
    FloatArray,
    ModelShape,
    Vocabulary,
    build_vocabulary,
    read_demo_corpus,
    write_model_file,
)

DEMO_MODEL_NAME = "tui-llm demo (word bigram, not a language model)"
SCRIPTED_MODEL_NAME = "tui-llm scripted (greedy output is a fixed text)"
DEMO_LAYER_COUNT = 8

_UNIGRAM_WEIGHT = 0.01  # share of every demo row taken from word frequencies, so text can move on
_EOS_WEIGHT = 0.5  # a paragraph end counts half, so replies run several sentences before </s>
_HEAD_DIM = 32
_FF = 32
_CORPUS_PIECE = re.compile(r"[A-Za-z]+|\S")
_SENTENCE_END = frozenset({".", "?", "!"})
# Chat prompts end with "Assistant:" or a newline, so after these the demo starts a sentence.
_DEMO_START_CONTEXTS = ("<s>", ":", "<0x0A>")
_NORMAL_TOKEN = 1
_CONTROL_TOKEN = 3
_SCRIPTED_BASE_VOCAB = 384  # the byte tokens, printable ASCII and some words: prompts tokenize


def _table_model(
    path: Path, vocab: Vocabulary, table: npt.NDArray[np.float64], name: str, template: str | None
) -> Path:
    width = len(vocab.tokens)
    shape = ModelShape(
        n_vocab=width,
        n_embd=width,
        n_layer=DEMO_LAYER_COUNT,
        n_ff=_FF,
        n_head=1,
        n_head_kv=1,
        head_dim=_HEAD_DIM,
        n_ctx=2048,
    )
    norm_scale = 1.0 / math.sqrt(1.0 / width + RMS_EPS)

    def fill(tensor_name: str, numpy_shape: tuple[int, ...]) -> FloatArray:
        if len(numpy_shape) == 1:
            return np.ones(numpy_shape, dtype=np.float32)
        if tensor_name == "token_embd.weight":
            return np.eye(width, dtype=np.float32)
        if tensor_name == "output.weight":
            return np.ascontiguousarray((table.T / norm_scale).astype(np.float32))
        return np.zeros(numpy_shape, dtype=np.float32)

    return write_model_file(
        path,
        shape=shape,
        vocab=vocab,
        tensor_type="f16",
        name=name,
        chat_template=template,
        tie_embeddings=False,
        fill=fill,
    )


def demo_bigram_log_probs(vocab: Vocabulary, corpus: str) -> npt.NDArray[np.float64]:
    """log P(next | current) over the vocabulary, counted from corpus words (rows: current token).

    Paragraph ends count as </s>, so replies stop after a sentence now and then; tokens never seen
    as a context fall back to word frequencies; out-of-vocabulary words break the chain.
    """
    token_ids = vocab.ids()
    size = len(vocab.tokens)
    pair_counts = np.zeros((size, size), dtype=np.float64)
    word_counts = np.zeros(size, dtype=np.float64)
    start_counts = np.zeros(size, dtype=np.float64)
    for paragraph in re.split(r"\n\s*\n", corpus):
        previous: int | None = BOS_ID
        for piece in _CORPUS_PIECE.findall(paragraph):
            current = token_ids.get(SPACE_MARK + piece if piece[0].isalpha() else piece)
            if current is None:
                previous = None
                continue
            word_counts[current] += 1
            if previous is not None:
                pair_counts[previous, current] += 1
                if previous == BOS_ID or vocab.tokens[previous] in _SENTENCE_END:
                    start_counts[current] += 1
            previous = current
        if previous is not None and previous != BOS_ID:
            pair_counts[previous, EOS_ID] += _EOS_WEIGHT
    unigram = word_counts / word_counts.sum()
    starts = start_counts / start_counts.sum()
    row_totals = pair_counts.sum(axis=1, keepdims=True)
    smoothed = (1.0 - _UNIGRAM_WEIGHT) * pair_counts / np.maximum(row_totals, 1.0)
    probs = np.where(row_totals > 0, smoothed + _UNIGRAM_WEIGHT * unigram, unigram)
    for context in _DEMO_START_CONTEXTS:
        if context in token_ids:
            probs[token_ids[context]] = (1.0 - _UNIGRAM_WEIGHT) * starts + _UNIGRAM_WEIGHT * unigram
    with np.errstate(divide="ignore"):
        log_probs: npt.NDArray[np.float64] = np.maximum(np.log(probs), NEVER_LOGIT)
    log_probs[:, [UNK_ID, BOS_ID, *range(FIRST_BYTE_ID, FIRST_BYTE_ID + 256)]] = NEVER_LOGIT
    return log_probs


def write_demo_model(path: str | os.PathLike[str]) -> Path:
    """Write the built-in demo: a word-bigram table of the shipped corpus shaped as 8-layer llama.

    It reads as English and loads in a second, which is all a demo of offload and streaming needs.
    """
    corpus = read_demo_corpus()
    vocab = build_vocabulary(BUILTIN_VOCAB_SIZE, corpus)
    table = demo_bigram_log_probs(vocab, corpus)
    return _table_model(Path(path), vocab, table, DEMO_MODEL_NAME, DEFAULT_CHAT_TEMPLATE)


def write_scripted_model(
    path: str | os.PathLike[str],
    reply: Sequence[str],
    *,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    name: str = SCRIPTED_MODEL_NAME,
    special_tokens: Sequence[str] = (),
) -> Path:
    """Write a model whose greedy reply to any prompt is the tokens of ``reply``, then ``</s>``.

    Each item of ``reply`` becomes one token of that exact text (a leading space is SPM's word
    mark), so a test controls token boundaries: a tag split over two tokens, a token longer than
    llama.cpp's 256-byte piece buffer. Items must be distinct (llama.cpp refuses a vocabulary
    with two tokens of the same text) and must not be a single character
    (those are the byte and ASCII tokens prompts are made of). The reply starts after whatever
    token the prompt ends with; raises ``ValueError`` for a repeated or one-character item.
    ``special_tokens`` are added as control tokens (``<|start_header_id|>``…): what tells a
    model's family when its file has no chat template; an item of ``reply`` named there is
    generated as a control token (as ``<think>`` is in some GGUF files).
    """
    if len(set(reply)) != len(reply):
        raise ValueError("the items of a scripted reply must be distinct (llama.cpp's vocabulary)")
    if any(len(item) < 2 for item in reply):
        raise ValueError("each item of a scripted reply must be at least two characters")
    base = build_vocabulary(_SCRIPTED_BASE_VOCAB)
    pieces = [item.replace(" ", SPACE_MARK) for item in reply]
    known = set(base.tokens)
    clashes = [item for item, piece in zip(reply, pieces, strict=True) if piece in known]
    if clashes:
        raise ValueError(f"scripted items already in the base vocabulary: {clashes}")
    extra = [token for token in special_tokens if token not in reply]
    vocab = Vocabulary(
        tokens=[*base.tokens, *pieces, *extra],
        scores=[*base.scores, *([0.0] * (len(pieces) + len(extra)))],
        token_types=[
            *base.token_types,
            *(_CONTROL_TOKEN if item in special_tokens else _NORMAL_TOKEN for item in reply),
            *([_CONTROL_TOKEN] * len(extra)),
        ],
    )
    width = len(vocab.tokens)
    first = len(base.tokens)
    table = np.full((width, width), NEVER_LOGIT, dtype=np.float64)
    table[:, first] = 0.0  # any prompt: the reply's first token
    for offset in range(len(pieces)):
        row = first + offset
        table[row] = NEVER_LOGIT
        table[row, row + 1 if offset + 1 < len(pieces) else EOS_ID] = 0.0
    return _table_model(Path(path), vocab, table, name, chat_template)
