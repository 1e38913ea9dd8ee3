"""A header-only GGUF reader that is safe on hostile or truncated files.

Every count and length read from the file is checked against the bytes that remain before
anything is allocated or looped over, so a bad file gives one `GGUFError` and never a
`MemoryError`, a hang, or a `struct.error`. Counts also have caps far above any real
model, so a file of crafted records costs at most a second or two and tens of MB (figures in
docs/reliability.md, "GGUF parsing under fuzzing"). The file is memory-mapped and only the
header pages are touched, so a multi-GB model is read in milliseconds. `gguf.GGUFReader` is
not used because it allocates in proportion to counts read from the file.
"""

from __future__ import annotations

import codecs
import mmap
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise, repeat
from pathlib import Path
from types import MappingProxyType

from tui_llm.catalog.ggml_types import ggml_type_info, ggml_type_name

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4
# Arrays up to this many items are kept as tuples; longer ones only as an `ArrayInfo`.
SMALL_ARRAY_MAX = 1024
# Plausibility caps far above any real model; they bound time and memory on a hostile file.
# The most tensors seen are ~71k (384 experts x 61 layers x 3, experts unmerged), the most
# metadata keys ~100, the longest string array ~262k tokens, the longest string a 34 MB
# tokenizer.json; nested arrays are not used by any known model.
MAX_TENSORS = 1 << 17
MAX_KV = 1 << 16
MAX_NAME_BYTES = 1 << 16
MAX_STRING_BYTES = 64 << 20
MAX_STRING_ARRAY = 1 << 21
MAX_NESTED_ITEMS = 1 << 16
MAX_ARRAY_DEPTH = 8
MAX_ELEMENTS = 1 << 62

# GGUF value types (gguf.GGUFValueType).
TYPE_STRING = 8
TYPE_ARRAY = 9
_SCALARS: dict[int, struct.Struct] = {
    0: struct.Struct("<B"),  # uint8
    1: struct.Struct("<b"),  # int8
    2: struct.Struct("<H"),  # uint16
    3: struct.Struct("<h"),  # int16
    4: struct.Struct("<I"),  # uint32
    5: struct.Struct("<i"),  # int32
    6: struct.Struct("<f"),  # float32
    7: struct.Struct("<?"),  # bool
    10: struct.Struct("<Q"),  # uint64
    11: struct.Struct("<q"),  # int64
    12: struct.Struct("<d"),  # float64
}
VALUE_TYPE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0: "uint8",
        1: "int8",
        2: "uint16",
        3: "int16",
        4: "uint32",
        5: "int32",
        6: "float32",
        7: "bool",
        8: "string",
        9: "array",
        10: "uint64",
        11: "int64",
        12: "float64",
    }
)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# name length (8) + n_dims (4) + ggml type (4) + offset (8), for a tensor with no dims.
_MIN_TENSOR_INFO = 24
# key length (8) + value type (4) + the smallest value (1).
_MIN_KV = 13
# array item type (4) + count (8).
_MIN_NESTED_ARRAY = 12


