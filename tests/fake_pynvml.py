"""A stand-in for the `pynvml` module (nvidia-ml-py) on a machine without an NVIDIA driver.

It mirrors the real binding's names, signatures, units and error classes (memory in bytes,
power in milliwatts, `NVMLError_*` subclasses) and returns values a test sets. A test can make one
query fail for one GPU or all, or make `nvmlInit` fail as it does without a driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    """Base of every NVML error; `value` is the NVML_ERROR_* code, as in pynvml."""

    value = 999
    message = "Unknown Error"

    def __str__(self) -> str:
        return self.message


class NVMLError_Uninitialized(NVMLError):
    value, message = 1, "Uninitialized"


class NVMLError_InvalidArgument(NVMLError):
    value, message = 2, "Invalid Argument"


class NVMLError_NotSupported(NVMLError):
    value, message = 3, "Not Supported"


class NVMLError_NoPermission(NVMLError):
    value, message = 4, "Insufficient Permissions"


class NVMLError_DriverNotLoaded(NVMLError):
    value, message = 9, "Driver Not Loaded"


class NVMLError_LibraryNotFound(NVMLError):
    value, message = 12, "NVML Shared Library Not Found"


class NVMLError_FunctionNotFound(NVMLError):
    value, message = 13, "Function Not Found"


class NVMLError_GpuIsLost(NVMLError):
    value, message = 15, "GPU is lost"


class NVMLError_Unknown(NVMLError):
    value, message = 999, "Unknown Error"


class NVMLLibraryMismatchError(Exception):
    """Raised by pynvml's unversioned process-list calls on a driver without the newest version."""


@dataclass
class FakeGpu:
    """One GPU's readings, in NVML's units; change them between samples to simulate load."""

    name: str = "NVIDIA GeForce RTX 4090"
    memory_total: int = 24 * 2**30
    memory_used: int = 2 * 2**30
    utilization: int = 37
    temperature: int = 61
    power_mw: int = 123_456
    power_limit_mw: int = 450_000
    compute_processes: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)


class FakePynvml:
    """Module-like object with pynvml's functions; pass it to `create_monitor(pynvml_module=...)`.

    `calls` counts every function call by name; `initialized` is NVML's init refcount.
    """

    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVMLLibraryMismatchError = NVMLLibraryMismatchError

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        init_error: type[BaseException] | None = None,
    ) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.initialized = 0
        self.calls: Counter[str] = Counter()
        self._failures: dict[tuple[str, int | None], type[BaseException]] = {}

    def fail(
        self,
        function: str,
        error: type[BaseException] = NVMLError_NotSupported,
        *,
        gpu: int | None = None,
    ) -> None:
        """Make `function` (e.g. "nvmlDeviceGetPowerUsage") raise `error` for one GPU or all."""
        self._failures[(function, gpu)] = error

    # --- library lifetime -----------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error()
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        if self.initialized == 0:
            raise NVMLError_Uninitialized()
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount", None)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimpleNamespace:
        self._enter("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        return SimpleNamespace(index=index)

    # --- per-device queries ---------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: SimpleNamespace) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetMemoryInfo(self, handle: SimpleNamespace, version: Any = None) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(
            total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: SimpleNamespace) -> Any:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.utilization, memory=gpu.utilization // 2)

    def nvmlDeviceGetTemperature(self, handle: SimpleNamespace, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_InvalidArgument()
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: SimpleNamespace) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: SimpleNamespace) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: SimpleNamespace) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses", handle)
        return _processes(gpu.compute_processes)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: SimpleNamespace) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses_v2", handle)
        return _processes(gpu.compute_processes)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: SimpleNamespace) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return _processes(gpu.graphics_processes)

    # --- plumbing -------------------------------------------------------------------------

    def _enter(self, function: str, index: int | None) -> None:
        self.calls[function] += 1
        if self.initialized == 0:
            raise NVMLError_Uninitialized()
        error = self._failures.get((function, index)) or self._failures.get((function, None))
        if error is not None:
            raise error()

    def _gpu(self, function: str, handle: SimpleNamespace) -> FakeGpu:
        index: int = handle.index
        self._enter(function, index)
        return self.gpus[index]


def _processes(entries: list[tuple[int, int | None]]) -> list[Any]:
    """Process records as pynvml returns them (usedGpuMemory None where the driver cannot say)."""
    return [
        SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0)
        for pid, used in entries
    ]


# The functions above, for a test that checks the real pynvml still has every one of them.
FAKED_FUNCTIONS = tuple(name for name in vars(FakePynvml) if name.startswith("nvml"))
