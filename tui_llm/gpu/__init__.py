"""GPU and host memory monitoring for the gauge: NVML, a null monitor, and a sampling thread."""

from tui_llm.gpu.monitor import MonitorThread
from tui_llm.gpu.nvml import (
    GpuMonitor,
    NullMonitor,
    NvmlMonitor,
    NvmlUnavailableError,
    create_monitor,
    nvidia_gpu_present,
)
from tui_llm.gpu.samples import (
    GpuSample,
    HostSample,
    MonitorSnapshot,
    ProcessMemory,
    engine_vram,
    gpu_samples_from_devices,
)

__all__ = [
    "GpuMonitor",
    "GpuSample",
    "HostSample",
    "MonitorSnapshot",
    "MonitorThread",
    "NullMonitor",
    "NvmlMonitor",
    "NvmlUnavailableError",
    "ProcessMemory",
    "create_monitor",
    "engine_vram",
    "gpu_samples_from_devices",
    "nvidia_gpu_present",
]
