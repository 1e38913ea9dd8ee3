"""What a sweep ran on: the CPU's name, the NVIDIA GPUs and driver (NVML, when present), and
the llama.cpp build the engine reported."""

from __future__ import annotations

import contextlib
import platform

from tui_llm.engine.protocol import ReadyEvent
from tui_llm.sweep.records import MachineInfo


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo,
    ):
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def nvidia_gpus() -> tuple[tuple[str, ...], str | None]:
    """(GPU names, driver version) from NVML; ``((), None)`` without it."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return (), None
    try:
        names = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode(errors="replace") if isinstance(name, bytes) else str(name))
        driver = pynvml.nvmlSystemGetDriverVersion()
        if isinstance(driver, bytes):
            driver = driver.decode(errors="replace")
        return tuple(names), str(driver)
    except Exception:
        return (), None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def machine_info(ready: ReadyEvent) -> MachineInfo:
    """The machine and build of the engine that ``ready`` describes."""
    gpus, driver = nvidia_gpus()
    return MachineInfo(
        cpu=cpu_name(),
        gpus=gpus,
        driver=driver,
        llama_cpp_python=ready.llama_cpp_version,
        system_info=ready.system_info.strip(),
        devices=ready.devices,
    )
