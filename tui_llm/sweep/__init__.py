"""The offload sweep: tokens/s at each GPU offload level, measured through the app's engine.

The runner is ``tui_llm.sweep.run`` (it imports the engine client and the estimate); this package
exports the levels and records only, which the store reads without them.
"""

from tui_llm.sweep.levels import LevelSpec, LevelSyntaxError, default_levels, parse_levels
from tui_llm.sweep.records import LevelResult, MachineInfo, Spread, SweepResult, SweepSettings

__all__ = [
    "LevelResult",
    "LevelSpec",
    "LevelSyntaxError",
    "MachineInfo",
    "Spread",
    "SweepResult",
    "SweepSettings",
    "default_levels",
    "parse_levels",
]
