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


@dataclass(frozen=True)
class LoadFailure:
    """One of llama.cpp's load-failure messages (``pattern``, searched in each log line) and
    the line a user reads for it (``says``, formatted with the pattern's named groups and
    ``n_ctx``)."""

    pattern: re.Pattern[str]
    says: str


def _failure(pattern: str, says: str) -> LoadFailure:
    return LoadFailure(re.compile(pattern), says)


# llama.cpp's own words (gguf.cpp, llama-model-loader.cpp, llama-model.cpp, llama.cpp,
# llama-context.cpp of the bundled build), most telling first: a load logs a cause, then
# "error loading model: <cause>" and "failed to load model", which name none.
LOAD_FAILURES: tuple[LoadFailure, ...] = (
    _failure(
        r"unknown model architecture: '(?P<arch>[^']*)'",
        "this llama.cpp does not know the model architecture '{arch}' (a newer one may)",
    ),
    _failure(
        r"invalid magic characters: '(?P<magic>.*)', expected 'GGUF'",
        "not a GGUF file (it starts with '{magic}', not 'GGUF')",
    ),
    _failure(r"failed to read magic", "not a GGUF file: too short to hold a GGUF header"),
    _failure(
        r"GGUFv1 is no longer supported", "a GGUF version 1 file, which llama.cpp reads no more"
    ),
    _failure(
        r"file is version (?P<version>\d+) but this software only supports up to version "
        r"(?P<newest>\d+)",
        "GGUF version {version}; this llama.cpp reads up to version {newest}",
    ),
    _failure(r"bad GGUF version: (?P<version>\d+)", "GGUF version {version} is not valid"),
    _failure(
        r"tensor '(?P<tensor>[^']*)' data is not within the file bounds",
        "the file is cut short: the data of tensor '{tensor}' lies past its end "
        "(an incomplete download?)",
    ),
    _failure(
        r"failed to read (?P<part>tensor data|tensor info|key-value pairs|header)",
        "the file is cut short or damaged: llama.cpp could not read its {part}",
    ),
    _failure(r"duplicate key '(?P<key>[^']*)'", "the file's metadata holds the key '{key}' twice"),
    _failure(
        r"(?:duplicate tensor name '|tensor ')(?P<tensor>[^']*)'(?: is duplicated| for tensor)",
        "the file holds the tensor '{tensor}' twice",
    ),
    _failure(
        r"tensor '(?P<tensor>[^']*)' has invalid ggml type (?P<type>\d+)",
        "tensor '{tensor}' has a type ({type}) this llama.cpp does not know",
    ),
    _failure(
        r"tensor '(?P<tensor>[^']*)' has offset (?P<offset>\d+), expected (?P<expected>\d+)",
        "the file is damaged: tensor '{tensor}' is at offset {offset}, not {expected}",
    ),
    _failure(
        r"wrong number of tensors; expected (?P<expected>\d+), got (?P<got>\d+)",
        "the file has {got} tensors where its architecture needs {expected}",
    ),
    _failure(
        r"tensor '(?P<tensor>[^']*)' not found",
        "the file lacks the tensor '{tensor}' (a wrong or unfinished conversion?)",
    ),
    _failure(
        r"tensor '(?P<tensor>[^']*)' has wrong shape; expected (?P<expected>.+?), "
        r"got (?P<got>.+?)(?:,|$)",
        "tensor '{tensor}' has the shape {got}, llama.cpp expects {expected}",
    ),
    _failure(
        r"tensor '(?P<tensor>[^']*)' has invalid data",
        "tensor '{tensor}' holds invalid numbers (NaN or infinity): the file is damaged",
    ),
    _failure(
        r"key (?P<key>\S+) has wrong type (?P<got>\S+) but expected type (?P<expected>\S+)",
        "the metadata key {key} is a {got} where llama.cpp expects a {expected}",
    ),
    _failure(
        r"(?:array )?key not found in model: (?P<key>\S+)",
        "the file lacks the metadata key {key}",
    ),
    _failure(r"failed to open GGUF file '[^']*' \((?P<why>[^)]*)\)", "cannot open the file: {why}"),
    _failure(
        r"failed to initialize the context: std::bad_alloc",
        "not enough memory for a context of {n_ctx} tokens: lower the context size",
    ),
    _failure(
        r"unable to allocate (?P<what>\S+) buffer",
        "not enough memory for the {what} buffer: offload fewer layers or lower the context",
    ),
    _failure(
        r"failed to allocate (?:buffer|compute buffers)|out of memory",
        "not enough memory: offload fewer layers or lower the context size",
    ),
    # The wrapper llama.cpp puts around a cause this table does not list: the cause as it is.
    _failure(r"error loading model: (?P<cause>.+)", "{cause}"),
)


def load_failure_line(lines: Iterable[str], n_ctx: int = 0) -> str | None:
    """The line naming why a load failed, from that load's log lines (``LOAD_FAILURES``, the
    earliest entry of the table that any line matches), or None when no line names a cause."""
    text = [line.strip() for line in lines]
    for failure in LOAD_FAILURES:
        for line in text:
            match = failure.pattern.search(line)
            if match is not None:
                values = {key: value.strip() for key, value in match.groupdict().items()}
                return failure.says.format(n_ctx=n_ctx, **values)
    return None
