"""The built-in SPM ("llama") vocabulary of the generated models: byte tokens, then word pieces
counted from the shipped demo corpus, so llama.cpp's tokenizer turns English into whole words."""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import gguf

BUILTIN_VOCAB_SIZE = 2560

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_BYTE_ID = 3
SPACE_MARK = "\u2581"  # SentencePiece's word-start marker, what a space becomes.


@dataclass(frozen=True)
class Vocabulary:
    """An SPM ("llama") token list with scores and types, as llama.cpp's tokenizer reads them."""

    tokens: list[str]
    scores: list[float]
    token_types: list[int]

    def ids(self) -> dict[str, int]:
        """Token text to id, for building the demo's bigram table."""
        return {token: token_id for token_id, token in enumerate(self.tokens)}


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
