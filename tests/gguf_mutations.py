"""A mutation corpus of GGUF files: real and generated models with their headers edited.

``field_map`` walks a valid file and records where each header field lies (counts, string
lengths, value and item types, array lengths, tensor dimensions, types and offsets). ``mutants``
turns a valid file into named cases, each a kind of damage a file on disk or from the Hub can
have: cut short, bits flipped, a count, length, type or offset edited, a key or tensor record
duplicated, tensors made to overlap or to run past the end. The same seed gives the same cases.

``run_case`` writes one case to disk (the data section of a large source is left sparse: the
reader never reads it) and reads it with ``read_model_info``, timing it and tracing its peak
Python memory; the outcome is ``"metadata"`` or the kind of the ``GGUFError`` it raised. Anything
else it raises is a defect and is returned as ``"crash: ..."``.
"""

from __future__ import annotations

import os
import random
import re
import struct
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tui_llm.catalog.gguf_reader import GGUFError, read_gguf
from tui_llm.catalog.metadata import read_model_info

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# Array items whose lengths are recorded, at each end of a long string array.
_ITEMS_RECORDED = 4

INTERESTING_U64 = (
    0, 1, 2, 7, 8, 31, 32, 33, 255, 1023, 1024, 1025, 4096, 65535, 65536,
    (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, (1 << 62), (1 << 63) - 1,
    1 << 63, (1 << 64) - 1,
)  # fmt: skip
INTERESTING_U32 = (
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    9,
    10,
    12,
    13,
    30,
    31,
    39,
    40,
    41,
    255,
    1 << 31,
    (1 << 32) - 1,
)


@dataclass(frozen=True)
class Field:
    """One header field of a valid file: what it is, where it starts, how many bytes."""

    # "count", "length", "type", "value", "array_length", "dims", "n_dims", "ggml_type", "offset"
    kind: str
    offset: int
    width: int
    value: int


@dataclass(frozen=True)
class FieldMap:
    """A valid file's header fields and the byte ranges of its records."""

    fields: tuple[Field, ...]
    kv_records: tuple[tuple[int, int], ...]  # (start, end) of each key/value record
    tensor_records: tuple[tuple[int, int], ...]  # (start, end) of each tensor info record
    header_end: int
    data_offset: int


def field_map(raw: bytes) -> FieldMap:
    """Walk the header of a valid GGUF file (``raw``, at least its header) and record its fields."""
    fields: list[Field] = []
    pos = 8

    def u32(kind: str) -> int:
        nonlocal pos
        value: int = _U32.unpack_from(raw, pos)[0]
        fields.append(Field(kind, pos, 4, value))
        pos += 4
        return value

    def u64(kind: str) -> int:
        nonlocal pos
        value: int = _U64.unpack_from(raw, pos)[0]
        fields.append(Field(kind, pos, 8, value))
        pos += 8
        return value

    def string(kind: str = "length") -> str:
        nonlocal pos
        length = u64(kind)
        text = raw[pos : pos + length].decode("utf-8", errors="replace")
        pos += length
        return text

    def value(value_type: int) -> None:
        nonlocal pos
        if value_type in (4, 5):  # uint32, int32: layer and head counts, token ids
            u32("value")
        elif value_type in (10, 11):
            u64("value")
        elif value_type in _SCALAR_SIZES:
            pos += _SCALAR_SIZES[value_type]
        elif value_type == 8:
            string()
        elif value_type == 9:
            item_type = u32("type")
            length = u64("array_length")
            if item_type in _SCALAR_SIZES:
                pos += length * _SCALAR_SIZES[item_type]
                return
            for index in range(length):
                if item_type == 8 and _ITEMS_RECORDED <= index < length - _ITEMS_RECORDED:
                    pos += 8 + _U64.unpack_from(raw, pos)[0]
                else:
                    value(item_type)
        else:
            raise ValueError(f"not a valid file: value type {value_type} at {pos}")

    n_tensors = u64("count")
    n_kv = u64("count")
    kv_records = []
    alignment = 32
    for _ in range(n_kv):
        start = pos
        key = string()
        value_type = u32("type")
        value_start = pos
        value(value_type)
        if key == "general.alignment":
            alignment = _U32.unpack_from(raw, value_start)[0]
        kv_records.append((start, pos))
    tensor_records = []
    for _ in range(n_tensors):
        start = pos
        string()
        n_dims = u32("n_dims")
        for _ in range(n_dims):
            u64("dims")
        u32("ggml_type")
        u64("offset")
        tensor_records.append((start, pos))
    data_offset = -(-pos // alignment) * alignment
    return FieldMap(tuple(fields), tuple(kv_records), tuple(tensor_records), pos, data_offset)


@dataclass(frozen=True)
class Mutant:
    """One case: the file's new header bytes and its size in bytes; past the header it holds
    zeros (the reader reads headers only; the engine sample writes the source's data there)."""

    name: str
    kind: str
    head: bytes
    size: int


def _set(raw: bytearray, item: Field, new: int) -> None:
    fmt = "<I" if item.width == 4 else "<Q"
    raw[item.offset : item.offset + item.width] = struct.pack(fmt, new % (1 << (8 * item.width)))


def _near(rng: random.Random, item: Field, remaining: int) -> int:
    """A value for a field: an interesting one, one near the old, or one near what is left."""
    choice = rng.randrange(5)
    if choice == 0:
        pool = INTERESTING_U32 if item.width == 4 else INTERESTING_U64
        return rng.choice(pool)
    if choice == 1:
        return item.value + rng.choice((-2, -1, 1, 2, 8))
    if choice == 2:
        return remaining + rng.choice((-1, 0, 1, 8))
    if choice == 3:
        return item.value * rng.choice((2, 16, 1 << 20))
    return rng.getrandbits(8 * item.width)


def mutants(source: str, path: Path, count: int, seed: int) -> Iterator[Mutant]:
    """``count`` cases from the valid file at ``path``, mixing every kind of damage."""
    rng = random.Random(seed)
    model = read_gguf(path)
    with open(path, "rb") as handle:
        head = handle.read(model.data_offset)
    fmap = field_map(head)
    size = model.file_size
    data_end = max((t.offset + t.n_bytes for t in model.tensors), default=fmap.data_offset)
    by_kind: dict[str, list[Field]] = {}
    for item in fmap.fields:
        by_kind.setdefault(item.kind, []).append(item)
    makers = [
        "truncate", "bitflip", "count", "length", "type", "value", "array_length", "dims",
        "ggml_type", "offset", "duplicate_key", "duplicate_tensor", "overlap", "past_end",
        "splice",
    ]  # fmt: skip
    for index in range(count):
        kind = makers[index % len(makers)]
        name = f"{source}-{index:05d}-{kind}"
        edited = bytearray(head)
        new_size = size
        if kind == "truncate":
            cut = rng.choice(
                (
                    rng.randrange(fmap.header_end),
                    rng.randrange(fmap.data_offset, size) if size > fmap.data_offset else 0,
                    data_end - rng.randrange(1, 64),
                    rng.choice(fmap.fields).offset + rng.randrange(8),
                )
            )
            cut = max(0, min(cut, size - 1))
            yield Mutant(name, kind, bytes(head[:cut]), cut)
            continue
        if kind == "bitflip":
            for _ in range(rng.choice((1, 1, 2, 4, 8, 32))):
                bit = rng.randrange(8 * fmap.header_end)
                edited[bit // 8] ^= 1 << (bit % 8)
        elif kind in (
            "count", "length", "type", "value", "array_length", "dims", "ggml_type", "offset",
        ):  # fmt: skip
            pool = by_kind.get(kind) or by_kind["length"]
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                item = rng.choice(pool)
                _set(edited, item, _near(rng, item, size - item.offset))
        elif kind == "duplicate_key":
            start, end = rng.choice(fmap.kv_records)
            edited = _insert_record(head, fmap, start, end, count_at=16)
        elif kind == "duplicate_tensor":
            start, end = rng.choice(fmap.tensor_records)
            edited = _insert_record(head, fmap, start, end, count_at=8)
        elif kind == "overlap":
            offsets = by_kind["offset"]
            first, second = rng.sample(offsets, 2) if len(offsets) > 1 else (offsets[0],) * 2
            shift = rng.choice((0, 0, 32, -32, first.value - second.value))
            _set(edited, second, max(0, first.value + shift))
        elif kind == "past_end":
            if rng.random() < 0.5:
                last = max(by_kind["offset"], key=lambda f: f.value)
                _set(edited, last, last.value + rng.choice((32, 1 << 20, size)))
            else:
                new_size = data_end - rng.choice((1, 31, 32, 4096))
                new_size = max(fmap.data_offset, new_size)
        elif kind == "splice":
            start = rng.randrange(fmap.header_end)
            length = rng.choice((1, 4, 8, 13, 24, 100))
            if rng.random() < 0.5:
                del edited[start : start + length]
            else:
                edited[start:start] = bytes(rng.getrandbits(8) for _ in range(length))
        yield Mutant(name, kind, bytes(edited), max(new_size, len(edited)))


def _insert_record(
    head: bytes, fmap: FieldMap, start: int, end: int, *, count_at: int
) -> bytearray:
    """The header with the record [start, end) repeated after itself and its count raised (the
    data section moves with it, so the tensors' offsets still point at their bytes)."""
    edited = bytearray(head[: fmap.header_end])
    edited[end:end] = head[start:end]
    count = _U64.unpack_from(edited, count_at)[0]
    edited[count_at : count_at + 8] = _U64.pack(count + 1)
    padding = -len(edited) % 32
    return edited + bytes(padding)


_ERROR_KINDS = (
    ("truncated", re.compile(r"truncated|run past the end|remain|bytes left|ends at byte")),
    ("not GGUF", re.compile(r"not a GGUF file|empty file|big-endian|unsupported GGUF version")),
    ("over a limit", re.compile(r"over the limit|limit|deeper than|absurd")),
    ("duplicate", re.compile(r"duplicate|more than one shard")),
    ("overlap", re.compile(r"overlaps")),
    ("bad type", re.compile(r"unknown (value|item) type|unsupported ggml type|not an integer")),
    ("bad shape", re.compile(r"dimension|block size")),
    ("bad alignment", re.compile(r"alignment|not a multiple of")),
    ("split", re.compile(r"split|shard")),
)


def error_kind(problem: str) -> str:
    """The kind of a ``GGUFError`` problem, for the outcome table."""
    for kind, pattern in _ERROR_KINDS:
        if pattern.search(problem):
            return kind
    return "other error"


@dataclass(frozen=True)
class Outcome:
    """How one case went: ``"metadata"``, ``"error: KIND"`` or ``"crash: ..."`` (a defect)."""

    name: str
    kind: str
    file_name: str
    result: str
    seconds: float
    peak_bytes: int
    message: str


def write_mutant(mutant: Mutant, path: Path) -> Path:
    """Write the case to ``path``: its header, then zeros (sparse) up to its size."""
    with open(path, "wb") as handle:
        handle.write(mutant.head)
        handle.truncate(mutant.size)
    return path


def run_case(mutant: Mutant, folder: Path, file_name: str = "case.gguf") -> Outcome:
    """Write the case as ``folder/file_name`` (a shard's name finds its partner there) and read
    it with ``read_model_info``; peak memory is measured when ``tracemalloc`` is tracing."""
    path = write_mutant(mutant, folder / file_name)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    try:
        info = read_model_info(path)
        result, message = "metadata", f"{len(info.tensors)} tensors"
    except GGUFError as error:
        result, message = f"error: {error_kind(error.problem)}", str(error)
    except Exception as error:  # any other exception is what the reader must never raise
        result, message = f"crash: {type(error).__name__}", repr(error)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - base
    os.unlink(path)
    return Outcome(mutant.name, mutant.kind, file_name, result, seconds, peak, message)
