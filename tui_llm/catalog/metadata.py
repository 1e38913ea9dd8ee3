"""What a model is, read from its GGUF header (all shards of a split model).

`ModelInfo` gathers the facts the UI, the `info` command and the memory estimate need
(architecture, size, quantization, layer and attention shapes, context length, chat
template) so that nothing else has to know GGUF key names.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tui_llm.catalog.gguf_reader import ArrayInfo, GGUFError, GGUFFile, TensorInfo, read_gguf

# llama.cpp's split naming (llama_split_path): PREFIX-00001-of-00003.gguf.
_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_GUESSED_FTYPE = 1024

# llama_ftype (llama.h) -> the name people use for the quantization.
_FILE_TYPES: Mapping[int, str] = MappingProxyType(
    {
        0: "F32",
        1: "F16",
        2: "Q4_0",
        3: "Q4_1",
        4: "Q4_1_SOME_F16",
        5: "Q4_2",
        6: "Q4_3",
        7: "Q8_0",
        8: "Q5_0",
        9: "Q5_1",
        10: "Q2_K",
        11: "Q3_K_S",
        12: "Q3_K_M",
        13: "Q3_K_L",
        14: "Q4_K_S",
        15: "Q4_K_M",
        16: "Q5_K_S",
        17: "Q5_K_M",
        18: "Q6_K",
        19: "IQ2_XXS",
        20: "IQ2_XS",
        21: "Q2_K_S",
        22: "IQ3_XS",
        23: "IQ3_XXS",
        24: "IQ1_S",
        25: "IQ4_NL",
        26: "IQ3_S",
        27: "IQ3_M",
        28: "IQ2_S",
        29: "IQ2_M",
        30: "IQ4_XS",
        31: "IQ1_M",
        32: "BF16",
        33: "Q4_0_4_4",
        34: "Q4_0_4_8",
        35: "Q4_0_8_8",
        36: "TQ1_0",
        37: "TQ2_0",
        38: "MXFP4_MOE",
        39: "NVFP4",
        40: "Q1_0",
    }
)


@dataclass(frozen=True)
class ModelInfo:
    """A model's facts from its GGUF header; per-layer values are tuples where the file has arrays.

    Shapes are None when the file does not say. `tensor_bytes` maps each tensor name to its
    size in bytes and `bytes_by_type` each ggml type name to the bytes stored in that type.
    """

    path: Path
    architecture: str
    name: str
    parameter_count: int
    quantization: str
    n_layer: int | None
    context_length: int | None
    embedding_length: int | None
    feed_forward_length: int | tuple[int, ...] | None
    head_count: int | tuple[int, ...] | None
    head_count_kv: int | tuple[int, ...] | None
    key_length: int | None
    value_length: int | None
    sliding_window: int | None
    expert_count: int | None
    expert_used_count: int | None
    vocab_size: int | None
    has_chat_template: bool
    chat_template: str | None
    file_size: int
    shards: tuple[Path, ...]
    tensors: tuple[TensorInfo, ...]
    tensor_bytes: Mapping[str, int]
    bytes_by_type: Mapping[str, int]
    metadata: Mapping[str, object]
    gguf_version: int

    @property
    def total_tensor_bytes(self) -> int:
        """The bytes of weights over all shards (the file size less headers and padding)."""
        return sum(self.tensor_bytes.values())


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read a model from any one of its files; all shards of a split model must be present."""
    given = Path(path)
    first = read_gguf(given)
    shard_paths = _shard_paths(given, first)
    files = [first] if shard_paths == (given,) else _read_shards(shard_paths, given, first)
    return _build_info(files)


def _shard_paths(given: Path, header: GGUFFile) -> tuple[Path, ...]:
    """List every shard's path in order, or just `given` when the model is not split."""
    split_count = _as_int(header.metadata.get("split.count"))
    if split_count is None or split_count <= 1:
        return (given,)
    match = _SPLIT_NAME.match(given.name)
    if match is None:
        raise GGUFError(
            given,
            f"split.count is {split_count} but the name does not follow "
            f"NAME-00001-of-{split_count:05d}.gguf, so the other shards cannot be found",
        )
    if int(match["count"]) != split_count:
        raise GGUFError(
            given, f"the name says {int(match['count'])} shards, split.count says {split_count}"
        )
    prefix = match["prefix"]
    return tuple(
        given.with_name(f"{prefix}-{number:05d}-of-{split_count:05d}.gguf")
        for number in range(1, split_count + 1)
    )


