"""ggml's tensor types: name, elements per block and bytes per block, by type id.

One table for the GGUF reader (tensor sizes), the memory estimate (ggml graph sizes) and the
engine (KV cache types). Kept here so that reading a header never imports gguf (and numpy).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

# ggml types as (name, elements per block, bytes per block); ggml.h / gguf.GGML_QUANT_SIZES.
GGML_TYPES: Mapping[int, tuple[str, int, int]] = MappingProxyType(
    {
        0: ("F32", 1, 4),
        1: ("F16", 1, 2),
        2: ("Q4_0", 32, 18),
        3: ("Q4_1", 32, 20),
        6: ("Q5_0", 32, 22),
        7: ("Q5_1", 32, 24),
        8: ("Q8_0", 32, 34),
        9: ("Q8_1", 32, 40),
        10: ("Q2_K", 256, 84),
        11: ("Q3_K", 256, 110),
        12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176),
        14: ("Q6_K", 256, 210),
        15: ("Q8_K", 256, 292),
        16: ("IQ2_XXS", 256, 66),
        17: ("IQ2_XS", 256, 74),
        18: ("IQ3_XXS", 256, 98),
        19: ("IQ1_S", 256, 50),
        20: ("IQ4_NL", 32, 18),
        21: ("IQ3_S", 256, 110),
        22: ("IQ2_S", 256, 82),
        23: ("IQ4_XS", 256, 136),
        24: ("I8", 1, 1),
        25: ("I16", 1, 2),
        26: ("I32", 1, 4),
        27: ("I64", 1, 8),
        28: ("F64", 1, 8),
        29: ("IQ1_M", 256, 56),
        30: ("BF16", 1, 2),
        34: ("TQ1_0", 256, 54),
        35: ("TQ2_0", 256, 66),
        39: ("MXFP4", 32, 17),
        40: ("NVFP4", 64, 36),
        41: ("Q1_0", 128, 18),
    }
)
REMOVED_GGML_TYPES: Mapping[int, str] = MappingProxyType(
    {
        4: "Q4_2",
        5: "Q4_3",
        31: "Q4_0_4_4",
        32: "Q4_0_4_8",
        33: "Q4_0_8_8",
        36: "IQ4_NL_4_4",
        37: "IQ4_NL_4_8",
        38: "IQ4_NL_8_8",
    }
)


def ggml_type_info(ggml_type: int) -> tuple[str, int, int] | None:
    """Return (name, block size, type size) of a ggml type, or None if it is unknown."""
    known = GGML_TYPES.get(ggml_type)
    if known is not None:
        return known
    return _gguf_package_types().get(ggml_type)


@lru_cache(maxsize=1)
def _gguf_package_types() -> Mapping[int, tuple[str, int, int]]:
    """Types newer than our table, from the installed gguf package, imported only when needed."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    except Exception:
        return {}
    extra: dict[int, tuple[str, int, int]] = {}
    for qtype, (block_size, type_size) in GGML_QUANT_SIZES.items():
        if isinstance(qtype, GGMLQuantizationType) and block_size > 0 and type_size > 0:
            extra[int(qtype)] = (qtype.name, int(block_size), int(type_size))
    return extra


def ggml_type_name(ggml_type: int) -> str:
    """Return the ggml name of a tensor type, e.g. "Q4_K", or "type N" when unknown."""
    info = ggml_type_info(ggml_type)
    if info is not None:
        return info[0]
    return REMOVED_GGML_TYPES.get(ggml_type, f"type {ggml_type}")


def type_ids_by_name() -> dict[str, int]:
    """Lower-case type name (``"q8_0"``) to ggml type id, for the types in the table."""
    return {name.lower(): type_id for type_id, (name, _, _) in GGML_TYPES.items()}
