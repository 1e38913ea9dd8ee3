"""How much GPU and CPU memory a model takes at each offload level, as llama.cpp would allocate it.

Each part follows llama.cpp (the version vendored in llama-cpp-python 0.3.36) rather than a rule
of thumb:

- weights: each tensor's bytes from the GGUF, placed as ``load_tensors`` places them: the input
  layer (``token_embd``) always on the CPU, the output layer offloaded first, then the last k-1
  blocks; a tied ``token_embd`` is duplicated on the GPU as the output. With mmap the CPU buffer
  is the file range its tensors span (what llama.cpp maps and reports);
- KV cache: per layer, its own KV heads and head sizes, the context padded to 256 cells,
  sliding-window layers smaller when the SWA cache is not full size, on the GPU for offloaded
  layers when ``offload_kqv``;
- compute buffers: the worst-case graphs replayed through ggml's scheduler and allocator
  (:mod:`tui_llm.fit.llama_graph`);
- output buffer: the logits of one token, in host memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from tui_llm.catalog.metadata import ModelInfo
from tui_llm.engine.protocol import KV_CACHE_TYPES, DeviceInfo, LoadSettings
from tui_llm.fit.ggml_alloc import Backend
from tui_llm.fit.ggml_graph import TYPE_SIZES, pad, row_bytes
from tui_llm.fit.llama_graph import GraphSettings, Placement, compute_buffers
from tui_llm.fit.shape import EstimateError, ModelShape, model_shape, per_layer

__all__ = [
    "CUDA",
    "NO_GPU",
    "RPC",
    "DeviceProfile",
    "Estimate",
    "EstimateError",
    "EstimateSettings",
    "LevelEstimate",
    "MemorySplit",
    "device_for_devices",
    "estimate",
    "estimate_file",
    "problems_with",
]

_CTX_PAD = 256
_CPU_ALIGNMENT = 32
# Architectures whose graph is the one llama_graph rebuilds (others are sized approximately).
EXACT_ARCHITECTURES = frozenset({"llama", "qwen2", "qwen3"})


@dataclass(frozen=True)
class DeviceProfile:
    """The GPU a model would be offloaded to, as far as memory layout is concerned."""

    name: str
    alignment: int = 128
    offload_min_batch: int | None = 32  # CUDA runs big CPU-weight matmuls on the GPU
    pads_quantized_rows: bool = True
    present: bool = True  # False: no GPU at all, so llama.cpp ignores the offload count

    def backend(self) -> Backend:
        return Backend(
            self.name,
            self.alignment,
            host=False,
            offload_min_batch=self.offload_min_batch,
            pads_quantized_rows=self.pads_quantized_rows,
        )


CUDA = DeviceProfile("CUDA0")
RPC = DeviceProfile("RPC0", alignment=32, offload_min_batch=None, pads_quantized_rows=False)
NO_GPU = DeviceProfile("none", offload_min_batch=None, pads_quantized_rows=False, present=False)


def device_for_devices(devices: Sequence[DeviceInfo]) -> DeviceProfile:
    """The profile for llama.cpp's device list: an RPC server, a GPU, or none."""
    accelerators = [d for d in devices if d.kind != "cpu"]
    if any(d.name.startswith("RPC") for d in accelerators):
        return RPC
    if accelerators:
        return replace(CUDA, name=accelerators[0].name)
    return NO_GPU


@dataclass(frozen=True)
class EstimateSettings:
    """The load settings that change memory use."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False
    offload_kqv: bool = True
    use_mmap: bool = True
    swa_full: bool = True
    op_offload: bool = True

    @classmethod
    def from_load_settings(cls, settings: LoadSettings) -> EstimateSettings:
        return cls(
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_ubatch,
            type_k=settings.kv_cache_type,
            type_v=settings.kv_cache_type,
            flash_attn=settings.flash_attn,
            offload_kqv=settings.offload_kqv,
            use_mmap=settings.use_mmap,
        )


@dataclass(frozen=True)
class MemorySplit:
    """Bytes on one side (GPU or CPU), by what they hold."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.output

    def scaled(self, ratios: Mapping[str, float]) -> MemorySplit:
        return MemorySplit(
            weights=round(self.weights * ratios.get("weights", 1.0)),
            kv=round(self.kv * ratios.get("kv", 1.0)),
            compute=round(self.compute * ratios.get("compute", 1.0)),
            output=round(self.output * ratios.get("output", 1.0)),
        )


@dataclass(frozen=True)
class LevelEstimate:
    """Memory at one offload level (0 = all on the CPU, n_layer + 1 = all on the GPU)."""

    offload_layers: int
    gpu: MemorySplit
    cpu: MemorySplit

    @property
    def total(self) -> int:
        return self.gpu.total + self.cpu.total


@dataclass(frozen=True)
class Estimate:
    """Every offload level of one model under one set of settings."""

    model_path: Path
    settings: EstimateSettings
    device: DeviceProfile
    n_layer: int
    kv_cells: int
    levels: tuple[LevelEstimate, ...]
    exact_graph: bool
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def max_level(self) -> int:
        return self.n_layer + 1

    def level(self, offload_layers: int) -> LevelEstimate:
        """The estimate for a level; values past ``n_layer + 1`` mean all layers."""
        return self.levels[max(0, min(offload_layers, self.max_level))]


