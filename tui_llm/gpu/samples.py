"""What the GPU gauge shows: frozen samples of GPUs, their processes and the host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui_llm.engine.protocol import DeviceInfo


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment; a field is None when NVML could not tell (not supported, lost)."""

    index: int
    name: str | None
    memory_used: int | None
    memory_total: int | None
    utilization_pct: int | None
    temperature_c: int | None
    power_w: float | None
    power_limit_w: float | None


@dataclass(frozen=True)
class ProcessMemory:
    """A process's memory on one GPU; `used_bytes` is None where the driver does not say (WDDM)."""

    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class HostSample:
    """Host RAM (used means total less available) and the engine process's resident memory."""

    ram_used: int
    ram_total: int
    engine_rss: int | None


@dataclass(frozen=True)
class MonitorSnapshot:
    """Everything the gauge draws, sampled together.

    `processes` maps a GPU index to its processes; it is refreshed less often than the rest, so
    between refreshes it repeats the last list. `vram_history` maps a GPU index to its VRAM used
    over the last minute, oldest first (for a sparkline). `error` is the null monitor's reason or
    a sampling failure, in one line.
    """

    timestamp: float
    gpus: tuple[GpuSample, ...]
    processes: Mapping[int, tuple[ProcessMemory, ...]]
    host: HostSample | None
    error: str | None = None
    vram_history: Mapping[int, tuple[int, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )


def engine_vram(snapshot: MonitorSnapshot, pid: int | None) -> dict[int, int]:
    """The VRAM process `pid` holds on each GPU where NVML lists it (GPU index -> bytes).

    Inside a container NVML reports host PIDs, so the engine may not be found; the result is then
    empty, as it is for None.
    """
    if pid is None:
        return {}
    share: dict[int, int] = {}
    for index, processes in snapshot.processes.items():
        for process in processes:
            if process.pid == pid and process.used_bytes is not None:
                share[index] = share.get(index, 0) + process.used_bytes
    return share


def gpu_samples_from_devices(devices: Sequence[DeviceInfo]) -> tuple[GpuSample, ...]:
    """Turn llama.cpp's non-CPU devices (CUDA, Metal, RPC servers) into memory-only samples.

    The fallback when NVML is not there: `index` is the position among these devices.
    """
    accelerators = [device for device in devices if device.kind != "cpu"]
    return tuple(
        GpuSample(
            index=index,
            name=device.description or device.name,
            memory_used=max(device.memory_total - device.memory_free, 0),
            memory_total=device.memory_total,
            utilization_pct=None,
            temperature_c=None,
            power_w=None,
            power_limit_w=None,
        )
        for index, device in enumerate(accelerators)
    )