def _read_shards(
    shard_paths: tuple[Path, ...], given: Path, given_header: GGUFFile
) -> list[GGUFFile]:
    """Read every shard, checking each is present and numbered as its name says."""
    missing = [p for p in shard_paths if p != given and not p.exists()]
    if missing:
        names = ", ".join(p.name for p in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise GGUFError(given, f"split model is incomplete: {names} {verb} missing")
    files: list[GGUFFile] = []
    for index, shard_path in enumerate(shard_paths):
        header = given_header if shard_path == given else read_gguf(shard_path)
        split_no = _as_int(header.metadata.get("split.no"))
        split_count = _as_int(header.metadata.get("split.count"))
        if split_no != index or split_count != len(shard_paths):
            raise GGUFError(
                shard_path,
                f"split.no/split.count are {split_no}/{split_count}, "
                f"expected {index}/{len(shard_paths)} (shards of different models?)",
            )
        files.append(header)
    expected = _as_int(files[0].metadata.get("split.tensors.count"))
    total = sum(len(f.tensors) for f in files)
    if expected is not None and expected != total:
        raise GGUFError(
            shard_paths[0], f"split.tensors.count is {expected} but the shards hold {total}"
        )
    return files


def _build_info(files: list[GGUFFile]) -> ModelInfo:
    """Combine one or more shard headers (the first holds the metadata) into a ModelInfo."""
    head = files[0]
    meta = head.metadata
    arch = _as_str(meta.get("general.architecture")) or "unknown"
    tensors = tuple(t for f in files for t in f.tensors)
    tensor_bytes: dict[str, int] = {}
    by_type: Counter[str] = Counter()
    for tensor in tensors:
        if tensor.name in tensor_bytes:
            raise GGUFError(head.path, f"tensor {tensor.name!r} appears in more than one shard")
        tensor_bytes[tensor.name] = tensor.n_bytes
        by_type[tensor.type_name] += tensor.n_bytes
    template = _as_str(meta.get("tokenizer.chat_template"))

    def arch_int(key: str) -> int | None:
        return _as_int(meta.get(f"{arch}.{key}"))

    def arch_ints(key: str) -> int | tuple[int, ...] | None:
        return _as_int_or_ints(meta.get(f"{arch}.{key}"))

    return ModelInfo(
        path=head.path,
        architecture=arch,
        name=_as_str(meta.get("general.name")) or _model_stem(head.path),
        parameter_count=sum(t.n_elements for t in tensors),
        quantization=_quantization(meta.get("general.file_type"), by_type),
        n_layer=arch_int("block_count"),
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        feed_forward_length=arch_ints("feed_forward_length"),
        head_count=arch_ints("attention.head_count"),
        head_count_kv=arch_ints("attention.head_count_kv"),
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        sliding_window=arch_int("attention.sliding_window"),
        expert_count=arch_int("expert_count"),
        expert_used_count=arch_int("expert_used_count"),
        vocab_size=_vocab_size(meta, arch),
        has_chat_template=bool(template),
        chat_template=template or None,
        file_size=sum(f.file_size for f in files),
        shards=tuple(f.path for f in files),
        tensors=tensors,
        tensor_bytes=MappingProxyType(tensor_bytes),
        bytes_by_type=MappingProxyType(dict(by_type.most_common())),
        metadata=meta,
        gguf_version=head.version,
    )


def quantization_name(file_type: int) -> str:
    """Name a llama_ftype value as people do, e.g. 15 -> "Q4_K_M"."""
    guessed = bool(file_type & _GUESSED_FTYPE)
    base = file_type & ~_GUESSED_FTYPE
    name = _FILE_TYPES.get(base, f"ftype {base}")
    return f"{name} (guessed)" if guessed else name


def _quantization(file_type: object, by_type: Mapping[str, int]) -> str:
    """Use general.file_type, or else the tensor type holding the most bytes."""
    ftype = _as_int(file_type)
    if ftype is not None and ftype >= 0:
        return quantization_name(ftype)
    if not by_type:
        return "unknown"
    return max(sorted(by_type), key=lambda type_name: by_type[type_name])


def _vocab_size(meta: Mapping[str, object], arch: str) -> int | None:
    """Count the tokenizer's tokens, falling back to {arch}.vocab_size."""
    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):
        return tokens.length
    if isinstance(tokens, tuple):
        return len(tokens)
    return _as_int(meta.get(f"{arch}.vocab_size"))


def _model_stem(path: Path) -> str:
    """The file name without .gguf and without a -00001-of-00003 split suffix."""
    match = _SPLIT_NAME.match(path.name)
    return match["prefix"] if match else path.stem