# ---- the parts -----------------------------------------------------------------------------


def _gpu_alloc_size(model: ModelShape, name: str, nbytes: int, device: DeviceProfile) -> int:
    """Bytes a weight takes in the GPU's buffer (CUDA pads a quantized row to 512 elements)."""
    if device.pads_quantized_rows:
        nbytes += model.row_padding.get(name, 0)
    return pad(nbytes, device.alignment)


def _weights(
    model: ModelShape, offload: int, device: DeviceProfile, use_mmap: bool
) -> tuple[int, int]:
    """(GPU bytes, CPU bytes) of weights with ``offload`` layers on the GPU."""
    n_layer = model.n_layer
    gpu_start = max(n_layer + 1 - offload, 0)
    on_gpu_layers = {il for il in range(n_layer + 1) if il >= gpu_start}
    cpu_names: list[str] = []
    gpu_bytes = 0
    info = model.info
    for name, nbytes in info.tensor_bytes.items():
        layer = model.layer_of[name]
        if layer is None:  # repeated per device that holds any block
            if any(il in on_gpu_layers for il in range(n_layer)):
                gpu_bytes += _gpu_alloc_size(model, name, nbytes, device)
            if gpu_start > 0:
                cpu_names.append(name)
        elif layer >= 0 and layer in on_gpu_layers:
            gpu_bytes += _gpu_alloc_size(model, name, nbytes, device)
        else:
            cpu_names.append(name)
    if model.tied_output and n_layer in on_gpu_layers:
        gpu_bytes += _gpu_alloc_size(
            model, "token_embd.weight", info.tensor_bytes.get("token_embd.weight", 0), device
        )
    if use_mmap:
        spans: dict[int, tuple[int, int]] = {}
        for name in cpu_names:
            shard = model.shard_of.get(name, 0)
            start = model.offsets[name]
            end = start + info.tensor_bytes[name]
            low, high = spans.get(shard, (start, end))
            spans[shard] = (min(low, start), max(high, end))
        cpu_bytes = sum(high - low for low, high in spans.values())
    else:
        cpu_bytes = sum(pad(info.tensor_bytes[name], _CPU_ALIGNMENT) for name in cpu_names)
    return gpu_bytes, cpu_bytes


def _kv_cells(settings: EstimateSettings, model: ModelShape) -> int:
    n_ctx = settings.n_ctx or (model.info.context_length or 4096)
    return pad(n_ctx, _CTX_PAD)


def _kv(
    model: ModelShape, settings: EstimateSettings, offload: int, device: DeviceProfile
) -> tuple[int, int]:
    """(GPU bytes, CPU bytes) of the KV cache."""
    kv_size = _kv_cells(settings, model)
    n_ubatch = min(settings.n_ubatch, settings.n_batch, settings.n_ctx or kv_size)
    swa_size = min(kv_size, pad(model.sliding_window + n_ubatch, _CTX_PAD))
    gpu_start = max(model.n_layer + 1 - offload, 0)
    v_trans = not settings.flash_attn
    layers = model.graph.layers
    v_max = max(layer.n_head_kv * layer.head_dim_v for layer in layers)
    gpu = cpu = 0
    for il, layer in enumerate(layers):
        if layer.n_head_kv == 0:
            continue
        cells = kv_size if settings.swa_full or il not in model.swa_layers else swa_size
        n_k = layer.n_head_kv * layer.head_dim_k
        n_v = v_max if v_trans else layer.n_head_kv * layer.head_dim_v
        k_bytes = row_bytes(settings.type_k, n_k) * cells
        v_bytes = row_bytes(settings.type_v, n_v) * cells
        if settings.offload_kqv and il >= gpu_start:
            gpu += pad(k_bytes, device.alignment) + pad(v_bytes, device.alignment)
        else:
            cpu += pad(k_bytes, _CPU_ALIGNMENT) + pad(v_bytes, _CPU_ALIGNMENT)
    return gpu, cpu


def _placement(model: ModelShape, settings: EstimateSettings, offload: int) -> Placement:
    gpu_start = max(model.n_layer + 1 - offload, 0)
    layer_backend = tuple(0 if il >= gpu_start else 1 for il in range(model.n_layer))
    kv_backend = layer_backend if settings.offload_kqv else (1,) * model.n_layer
    return Placement(layer_backend, kv_backend, 0 if offload >= 1 else 1)


def _graph_settings(model: ModelShape, settings: EstimateSettings) -> GraphSettings:
    kv_size = _kv_cells(settings, model)
    n_ctx = settings.n_ctx or kv_size
    n_batch = min(n_ctx, settings.n_batch)
    n_ubatch = min(n_batch, settings.n_ubatch)
    n_tokens = min(kv_size, n_ubatch)
    return GraphSettings(
        kv_size=kv_size,
        n_ubatch=n_tokens,
        n_outputs=min(n_tokens, n_batch),
        type_k=settings.type_k,
        type_v=settings.type_v,
        flash_attn=settings.flash_attn,
        offload_kqv=settings.offload_kqv,
        op_offload=settings.op_offload,
    )


