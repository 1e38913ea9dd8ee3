"""The offload sweep: tokens/s at each GPU offload level, measured through the app's engine."""

from tui_llm.sweep.levels import LevelSpec, LevelSyntaxError, default_levels, parse_levels
from tui_llm.sweep.records import LevelResult, MachineInfo, Spread, SweepResult, SweepSettings
from tui_llm.sweep.run import SweepCancel, SweepPlan, run_sweep

__all__ = [
    "LevelResult",
    "LevelSpec",
    "LevelSyntaxError",
    "MachineInfo",
    "Spread",
    "SweepCancel",
    "SweepPlan",
    "SweepResult",
    "SweepSettings",
    "default_levels",
    "parse_levels",
    "run_sweep",
]
