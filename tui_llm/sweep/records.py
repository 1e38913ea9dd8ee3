"""What an offload sweep measured: one row per level, and what the figures were measured on.

Every figure says where it came from: the llama.cpp build and devices, llama-cpp-python's
version, threads, batch sizes, context, the CPU and GPU names and the driver, so a table read
later (or compared with another machine's) can be trusted. Plain data, JSON both ways.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tui_llm.engine.protocol import DeviceInfo, LoadSettings, OffloadValue, load_settings_from_json

LevelStatus = Literal["ok", "skipped", "failed", "cancelled"]


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements and their lowest and highest."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class LevelResult:
    """One offload level: its figures, or why it was skipped or failed.

    ``gpu_layers`` is the level asked for (``None``: ``auto`` without an estimate);
    ``offloaded_layers`` what llama.cpp reported; tokens/s and seconds are medians of the repeats
    with their range; ``bytes_by_device`` llama.cpp's buffers per device; ``vram_used_bytes``
    NVML's used memory at the end of the level (``None`` without NVML); ``n_cpu_moe`` the
    blocks whose expert weights stayed in RAM (a count or ``"all"``; 0 for a dense model).
    """

    label: str
    gpu_layers: int | None
    status: LevelStatus
    reason: str = ""
    offloaded_layers: int | None = None
    prompt_tokens_per_s: Spread | None = None
    gen_tokens_per_s: Spread | None = None
    time_to_first_token_s: Spread | None = None
    load_s: float | None = None
    bytes_by_device: tuple[tuple[str, int], ...] = ()
    vram_used_bytes: int | None = None
    n_cpu_moe: OffloadValue = 0


@dataclass(frozen=True)
class MachineInfo:
    """What the figures were measured on."""

    cpu: str
    gpus: tuple[str, ...] = ()
    driver: str | None = None
    llama_cpp_python: str = ""
    system_info: str = ""  # llama.cpp's build and CPU features (llama_print_system_info)
    devices: tuple[DeviceInfo, ...] = ()  # llama.cpp's devices: the build's backends


@dataclass(frozen=True)
class SweepSettings:
    """How each level was measured (the load settings' offload is the level's own)."""

    load: LoadSettings
    prompt_tokens: int
    gen_tokens: int
    repeats: int


@dataclass
class SweepResult:
    """A sweep of one model: its rows in the order measured, and how and where."""

    model_path: str
    model_name: str
    total_layers: int
    settings: SweepSettings
    machine: MachineInfo
    started: float  # seconds since the epoch
    levels: list[LevelResult] = field(default_factory=list)

    def cpu_only(self) -> LevelResult | None:
        return next((r for r in self.levels if r.status == "ok" and r.gpu_layers == 0), None)

    def speedup(self, row: LevelResult) -> float | None:
        """Generation tokens/s of ``row`` against CPU only (``None`` without both)."""
        base = self.cpu_only()
        if base is None or base.gen_tokens_per_s is None or row.gen_tokens_per_s is None:
            return None
        if base.gen_tokens_per_s.median <= 0:
            return None
        return row.gen_tokens_per_s.median / base.gen_tokens_per_s.median

    def fastest(self) -> LevelResult | None:
        """The measured level with the highest generation tokens/s (it fit: it loaded)."""
        measured = [r for r in self.levels if r.status == "ok" and r.gen_tokens_per_s]
        return max(measured, key=lambda r: r.gen_tokens_per_s.median, default=None)  # type: ignore[union-attr]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepResult:
        """The inverse of ``to_json``; raises ``KeyError``/``TypeError`` on other data."""
        settings = data["settings"]
        machine = data["machine"]
        return cls(
            model_path=data["model_path"],
            model_name=data["model_name"],
            total_layers=data["total_layers"],
            settings=SweepSettings(
                load=load_settings_from_json(settings["load"]),
                prompt_tokens=settings["prompt_tokens"],
                gen_tokens=settings["gen_tokens"],
                repeats=settings["repeats"],
            ),
            machine=MachineInfo(
                cpu=machine["cpu"],
                gpus=tuple(machine.get("gpus", ())),
                driver=machine.get("driver"),
                llama_cpp_python=machine.get("llama_cpp_python", ""),
                system_info=machine.get("system_info", ""),
                devices=tuple(DeviceInfo(**d) for d in machine.get("devices", ())),
            ),
            started=data["started"],
            levels=[_level_from_json(level) for level in data["levels"]],
        )


def _spread(value: Any) -> Spread | None:
    return None if value is None else Spread(**value)


def _level_from_json(data: dict[str, Any]) -> LevelResult:
    return LevelResult(
        label=data["label"],
        gpu_layers=data["gpu_layers"],
        status=data["status"],
        reason=data.get("reason", ""),
        offloaded_layers=data.get("offloaded_layers"),
        prompt_tokens_per_s=_spread(data.get("prompt_tokens_per_s")),
        gen_tokens_per_s=_spread(data.get("gen_tokens_per_s")),
        time_to_first_token_s=_spread(data.get("time_to_first_token_s")),
        load_s=data.get("load_s"),
        bytes_by_device=tuple((str(d), int(b)) for d, b in data.get("bytes_by_device", ())),
        vram_used_bytes=data.get("vram_used_bytes"),
        n_cpu_moe=_n_cpu_moe(data.get("n_cpu_moe", 0)),
    )


def _n_cpu_moe(value: Any) -> OffloadValue:
    """A saved ``n_cpu_moe`` (sweeps saved before expert levels have none: 0)."""
    return "all" if value == "all" else int(value or 0)