def _as_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _as_int_or_ints(value: object) -> int | tuple[int, ...] | None:
    if isinstance(value, tuple):
        ints = tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))
        return ints if ints and len(ints) == len(value) else None
    return _as_int(value)


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def human_bytes(n: int) -> str:
    """Format a byte count in binary units, e.g. "1.5 GiB", "512 MiB", "37 B"."""
    if abs(n) < 1024:
        return f"{n} B"
    return _scaled(n, 1024, (" KiB", " MiB", " GiB", " TiB", " PiB", " EiB"))


def human_count(n: int) -> str:
    """Format a count with a decimal suffix, e.g. "7.2B", "410M", "1.1K"."""
    if abs(n) < 1000:
        return str(n)
    return _scaled(n, 1000, ("K", "M", "B", "T", "Q"))


def _scaled(n: int, base: int, units: tuple[str, ...]) -> str:
    """Divide by `base` until the rounded value is below it (so 1023.97 KiB shows as 1 MiB)."""
    sign = "-" if n < 0 else ""
    value = float(abs(n))
    for unit in units[:-1]:
        value /= base
        text = _short_number(value)
        if float(text) < base:
            return f"{sign}{text}{unit}"
    return f"{sign}{_short_number(value / base)}{units[-1]}"


def _short_number(value: float) -> str:
    """One decimal below 100 (without a trailing .0), none above."""
    if round(value, 1) < 100:
        text = f"{value:.1f}"
        return text[:-2] if text.endswith(".0") else text
    return f"{value:.0f}"


def _per_layer(value: int | tuple[int, ...] | None) -> str:
    """Show a per-layer array compactly: one value if all agree, else min-max."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if len(set(value)) == 1:
        return str(value[0])
    return f"{min(value)}-{max(value)} per layer"


def format_info(info: ModelInfo) -> str:
    """Render a ModelInfo as aligned "label  value" lines for `tui-llm info`."""

    def opt(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    size = human_bytes(info.file_size)
    if len(info.shards) > 1:
        size += f" in {len(info.shards)} shards"
    heads = _per_layer(info.head_count)
    if info.head_count_kv is not None:
        heads += f" (KV {_per_layer(info.head_count_kv)})"
    by_type = ", ".join(f"{name} {human_bytes(n)}" for name, n in info.bytes_by_type.items())
    template = (
        f"yes ({len(info.chat_template):,} chars)" if info.chat_template is not None else "no"
    )
    rows: list[tuple[str, str]] = [
        ("Name", info.name),
        ("File", str(info.path)),
        ("Architecture", info.architecture),
        ("Parameters", f"{human_count(info.parameter_count)} ({info.parameter_count:,})"),
        ("Quantization", info.quantization),
        ("Size", size),
        ("Layers", opt(info.n_layer)),
        ("Context length", opt(info.context_length)),
        ("Embedding", opt(info.embedding_length)),
        ("Feed-forward", _per_layer(info.feed_forward_length)),
        ("Attention heads", heads),
    ]
    if info.sliding_window is not None:
        rows.append(("Sliding window", f"{info.sliding_window:,}"))
    if info.expert_count is not None:
        rows.append(("Experts", f"{info.expert_count} ({opt(info.expert_used_count)} used)"))
    rows += [
        ("Vocabulary", opt(info.vocab_size)),
        ("Chat template", template),
        ("Tensors", f"{len(info.tensors):,}" + (f": {by_type}" if by_type else "")),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def info_to_json(info: ModelInfo) -> dict[str, object]:
    """Return a JSON-serialisable dict of a ModelInfo (paths as strings, tuples as lists)."""

    def plain(value: int | tuple[int, ...] | None) -> int | list[int] | None:
        return list(value) if isinstance(value, tuple) else value

    return {
        "path": str(info.path),
        "name": info.name,
        "architecture": info.architecture,
        "parameter_count": info.parameter_count,
        "quantization": info.quantization,
        "file_size": info.file_size,
        "shards": [str(p) for p in info.shards],
        "gguf_version": info.gguf_version,
        "n_layer": info.n_layer,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "feed_forward_length": plain(info.feed_forward_length),
        "head_count": plain(info.head_count),
        "head_count_kv": plain(info.head_count_kv),
        "key_length": info.key_length,
        "value_length": info.value_length,
        "sliding_window": info.sliding_window,
        "expert_count": info.expert_count,
        "expert_used_count": info.expert_used_count,
        "vocab_size": info.vocab_size,
        "has_chat_template": info.has_chat_template,
        "chat_template": info.chat_template,
        "tensor_count": len(info.tensors),
        "bytes_by_type": dict(info.bytes_by_type),
    }
