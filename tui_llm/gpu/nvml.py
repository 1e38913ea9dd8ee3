"""NVML through nvidia-ml-py, and the null monitor used when NVML cannot start.

Two tiers of errors, as nvitop does it: NVML failing to start (no driver, no library, no
`pynvml` module) gives a `NullMonitor` whose `reason` says why in one line; one metric failing
(`NVMLError_NotSupported` and friends) gives None for that field and never an exception.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from tui_llm.gpu.samples import GpuSample, ProcessMemory

log = logging.getLogger(__name__)

# NVML's "value not available" markers for unsigned int and unsigned long long results.
_NOT_AVAILABLE = frozenset({0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF})
# Process-list calls retried with the _v2 function when the driver predates the newest one.
_VERSION_MISMATCH = frozenset({"NVMLLibraryMismatchError", "NVMLError_FunctionNotFound"})


class GpuMonitor(Protocol):
    """What the sampling thread needs from a GPU source."""

    @property
    def available(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...

    def gpu_count(self) -> int: ...

    def sample_gpus(self) -> tuple[GpuSample, ...]: ...

    def sample_processes(self) -> dict[int, tuple[ProcessMemory, ...]]: ...

    def close(self) -> None: ...


class NullMonitor:
    """The monitor used when NVML cannot start; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        self._reason = _one_line(reason)

    @property
    def available(self) -> bool:
        return False

    @property
    def reason(self) -> str | None:
        return self._reason

    def gpu_count(self) -> int:
        return 0

    def sample_gpus(self) -> tuple[GpuSample, ...]:
        return ()

    def sample_processes(self) -> dict[int, tuple[ProcessMemory, ...]]:
        return {}

    def close(self) -> None:
        pass


class NvmlUnavailableError(Exception):
    """NVML could not start; the message is the one-line reason a user sees."""


class NvmlMonitor:
    """Samples every NVIDIA GPU through an initialised `pynvml` module (or a fake of one)."""

    def __init__(self, nvml: Any) -> None:
        """Start NVML and find the GPUs; raise NvmlUnavailableError with the reason if it cannot."""
        self._nvml = nvml
        self._lock = threading.Lock()
        self._closed = False
        try:
            nvml.nvmlInit()
        except Exception as err:
            raise NvmlUnavailableError(_init_failure_reason(err)) from err
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as err:
            self.close()
            raise NvmlUnavailableError(f"NVML cannot count the GPUs: {err}") from err
        if count <= 0:
            self.close()
            raise NvmlUnavailableError("the NVIDIA driver reports no GPU")
        errors: list[type[BaseException]] = [AttributeError]
        for name in ("NVMLError", "NVMLLibraryMismatchError"):
            error_class = getattr(nvml, name, None)
            if isinstance(error_class, type) and issubclass(error_class, BaseException):
                errors.append(error_class)
        self._errors: tuple[type[BaseException], ...] = tuple(errors)
        self._handles: list[Any] = []
        for index in range(count):
            try:
                self._handles.append(nvml.nvmlDeviceGetHandleByIndex(index))
            except self._errors:
                self._handles.append(None)

    @property
    def available(self) -> bool:
        return True

    @property
    def reason(self) -> str | None:
        return None

    def gpu_count(self) -> int:
        return len(self._handles)

    def sample_gpus(self) -> tuple[GpuSample, ...]:
        """Read every GPU's memory, utilization, temperature and power."""
        if self._closed:
            return ()
        return tuple(self._sample_gpu(index, handle) for index, handle in enumerate(self._handles))

    def sample_processes(self) -> dict[int, tuple[ProcessMemory, ...]]:
        """List the compute and graphics processes on each GPU, largest first.

        A GPU whose process list cannot be read is left out. Costs milliseconds and holds a driver
        lock, so sample it less often than the gauge.
        """
        result: dict[int, tuple[ProcessMemory, ...]] = {}
        if self._closed:
            return result
        for index, handle in enumerate(self._handles):
            if handle is None:
                continue
            by_pid: dict[int, int | None] = {}
            readable = False
            for kind in ("Compute", "Graphics"):
                processes = self._processes(f"nvmlDeviceGet{kind}RunningProcesses", handle)
                if processes is None:
                    continue
                readable = True
                for process in processes:
                    pid = int(process.pid)
                    used = _known(getattr(process, "usedGpuMemory", None))
                    previous = by_pid.get(pid)
                    by_pid[pid] = used if previous is None else max(previous, used or 0)
            if readable:
                ordered = sorted(by_pid.items(), key=lambda item: (-(item[1] or 0), item[0]))
                result[index] = tuple(ProcessMemory(pid, used) for pid, used in ordered)
        return result

    def close(self) -> None:
        """Shut NVML down once; later samples are empty."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except Exception as err:
            log.debug("nvmlShutdown failed: %s", err)

    def _sample_gpu(self, index: int, handle: Any) -> GpuSample:
        if handle is None:
            return GpuSample(index, None, None, None, None, None, None, None)
        nvml = self._nvml
        name = self._metric(nvml.nvmlDeviceGetName, handle)
        memory = self._metric(nvml.nvmlDeviceGetMemoryInfo, handle)
        utilization = self._metric(nvml.nvmlDeviceGetUtilizationRates, handle)
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        power_mw = _known(self._metric(nvml.nvmlDeviceGetPowerUsage, handle))
        limit_mw = _known(self._metric(nvml.nvmlDeviceGetEnforcedPowerLimit, handle))
        return GpuSample(
            index=index,
            name=name.decode("utf-8", "replace") if isinstance(name, bytes) else name,
            memory_used=_known(getattr(memory, "used", None)),
            memory_total=_known(getattr(memory, "total", None)),
            utilization_pct=_known(getattr(utilization, "gpu", None)),
            temperature_c=_known(self._metric(nvml.nvmlDeviceGetTemperature, handle, sensor)),
            power_w=None if power_mw is None else power_mw / 1000,
            power_limit_w=None if limit_mw is None else limit_mw / 1000,
        )

    def _metric(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call one NVML query; an NVML error (NotSupported, NoPermission, GpuIsLost) gives None."""
        try:
            return function(*args)
        except self._errors as err:
            log.debug("%s failed: %s", getattr(function, "__name__", function), err)
            return None

    def _processes(self, name: str, handle: Any) -> list[Any] | None:
        """Call a process-list query, falling back to its _v2 form on an older driver."""
        for candidate in (name, f"{name}_v2"):
            function = getattr(self._nvml, candidate, None)
            if function is None:
                continue
            try:
                return list(function(handle))
            except self._errors as err:
                if type(err).__name__ not in _VERSION_MISMATCH:
                    return None
        return None


