"""Which offload levels a sweep measures: parsed from ``--offload`` or chosen by default.

A level is a number of layers on the GPU, from 0 (CPU only) to ``n_layer + 1`` (every layer and
the output layer, llama.cpp's ``-ngl`` maximum), or ``auto``: the level the estimate picks for the
free GPU memory. Syntax (comma-separated, like llama-bench's ``-ngl 0,10,20``): ``8``, ``all``,
``auto``, and ranges ``0-32+8`` (0, 8, 16, 24, 32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"^(\d+)-(\d+)(?:\+(\d+))?$")
DEFAULT_STEPS = 4  # CPU only, then a quarter, half, three quarters, all


class LevelSyntaxError(ValueError):
    """An ``--offload`` list that cannot be read; ``str()`` says which part and why."""


@dataclass(frozen=True)
class LevelSpec:
    """A level as asked for: a layer count, ``all`` or ``auto`` (resolved when the sweep runs)."""

    value: int | str

    @property
    def label(self) -> str:
        return str(self.value)


def parse_levels(text: str) -> list[LevelSpec]:
    """The levels of an ``--offload`` list, in order, duplicates dropped; raises
    ``LevelSyntaxError``."""
    specs: list[LevelSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise LevelSyntaxError(f"empty level in {text!r}")
        if part in ("all", "auto"):
            specs.append(LevelSpec(part))
            continue
        if part.isdigit():
            specs.append(LevelSpec(int(part)))
            continue
        match = _RANGE.match(part)
        if match is None:
            raise LevelSyntaxError(
                f"{part!r} is not a level (a number, 'all', 'auto' or a range such as 0-32+8)"
            )
        start, stop, step = int(match[1]), int(match[2]), int(match[3] or 1)
        if step < 1 or stop < start:
            raise LevelSyntaxError(f"{part!r}: a range goes up, by a step of 1 or more")
        specs.extend(LevelSpec(n) for n in range(start, stop + 1, step))
    return list(dict.fromkeys(specs))


def default_levels(total_layers: int, steps: int = DEFAULT_STEPS) -> list[LevelSpec]:
    """CPU only, evenly spaced levels up to every layer, and the auto level."""
    layers = sorted({round(total_layers * i / steps) for i in range(steps + 1)})
    return [*(LevelSpec(n) for n in layers), LevelSpec("auto")]


def resolve(spec: LevelSpec, total_layers: int, auto_layers: int | None) -> int | None:
    """A spec as a layer count (capped at ``total_layers``); ``None`` for ``auto`` without an
    estimate."""
    if spec.value == "all":
        return total_layers
    if spec.value == "auto":
        return auto_layers
    return min(int(spec.value), total_layers)
