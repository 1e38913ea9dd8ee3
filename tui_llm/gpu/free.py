"""One rule for the GPU memory a load can use: the app, ``tui-llm fit`` and ``tui-llm pull``.

The estimate plans one device, so a plan must fit the GPU with the most room: the largest free
memory of a single GPU, counting what the loaded model holds there as free (a load frees the old
model first). Summing over GPUs would plan a model that no single GPU holds. NVML is asked first;
without it (no NVIDIA driver, an RPC server as the device), llama.cpp's own device list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tui_llm.engine.protocol import DeviceInfo
from tui_llm.gpu.samples import GpuSample


@dataclass(frozen=True)
class GpuMemory:
    """One NVIDIA GPU's memory as NVML reports it now (bytes)."""

    name: str
    free: int
    total: int


def free_for_load(
    gpus: Sequence[GpuSample],
    devices: Sequence[DeviceInfo] = (),
    held: Mapping[str, int] | None = None,
) -> int | None:
    """Bytes a new load can use on the best single GPU, or ``None`` when there is no GPU.

    ``gpus`` are NVML samples; ``devices`` llama.cpp's devices (used when NVML measured none);
    ``held`` what the loaded model holds per llama.cpp device name (``CUDA0``, ``RPC0[…]``).
    With one NVIDIA GPU all CUDA buffers are on it; with several, NVML's index is taken as the
    CUDA ordinal (true unless CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER reorder them).
    """
    held = held or {}
    measured = [g for g in gpus if g.memory_total is not None and g.memory_used is not None]
    on_cuda = sum(size for name, size in held.items() if name.startswith("CUDA"))

    def held_on(gpu: GpuSample) -> int:
        return on_cuda if len(measured) == 1 else held.get(f"CUDA{gpu.index}", 0)

    frees = [
        g.memory_total - g.memory_used + held_on(g)  # type: ignore[operator]
        for g in measured
    ]
    if frees:
        return int(max(frees))
    accel = [d.memory_free + held.get(d.name, 0) for d in devices if d.kind != "cpu"]
    return max(accel) if accel else None


def read_gpu_memory() -> GpuMemory | None:
    """One NVML reading for a command-line run: the GPU with the most free memory (the rule of
    ``free_for_load``), or ``None`` when NVML is missing or fails."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        best: GpuMemory | None = None
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            gpu = GpuMemory(str(name), int(memory.free), int(memory.total))
            if best is None or gpu.free > best.free:
                best = gpu
        return best
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