def create_monitor(pynvml_module: Any = None) -> NvmlMonitor | NullMonitor:
    """Start NVML through `pynvml_module` (None imports `pynvml`), or say why it cannot."""
    nvml = pynvml_module
    if nvml is None:
        try:
            import pynvml

            nvml = pynvml
        except ImportError:
            return NullMonitor("nvidia-ml-py is not installed (no module named pynvml)")
        except Exception as err:
            return NullMonitor(f"pynvml failed to import: {type(err).__name__}: {err}")
    try:
        return NvmlMonitor(nvml)
    except NvmlUnavailableError as err:
        return NullMonitor(str(err))


def nvidia_gpu_present(pynvml_module: Any = None) -> bool:
    """Whether NVML starts and sees at least one GPU (e.g. to warn of a CPU-only llama.cpp)."""
    monitor = create_monitor(pynvml_module)
    try:
        return monitor.available and monitor.gpu_count() > 0
    finally:
        monitor.close()


def _known(value: Any) -> Any:
    """None for NVML's not-available markers (and for None)."""
    if value is None or (isinstance(value, int) and value in _NOT_AVAILABLE):
        return None
    return value


def _init_failure_reason(err: BaseException) -> str:
    """Say in one line why nvmlInit failed, naming the fix where there is one."""
    library = "nvml.dll" if sys.platform.startswith("win") else "libnvidia-ml.so.1"
    reasons = {
        "NVMLError_LibraryNotFound": f"no NVIDIA driver ({library} not found)",
        "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
        "NVMLError_NoPermission": "no permission to query the NVIDIA driver",
        "NVMLError_LibRmVersionMismatch": (
            "the NVIDIA driver and its library differ in version (reboot after a driver update)"
        ),
        "NVMLError_FunctionNotFound": "the NVIDIA driver is too old for nvidia-ml-py",
    }
    for cls in type(err).__mro__:
        if cls.__name__ in reasons:
            return reasons[cls.__name__]
    return _one_line(f"NVML failed to start: {str(err) or type(err).__name__}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
