"""Which offload levels a sweep measures: parsed from ``--offload`` or chosen by default.

A level is a number of layers on the GPU, from 0 (CPU only) to ``n_layer + 1`` (every layer and
the output layer, llama.cpp's ``-ngl`` maximum), or ``auto``: the level the estimate picks for the
free GPU memory. Syntax (comma-separated, like llama-bench's ``-ngl 0,10,20``): ``8``, ``all``,
``auto``, and ranges ``0-32+8`` (0, 8, 16, 24, 32).

Mixture-of-experts models add where the expert weights go, after a colon: ``all:12`` (every
layer offloaded, the experts of the first 12 kept in RAM, llama.cpp's ``--n-cpu-moe 12``),
``all:all`` (every expert in RAM, ``--cpu-moe``), ``all:~8`` (as many expert layers in RAM as
bring the GPU memory down to what level 8 takes: the two placements compared at the same VRAM).
``experts`` stands for ``all:all`` and ``all:~L`` for each level L above 0 in the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tui_llm.engine.protocol import OffloadValue

_RANGE = re.compile(r"^(\d+)-(\d+)(?:\+(\d+))?$")
DEFAULT_STEPS = 4  # CPU only, then a quarter, half, three quarters, all
EXPERTS_KEYWORD = "experts"


class LevelSyntaxError(ValueError):
    """An ``--offload`` list that cannot be read; ``str()`` says which part and why."""


@dataclass(frozen=True)
class LevelSpec:
    """A level as asked for: a layer count, ``all`` or ``auto`` (resolved when the sweep runs).

    ``experts`` is the number of blocks whose expert weights stay in RAM (``"all"``; ``None``:
    the sweep's load settings decide); ``vram_of`` a plain level whose GPU memory this one
    matches by keeping expert layers in RAM (the count is worked out from the estimate).
    """

    value: int | str
    experts: OffloadValue | None = None
    vram_of: int | None = None

    @property
    def label(self) -> str:
        """The spec as it is typed (``parse_levels`` reads it back)."""
        if self.vram_of is not None:
            return f"{self.value}:~{self.vram_of}"
        if self.experts is not None:
            return f"{self.value}:{self.experts}"
        return str(self.value)

    @property
    def is_expert_level(self) -> bool:
        return self.experts is not None or self.vram_of is not None


def _layers(part: str, whole: str) -> list[LevelSpec]:
    if part in ("all", "auto"):
        return [LevelSpec(part)]
    if part.isdigit():
        return [LevelSpec(int(part))]
    match = _RANGE.match(part)
    if match is None:
        raise LevelSyntaxError(
            f"{whole!r} is not a level (a number, 'all', 'auto', a range such as 0-32+8, "
            f"'{EXPERTS_KEYWORD}', or LAYERS:EXPERTS such as all:12)"
        )
    start, stop, step = int(match[1]), int(match[2]), int(match[3] or 1)
    if step < 1 or stop < start:
        raise LevelSyntaxError(f"{whole!r}: a range goes up, by a step of 1 or more")
    return [LevelSpec(n) for n in range(start, stop + 1, step)]


def _expert_level(part: str) -> LevelSpec:
    layers_text, _, experts = part.partition(":")
    if layers_text != "all" and not layers_text.isdigit():
        raise LevelSyntaxError(f"{part!r}: the layers before ':' are a number or 'all'")
    layers: int | str = layers_text if layers_text == "all" else int(layers_text)
    if experts == "all":
        return LevelSpec(layers, experts="all")
    if experts.isdigit():
        return LevelSpec(layers, experts=int(experts))
    if experts.startswith("~") and experts[1:].isdigit():
        return LevelSpec(layers, vram_of=int(experts[1:]))
    raise LevelSyntaxError(
        f"{part!r}: after ':' comes the expert layers kept in RAM: a number, 'all', or ~LEVEL "
        "(as many as give level LEVEL's VRAM)"
    )


def parse_levels(text: str) -> list[LevelSpec]:
    """The levels of an ``--offload`` list, in order, duplicates dropped; raises
    ``LevelSyntaxError``."""
    specs: list[LevelSpec] = []
    experts_at: int | None = None  # where ``experts`` stood: its levels go there
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise LevelSyntaxError(f"empty level in {text!r}")
        if part == EXPERTS_KEYWORD:
            experts_at = len(specs) if experts_at is None else experts_at
        elif ":" in part:
            specs.append(_expert_level(part))
        else:
            specs.extend(_layers(part, part))
    if experts_at is not None:
        specs[experts_at:experts_at] = expert_levels(specs)
    return list(dict.fromkeys(specs))


def expert_levels(plain: list[LevelSpec]) -> list[LevelSpec]:
    """``all:all``, then ``all:~L`` for each plain level L above 0 in ``plain``: every layer on
    the GPU with the experts in RAM, and the same VRAM as each layer split."""
    matched = [
        LevelSpec("all", vram_of=int(spec.value))
        for spec in plain
        if isinstance(spec.value, int) and spec.value > 0 and not spec.is_expert_level
    ]
    return [LevelSpec("all", experts="all"), *matched]


def default_levels(
    total_layers: int, steps: int = DEFAULT_STEPS, moe: bool = False
) -> list[LevelSpec]:
    """CPU only, evenly spaced levels up to every layer, and the auto level; for a
    mixture-of-experts model (``moe``) the expert levels of those (``expert_levels``) too."""
    layers = sorted({round(total_layers * i / steps) for i in range(steps + 1)})
    plain = [LevelSpec(n) for n in layers]
    partial = [spec for spec in plain if 0 < int(spec.value) < total_layers]
    extra = expert_levels(partial) if moe else []
    return [*plain, LevelSpec("auto"), *extra]


def resolve(spec: LevelSpec, total_layers: int, auto_layers: int | None) -> int | None:
    """A spec as a layer count (capped at ``total_layers``); ``None`` for ``auto`` without an
    estimate."""
    if spec.value == "all":
        return total_layers
    if spec.value == "auto":
        return auto_layers
    return min(int(spec.value), total_layers)
