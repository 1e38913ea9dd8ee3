"""The valid range of each sampling setting: one table for the settings file and the panel.

Both the settings reader (``config``) and the sampling panel check values against
``SAMPLING_RANGES``, so a value the panel accepts is one the next start reads back.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import NamedTuple


class SamplingRange(NamedTuple):
    """Values from ``low`` to ``high`` (both included; ``high`` None: no upper bound) of ``kind``.

    ``kind`` is ``int`` (a whole number: counts, a seed) or ``float`` (finite; NaN and the
    infinities are outside every range).
    """

    low: float
    high: float | None
    kind: type[int] | type[float]

    def contains(self, value: float) -> bool:
        """Whether ``value`` (already of ``kind``) lies in the range."""
        if not math.isfinite(value) or value < self.low:
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        """The range in words for a one-line message: "a number from 0 to 1"."""
        noun = "a whole number" if self.kind is int else "a number"
        if self.high is None:
            return f"{noun} from {_figure(self.low)} up"
        return f"{noun} from {_figure(self.low)} to {_figure(self.high)}"


def _figure(value: float) -> str:
    """1.0 as "1", 0.5 as "0.5"."""
    return str(int(value)) if float(value).is_integer() else str(value)


#: ``SamplingParams`` field name → its range. ``stop`` (a list of strings) has no range; a
#: missing ``seed`` means a random one.
SAMPLING_RANGES: MappingProxyType[str, SamplingRange] = MappingProxyType(
    {
        "temperature": SamplingRange(0, 100, float),
        "top_p": SamplingRange(0, 1, float),
        "top_k": SamplingRange(0, None, int),
        "min_p": SamplingRange(0, 1, float),
        "repeat_penalty": SamplingRange(0, 100, float),
        "max_tokens": SamplingRange(1, None, int),
        "seed": SamplingRange(0, None, int),
    }
)
