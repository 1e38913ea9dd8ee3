"""GPU and host memory monitoring for the gauge: NVML, a null monitor, and a sampling thread."""

from tui_llm.gpu.monitor import (
    GpuMonitor,
    GpuSample,
    HostSample,
    MonitorSnapshot,
    MonitorThread,
    NullMonitor,
    NvmlMonitor,
    NvmlUnavailableError,
    ProcessMemory,
    create_monitor,
    engine_vram,
    gpu_samples_from_devices,
    nvidia_gpu_present,
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
