"""Parse what llama.cpp writes to its log: buffer sizes per device, offloaded layers, failures.

These figures are ground truth for the memory estimate and for the gauge, so they are read from
llama.cpp's own words rather than recomputed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tui_llm.engine.protocol import BufferSize, DeviceInfo, DeviceLayers

MIB = 1024 * 1024

_BUFFER_RE = re.compile(
    r"^\s*(?P<func>[\w:~]+):\s+(?P<device>\S+)\s+"
    r"(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[0-9.]+)\s*MiB"
)
_OFFLOADED_RE = re.compile(r"offloaded (?P<done>\d+)/(?P<total>\d+) layers to GPU")
_ASSIGNED_RE = re.compile(r"layer\s+(?P<layer>\d+) assigned to device (?P<device>[^,\s]+)")
_KINDS = {"model": "model", "KV": "kv", "compute": "compute", "output": "output", "RS": "recurrent"}
_OOM_MARKERS = (
    "failed to allocate",
    "unable to allocate",
    "out of memory",
    "cudaMalloc failed",
    "ErrorOutOfDeviceMemory",
    "failed to create context",
    "ggml_backend_buffer_alloc",
)


def parse_buffer_line(line: str) -> BufferSize | None:
    """A ``BufferSize`` for a ``... <device> model|KV|compute buffer size = N MiB`` line."""
    match = _BUFFER_RE.match(line)
    if match is None:
        return None
    kind = _KINDS[match["kind"]]
    size = round(float(match["mib"]) * MIB)
    return BufferSize(device=match["device"], kind=kind, size_bytes=size)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LoadReport:
    """What one model load's log said."""

    buffers: tuple[BufferSize, ...]
    offloaded_layers: int
    total_layers: int
    out_of_memory: bool
    layers_by_device: tuple[DeviceLayers, ...] = ()


def parse_load_log(lines: Iterable[str], devices: Iterable[DeviceInfo] = ()) -> LoadReport:
    """Gather buffers, the offloaded layer count and any allocation failure from log lines.

    ``layers_by_device`` counts llama.cpp's ``layer N assigned to device X`` lines (the output
    layer is the last N) for every device but the host CPU, in the order devices first appear;
    ``devices`` tell RPC servers apart when a line names one as ``RPC0[endpoint]``.
    """
    known = tuple(devices)
    buffers: list[BufferSize] = []
    offloaded = 0
    total = 0
    oom = False
    device_of_layer: dict[int, str] = {}
    for line in lines:
        buf = parse_buffer_line(line)
        if buf is not None:
            buffers.append(buf)
            continue
        match = _OFFLOADED_RE.search(line)
        if match:
            offloaded, total = int(match["done"]), int(match["total"])
            continue
        assigned = _ASSIGNED_RE.search(line)
        if assigned:
            device_of_layer[int(assigned["layer"])] = device_of_buffer(assigned["device"], known)
            continue
        if any(marker in line for marker in _OOM_MARKERS):
            oom = True
    counts: dict[str, int] = {}
    for device in device_of_layer.values():
        if not is_host_buffer(device):
            counts[device] = counts.get(device, 0) + 1
    layers = tuple(DeviceLayers(device, n) for device, n in counts.items())
    return LoadReport(tuple(buffers), offloaded, total, oom, layers)


_ACCELERATOR_PREFIXES = (
    "CUDA",
    "ROCm",
    "HIP",
    "Vulkan",
    "Metal",
    "MTL",
    "RPC",
    "SYCL",
    "CANN",
    "OpenCL",
    "MUSA",
    "BLAS_GPU",
    "WebGPU",
    "zDNN",
    "Hexagon",
)


def is_host_buffer(device: str) -> bool:
    """Whether a llama.cpp buffer lives in host memory.

    ``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``AMX`` and pinned ``CUDA_Host`` buffers are host
    memory; buffers named after an accelerator (``CUDA0``, ``RPC0[host:port]``) are not.
    """
    if device.endswith("_Host") or (device.endswith("_Mapped") and device.startswith("CPU")):
        return True
    return not device.startswith(_ACCELERATOR_PREFIXES)


def device_of_buffer(device: str, devices: Iterable[DeviceInfo] = ()) -> str:
    """The device a buffer belongs to, by its ``ggml_backend_dev_name``.

    ``CPU_Mapped`` and ``CUDA_Host`` -> ``CPU``; ``RPC0[127.0.0.1:50052]`` -> ``RPC0``. llama.cpp
    names the buffers of every RPC server ``RPC0[endpoint]``: with ``devices`` given, the endpoint
    picks the device (``RPC1`` for the second server).
    """
    if is_host_buffer(device):
        return "CPU"
    name, _, rest = device.partition("[")
    endpoint = rest.rstrip("]")
    if endpoint:
        for dev in devices:
            if endpoint in dev.description.split():
                return dev.name
    return name


def totals_by_device(
    buffers: Iterable[BufferSize], devices: Iterable[DeviceInfo] = ()
) -> dict[str, int]:
    """Bytes per device name, as ``ggml_backend_dev_name`` gives it (host buffers: ``CPU``)."""
    known = tuple(devices)
    totals: dict[str, int] = {}
    for buf in buffers:
        dev = device_of_buffer(buf.device, known)
        totals[dev] = totals.get(dev, 0) + buf.size_bytes
    return totals