def _compute(
    model: ModelShape, settings: EstimateSettings, device: DeviceProfile
) -> list[tuple[int, int]]:
    """(GPU, CPU) compute buffer bytes for every level.

    Blocks of one shape make every level between the first few and the last few identical, so
    those are simulated once; models whose blocks differ are simulated at every level.
    """
    cpu_backend = Backend("CPU", _CPU_ALIGNMENT, host=True)
    graph_settings = _graph_settings(model, settings)
    n_levels = model.n_layer + 2
    if not device.present:
        # one backend: the "GPU" index 0 is the CPU itself
        everything = Placement((0,) * model.n_layer, (0,) * model.n_layer, 0)
        cpu_only = compute_buffers(model.graph, graph_settings, [cpu_backend], everything)[0]
        return [(0, cpu_only)] * n_levels
    backends = [device.backend(), cpu_backend]
    uniform = len(set(model.graph.layers)) == 1
    edge = 4
    wanted = (
        sorted({*range(min(edge, n_levels)), *range(max(0, n_levels - edge), n_levels)})
        if uniform
        else list(range(n_levels))
    )
    results: dict[int, tuple[int, int]] = {}
    for level in wanted:
        sizes = compute_buffers(
            model.graph, graph_settings, backends, _placement(model, settings, level)
        )
        results[level] = (sizes[0], sizes[1])
    last_edge = edge - 1
    return [results.get(level, results.get(last_edge, (0, 0))) for level in range(n_levels)]


def problems_with(info: ModelInfo, settings: EstimateSettings) -> tuple[str, ...]:
    """Settings llama.cpp would refuse for this model, each as one line."""
    found = []
    for kind, type_name in (("K", settings.type_k), ("V", settings.type_v)):
        if type_name not in KV_CACHE_TYPES:
            found.append(f"unknown {kind} cache type {type_name}")
    if settings.type_v not in ("f32", "f16", "bf16") and not settings.flash_attn:
        found.append(f"a {settings.type_v} V cache needs flash attention")
    n_embd = info.embedding_length or 0
    n_head = per_layer(info.head_count, 0, 1) or 1
    head_k = info.key_length or (n_embd // n_head if n_head else 0)
    head_v = info.value_length or head_k
    for kind, type_name, head in (("K", settings.type_k, head_k), ("V", settings.type_v, head_v)):
        block = TYPE_SIZES.get(type_name, (1, 1))[0]
        if head and head % block:
            found.append(
                f"{kind} cache type {type_name} works in blocks of {block}, "
                f"which do not divide the head size {head}"
            )
    return tuple(dict.fromkeys(found))


def estimate(
    info: ModelInfo, settings: EstimateSettings | None = None, device: DeviceProfile = CUDA
) -> Estimate:
    """Memory at every offload level 0 .. n_layer+1 for ``info`` under ``settings``."""
    settings = settings or EstimateSettings()
    problems = problems_with(info, settings)
    if any(p.startswith("unknown") for p in problems):
        raise EstimateError(problems[0])
    model = model_shape(info)
    exact = info.architecture in EXACT_ARCHITECTURES and not info.expert_count
    notes = []
    if not exact:
        notes.append(
            f"compute buffers of {info.architecture} are sized with the llama graph (approximate)"
        )
    output_bytes = model.n_vocab * 4
    compute = _compute(model, settings, device)
    levels = []
    for level in range(model.n_layer + 2):
        placed = level if device.present else 0
        gpu_w, cpu_w = _weights(model, placed, device, settings.use_mmap)
        gpu_kv, cpu_kv = _kv(model, settings, placed, device)
        gpu_c, cpu_c = compute[placed]
        levels.append(
            LevelEstimate(
                offload_layers=level,
                gpu=MemorySplit(weights=gpu_w, kv=gpu_kv, compute=gpu_c),
                cpu=MemorySplit(weights=cpu_w, kv=cpu_kv, compute=cpu_c, output=output_bytes),
            )
        )
    return Estimate(
        model_path=info.path,
        settings=settings,
        device=device,
        n_layer=model.n_layer,
        kv_cells=_kv_cells(settings, model),
        levels=tuple(levels),
        exact_graph=exact,
        problems=problems,
        notes=tuple(notes),
    )


@lru_cache(maxsize=64)
def _cached(
    path: str, size: int, mtime_ns: int, settings: EstimateSettings, device: DeviceProfile
) -> Estimate:
    from tui_llm.catalog.metadata import read_model_info

    return estimate(read_model_info(path), settings, device)


def estimate_file(
    path: str | Path, settings: EstimateSettings | None = None, device: DeviceProfile = CUDA
) -> Estimate:
    """``estimate`` for a file, remembered while the file is unchanged (the browser asks often)."""
    stat = Path(path).stat()
    chosen = settings or EstimateSettings()
    return _cached(str(path), stat.st_size, stat.st_mtime_ns, chosen, device)