class GGUFError(ValueError):
    """A file that cannot be read as GGUF; `str()` is one line naming the file and the problem."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        text = f"{self.path.name}: {problem}" if self.path is not None else problem
        super().__init__(_one_line(text))

    def __reduce__(self) -> tuple[type[GGUFError], tuple[Path | None, str]]:
        """Pickle by the constructor's arguments, so the error can cross a process boundary."""
        return (GGUFError, (self.path, self.problem))


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long (or too nested) to keep: its item type and length only."""

    item_type: int
    length: int

    @property
    def item_type_name(self) -> str:
        """The GGUF name of the item type, e.g. "string"."""
        return VALUE_TYPE_NAMES.get(self.item_type, f"type {self.item_type}")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's header entry; `shape` is in GGML order (ne[0], the row length, first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    type_name: str
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        """The number of elements (parameters) in the tensor."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class GGUFFile:
    """The parsed header of one GGUF file; metadata values are scalars, tuples or `ArrayInfo`."""

    path: Path
    version: int
    metadata: Mapping[str, object]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse the header of a GGUF file; raise `GGUFError` if it is not a valid one."""
    file_path = Path(path)
    mapped, file_size = _map(file_path)
    try:
        return _Parser(file_path, mapped, file_size).parse()
    finally:
        mapped.close()


def _map(file_path: Path) -> tuple[mmap.mmap, int]:
    """Map a regular, non-empty file read-only; a FIFO or device is refused so nothing blocks."""
    try:
        if not stat.S_ISREG(os.stat(file_path).st_mode):
            raise GGUFError(file_path, "not a regular file")
        with open(file_path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            if file_size == 0:
                raise GGUFError(file_path, "empty file")
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), file_size
    except GGUFError:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GGUFError(file_path, f"cannot read ({reason})") from exc


class _Parser:
    """A cursor over the mapped file that checks every read against the bytes remaining."""

    def __init__(self, path: Path, buf: mmap.mmap, size: int) -> None:
        self.path = path
        self.buf = buf
        self.size = size
        self.pos = 0
        self.nested_items = 0

    def fail(self, problem: str) -> GGUFError:
        return GGUFError(self.path, problem)

    def truncated(self, detail: str) -> GGUFError:
        return self.fail(f"truncated at byte {self.size} (file is {self.size} bytes, {detail})")

    def need(self, n_bytes: int, what: str) -> None:
        if n_bytes > self.size - self.pos:
            raise self.truncated(f"{what} at byte {self.pos} needs {n_bytes} bytes")

    def scalar(self, fmt: struct.Struct, what: str) -> object:
        self.need(fmt.size, what)
        value: object = fmt.unpack_from(self.buf, self.pos)[0]
        self.pos += fmt.size
        return value

    def u32(self, what: str) -> int:
        self.need(4, what)
        value: int = _U32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self, what: str) -> int:
        self.need(8, what)
        value: int = _U64.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return value

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        start = self.pos
        length = self.u64(f"{what} length")
        if length > self.size - self.pos:
            raise self.fail(
                f"{what} at byte {start} claims {length} bytes but only "
                f"{self.size - self.pos} remain (truncated or corrupt)"
            )
        if length > limit:
            raise self.fail(f"{what} at byte {start} is {length} bytes, over the {limit} limit")
        # Decoded from the mapping itself: a long string is not copied to bytes first.
        with memoryview(self.buf) as whole, whole[self.pos : self.pos + length] as raw:
            text: str = codecs.utf_8_decode(raw, "replace", True)[0]
        self.pos += length
        return text

    def count(self, what: str, min_item_bytes: int, cap: int | None = None) -> int:
        start = self.pos
        value = self.u64(what)
        remaining = self.size - self.pos
        if value > remaining // min_item_bytes:
            raise self.fail(
                f"{what} at byte {start} is {value}, more than the {remaining} bytes left can hold"
            )
        if cap is not None and value > cap:
            raise self.fail(f"{what} at byte {start} is {value}, over the limit of {cap}")
        return value

    def parse(self) -> GGUFFile:
        magic = self.buf[:4]
        if magic != GGUF_MAGIC:
            if len(magic) < 4 and GGUF_MAGIC.startswith(magic):
                raise self.truncated("the magic needs 4 bytes")
            raise self.fail(f"not a GGUF file (magic {magic!r})")
        self.pos = 4
        version = self.u32("the version")
        if version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if swapped in SUPPORTED_VERSIONS:
                raise self.fail(f"big-endian GGUF (version {swapped}) is not supported")
            raise self.fail(f"unsupported GGUF version {version}")
        n_tensors = self.count("tensor count", _MIN_TENSOR_INFO, MAX_TENSORS)
        n_kv = self.count("metadata key count", _MIN_KV, MAX_KV)
        metadata: dict[str, object] = {}
        # Read before anything is built from them, so a file of crafted records costs little.
        for index in range(n_kv):
            key = self.string(f"metadata key #{index}", MAX_NAME_BYTES)
            if key in metadata:
                raise self.fail(f"duplicate metadata key {key!r}")
            value_type = self.u32(f"type of {key!r}")
            metadata[key] = self.value(value_type, key, 0)
        alignment = self.alignment(metadata)
        infos = []
        names: set[str] = set()
        for index in range(n_tensors):
            info = self.tensor_info(index)
            if info[0] in names:
                raise self.fail(f"duplicate tensor name {info[0]!r}")
            names.add(info[0])
            infos.append(info)
        header_end = self.pos
        data_offset = -(-header_end // alignment) * alignment
        tensors = self.place_tensors(infos, alignment, data_offset)
        return GGUFFile(
            path=self.path,
            version=version,
            metadata=MappingProxyType(metadata),
            tensors=tensors,
            alignment=alignment,
            data_offset=data_offset,
            file_size=self.size,
        )

    def value(self, value_type: int, key: str, depth: int) -> object:
        fmt = _SCALARS.get(value_type)
        if fmt is not None:
            return self.scalar(fmt, f"value of {key!r}")
        if value_type == TYPE_STRING:
            return self.string(f"string value of {key!r}")
        if value_type == TYPE_ARRAY:
            return self.array(key, depth)
        raise self.fail(f"metadata {key!r} has unknown value type {value_type}")

    def array(self, key: str, depth: int) -> object:
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(f"metadata {key!r} nests arrays deeper than {MAX_ARRAY_DEPTH}")
        item_type = self.u32(f"array item type of {key!r}")
        fmt = _SCALARS.get(item_type)
        if fmt is not None:
            length = self.count(f"array length of {key!r}", fmt.size)
            if length <= SMALL_ARRAY_MAX:
                values = struct.unpack_from(f"<{length}{fmt.format[1:]}", self.buf, self.pos)
                self.pos += length * fmt.size
                return values
            self.pos += length * fmt.size
            return ArrayInfo(item_type, length)
        if item_type == TYPE_STRING:
            length = self.count(f"array length of {key!r}", 8, MAX_STRING_ARRAY)
            if length <= SMALL_ARRAY_MAX:
                return tuple(self.string(f"item {i} of {key!r}") for i in range(length))
            self.skip_strings(length, key)
            return ArrayInfo(item_type, length)
        if item_type == TYPE_ARRAY:
            length = self.count(f"array length of {key!r}", _MIN_NESTED_ARRAY)
            self.nested_items += length
            if self.nested_items > MAX_NESTED_ITEMS:
                raise self.fail(
                    f"metadata {key!r} nests more than {MAX_NESTED_ITEMS} arrays in arrays"
                )
            for _ in range(length):
                self.array(key, depth + 1)
            return ArrayInfo(item_type, length)
        raise self.fail(f"array {key!r} has unknown item type {item_type}")

    def skip_strings(self, length: int, key: str) -> None:
        """Step over `length` strings without decoding them (150k tokens in ~20 ms)."""
        start = self.pos
        pos = start
        unpack = _U64.unpack_from
        buf = self.buf
        try:
            for _ in repeat(None, length):
                pos += 8 + unpack(buf, pos)[0]
        except (struct.error, OverflowError):
            pos = self.size + 1
        if pos > self.size:
            raise self.truncated(f"{length} strings of {key!r} from byte {start} run past the end")
        self.pos = pos

    def alignment(self, metadata: Mapping[str, object]) -> int:
        value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"general.alignment is {value!r}, not an integer")
        if value <= 0 or value & (value - 1):
            raise self.fail(f"general.alignment is {value}, not a power of two")
        return value

    def tensor_info(self, index: int) -> tuple[str, tuple[int, ...], int, int]:
        name = self.string(f"name of tensor #{index}", MAX_NAME_BYTES)
        n_dims = self.u32(f"dimension count of {name!r}")
        if n_dims > GGML_MAX_DIMS:
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
        self.need(8 * n_dims, f"shape of {name!r}")
        shape = struct.unpack_from(f"<{n_dims}q", self.buf, self.pos)
        self.pos += 8 * n_dims
        elements = 1
        for dim in shape:
            if dim <= 0:
                raise self.fail(f"tensor {name!r} has dimension {dim} in shape {list(shape)}")
            elements *= dim
        if elements > MAX_ELEMENTS:
            raise self.fail(f"tensor {name!r} has an absurd shape {list(shape)}")
        ggml_type = self.u32(f"type of {name!r}")
        offset = self.u64(f"offset of {name!r}")
        return name, shape, ggml_type, offset

    def place_tensors(
        self,
        infos: list[tuple[str, tuple[int, ...], int, int]],
        alignment: int,
        data_offset: int,
    ) -> tuple[TensorInfo, ...]:
        tensors: list[TensorInfo] = []
        for name, shape, ggml_type, offset in infos:
            type_info = ggml_type_info(ggml_type)
            if type_info is None:
                raise self.fail(
                    f"tensor {name!r} has unsupported ggml type {ggml_type_name(ggml_type)}"
                )
            type_name, block_size, type_size = type_info
            row = shape[0] if shape else 1
            if row % block_size:
                raise self.fail(
                    f"tensor {name!r} has rows of {row}, not a multiple of the "
                    f"{type_name} block size {block_size}"
                )
            elements = 1
            for dim in shape:
                elements *= dim
            n_bytes = elements // block_size * type_size
            if offset % alignment:
                raise self.fail(
                    f"tensor {name!r} has offset {offset}, not a multiple of {alignment}"
                )
            start = data_offset + offset
            end = start + n_bytes
            if end > self.size:
                raise self.fail(
                    f"truncated at byte {self.size} (file is {self.size} bytes, "
                    f"data of tensor {name!r} ends at byte {end})"
                )
            tensors.append(TensorInfo(name, tuple(shape), ggml_type, type_name, start, n_bytes))
        self.check_overlaps(tensors)
        return tuple(tensors)

    def check_overlaps(self, tensors: list[TensorInfo]) -> None:
        """Refuse two tensors whose data share bytes (llama.cpp would read one as the other)."""
        in_order = sorted(tensors, key=lambda t: t.offset)
        for before, after in pairwise(in_order):
            if after.offset < before.offset + before.n_bytes:
                raise self.fail(
                    f"tensor {after.name!r} at byte {after.offset} overlaps tensor "
                    f"{before.name!r} (bytes {before.offset}-{before.offset + before.n_bytes})"
                )


def _one_line(text: str) -> str:
    """Escape line breaks and other unprintable characters so a message stays on one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
