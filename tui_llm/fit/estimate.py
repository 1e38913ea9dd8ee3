"""How much GPU and CPU memory a model takes at each offload level, as llama.cpp would allocate it.

Each part follows llama.cpp (the version vendored in llama-cpp-python 0.3.36) rather than a rule
of thumb:

- weights: each tensor's bytes from the GGUF, placed as ``load_tensors`` places them
  (:mod:`tui_llm.fit.placement`): the input layer (``token_embd``) always on the CPU, the output
  layer offloaded first, then the last k-1 blocks, cut between several devices by
  ``tensor_split``; tensor overrides and ``n_cpu_moe`` keep single tensors (the experts) in host
  memory; a tied ``token_embd`` is duplicated on the GPU as the output. With mmap the CPU buffer
  is the file range its tensors span (what llama.cpp maps and reports);
- KV cache: per layer, its own KV heads and head sizes, the context padded to 256 cells,
  sliding-window layers smaller when the SWA cache is not full size, on the layer's device when
  ``offload_kqv``;
- compute buffers: the worst-case graphs replayed through ggml's scheduler and allocator
  (:mod:`tui_llm.fit.llama_graph`);
- output buffer: the logits of one token, in host memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tui_llm.catalog.metadata import ModelInfo
from tui_llm.engine.protocol import KV_CACHE_TYPES, DeviceInfo, LoadSettings
from tui_llm.fit.ggml_alloc import Backend
from tui_llm.fit.ggml_graph import TYPE_SIZES, pad, row_bytes
from tui_llm.fit.llama_graph import GraphSettings, Placement, compute_buffers
from tui_llm.fit.placement import Layout, cumulative_splits, layout
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
    "devices_for",
    "estimate",
    "estimate_file",
    "problems_with",
]

_CTX_PAD = 256
_CPU_ALIGNMENT = 32
# Architectures whose graph is the one llama_graph rebuilds (others are sized approximately).
EXACT_ARCHITECTURES = frozenset({"llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe"})
# n_cpu_moe for "every layer" (--cpu-moe): any count past n_layer
ALL_EXPERT_LAYERS = 1 << 20


@dataclass(frozen=True)
class DeviceProfile:
    """The GPU a model would be offloaded to, as far as memory layout is concerned."""

    name: str
    alignment: int = 128
    offload_min_batch: int | None = 32  # CUDA runs big CPU-weight matmuls on the GPU
    pads_quantized_rows: bool = True
    present: bool = True  # False: no GPU at all, so llama.cpp ignores the offload count
    async_events: bool = True  # async compute and events: pipeline parallelism over devices

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


def devices_for(devices: Sequence[DeviceInfo]) -> tuple[DeviceProfile, ...]:
    """A profile for each of llama.cpp's offload devices, in its order (RPC servers first)."""
    profiles = []
    for device in devices:
        if device.kind == "cpu":
            continue
        base = RPC if device.name.startswith("RPC") else CUDA
        profiles.append(replace(base, name=device.name))
    return tuple(profiles) or (NO_GPU,)


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
    n_cpu_moe: int = 0  # expert layers kept in host memory (ALL_EXPERT_LAYERS: every one)
    tensor_overrides: tuple[tuple[str, str], ...] = ()
    tensor_split: tuple[float, ...] = ()  # () = equal shares
    split_mode: Literal["none", "layer", "row"] = "layer"
    main_gpu: int = 0

    @classmethod
    def from_load_settings(cls, settings: LoadSettings) -> EstimateSettings:
        moe = settings.n_cpu_moe
        return cls(
            n_cpu_moe=ALL_EXPERT_LAYERS if moe == "all" else int(moe),
            tensor_overrides=tuple(settings.tensor_overrides),
            tensor_split=tuple(settings.tensor_split),
            split_mode=settings.split_mode,
            main_gpu=settings.main_gpu,
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
    """Memory at one offload level (0 = all on the CPU, n_layer + 1 = all on the GPU) with
    ``n_cpu_moe`` blocks' experts in host memory; ``gpu`` sums ``devices`` (name, bytes)."""

    offload_layers: int
    gpu: MemorySplit
    cpu: MemorySplit
    n_cpu_moe: int = 0
    devices: tuple[tuple[str, MemorySplit], ...] = ()

    @property
    def total(self) -> int:
        return self.gpu.total + self.cpu.total

    def device_totals(self) -> tuple[int, ...]:
        """Bytes on each GPU, in device order (one entry per device, even when empty)."""
        if not self.devices:
            return (self.gpu.total,)
        return tuple(split.total for _, split in self.devices)


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
    devices: tuple[DeviceProfile, ...] = ()
    expert_layers: int = 0  # blocks with expert tensors (0: a dense model)
    pair_source: Callable[[int, int], LevelEstimate] | None = field(
        default=None, compare=False, repr=False
    )
    _pairs: dict[tuple[int, int], LevelEstimate] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def max_level(self) -> int:
        return self.n_layer + 1

    @property
    def is_moe(self) -> bool:
        return self.expert_layers > 0

    def level(self, offload_layers: int) -> LevelEstimate:
        """The estimate for a level; values past ``n_layer + 1`` mean all layers."""
        return self.levels[max(0, min(offload_layers, self.max_level))]

    def pair(self, offload_layers: int, n_cpu_moe: int) -> LevelEstimate:
        """Memory with ``offload_layers`` on the GPUs and the experts of the first ``n_cpu_moe``
        blocks in host memory (computed on first use, then remembered)."""
        level = max(0, min(offload_layers, self.max_level))
        moe = max(0, min(n_cpu_moe, self.n_layer)) if self.is_moe else 0
        found = self._pairs.get((level, moe))
        if found is None:
            if self.pair_source is None:
                return self.level(level)
            found = self._pairs[(level, moe)] = self.pair_source(level, moe)
        return found


# ---- the parts -----------------------------------------------------------------------------


def _gpu_alloc_size(model: ModelShape, name: str, nbytes: int, device: DeviceProfile) -> int:
    """Bytes a weight takes in the GPU's buffer (CUDA pads a quantized row to 512 elements)."""
    if device.pads_quantized_rows:
        nbytes += model.row_padding.get(name, 0)
    return pad(nbytes, device.alignment)


def _layout(
    model: ModelShape,
    settings: EstimateSettings,
    devices: Sequence[DeviceProfile],
    offload: int,
    n_cpu_moe: int,
) -> Layout:
    gpus = [d for d in devices if d.present]
    return layout(
        n_layer=model.n_layer,
        tensor_layers=model.layer_of,
        expert_tensors=model.expert_tensors,
        offload=offload if gpus else 0,
        splits=cumulative_splits(settings.tensor_split, len(gpus)),
        n_cpu_moe=n_cpu_moe,
        overrides=settings.tensor_overrides,
        device_names=[d.name for d in gpus],
        offload_kqv=settings.offload_kqv,
    )


def _weights(
    model: ModelShape, placed: Layout, gpus: Sequence[DeviceProfile], use_mmap: bool
) -> list[int]:
    """Weight bytes per device (the GPUs, then the CPU)."""
    sizes = [0] * (placed.n_gpu + 1)
    info = model.info
    block_devices = set(placed.layer_device)
    cpu_names: list[str] = []
    for name, nbytes in info.tensor_bytes.items():
        if model.layer_of[name] is None:  # repeated on every device that holds a block
            where = sorted(block_devices)
        else:
            where = [placed.tensor_device[name]]
        for device in where:
            if device == placed.cpu:
                cpu_names.append(name)
            else:
                sizes[device] += _gpu_alloc_size(model, name, nbytes, gpus[device])
    if model.tied_output and placed.output_device != placed.cpu:
        embd = info.tensor_bytes.get("token_embd.weight", 0)
        gpu = gpus[placed.output_device]
        sizes[placed.output_device] += _gpu_alloc_size(model, "token_embd.weight", embd, gpu)
    if use_mmap:
        spans: dict[int, tuple[int, int]] = {}
        for name in cpu_names:
            shard = model.shard_of.get(name, 0)
            begin = model.offsets[name]
            end = begin + info.tensor_bytes[name]
            low, high = spans.get(shard, (begin, end))
            spans[shard] = (min(low, begin), max(high, end))
        sizes[placed.cpu] = sum(high - low for low, high in spans.values())
    else:
        sizes[placed.cpu] = sum(pad(info.tensor_bytes[name], _CPU_ALIGNMENT) for name in cpu_names)
    return sizes


def _kv_cells(settings: EstimateSettings, model: ModelShape) -> int:
    n_ctx = settings.n_ctx or (model.info.context_length or 4096)
    return pad(n_ctx, _CTX_PAD)


def _kv(
    model: ModelShape, settings: EstimateSettings, placed: Layout, gpus: Sequence[DeviceProfile]
) -> list[int]:
    """KV cache bytes per device (the GPUs, then the CPU)."""
    kv_size = _kv_cells(settings, model)
    n_ubatch = min(settings.n_ubatch, settings.n_batch, settings.n_ctx or kv_size)
    swa_size = min(kv_size, pad(model.sliding_window + n_ubatch, _CTX_PAD))
    v_trans = not settings.flash_attn
    layers = model.graph.layers
    v_max = max(layer.n_head_kv * layer.head_dim_v for layer in layers)
    sizes = [0] * (placed.n_gpu + 1)
    for il, layer in enumerate(layers):
        if layer.n_head_kv == 0:
            continue
        cells = kv_size if settings.swa_full or il not in model.swa_layers else swa_size
        n_k = layer.n_head_kv * layer.head_dim_k
        n_v = v_max if v_trans else layer.n_head_kv * layer.head_dim_v
        k_bytes = row_bytes(settings.type_k, n_k) * cells
        v_bytes = row_bytes(settings.type_v, n_v) * cells
        device = placed.kv_device[il]
        alignment = _CPU_ALIGNMENT if device == placed.cpu else gpus[device].alignment
        sizes[device] += pad(k_bytes, alignment) + pad(v_bytes, alignment)
    return sizes


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


# Runs of identical blocks longer than this give the same compute buffers (checked by tests).
_STEADY_RUN = 4


class _ComputeCache:
    """Compute buffers per device for a placement, simulated once per distinct layout.

    Blocks of one shape make long runs of identically placed blocks equivalent to short ones, so
    the simulated graph keeps at most ``_STEADY_RUN`` blocks of each run; models whose blocks
    differ are simulated whole.
    """

    def __init__(
        self, model: ModelShape, settings: EstimateSettings, gpus: Sequence[DeviceProfile]
    ) -> None:
        self.model = model
        self.graph_settings = _graph_settings(model, settings)
        self.gpus = list(gpus)
        self.uniform = len(set(model.graph.layers)) == 1
        self.results: dict[tuple[tuple[int, int, int], ...], list[int]] = {}

    def sizes(self, placed: Layout, n_copies: int) -> list[int]:
        *blocks, output = placed.compute_key()
        if self.uniform:
            kept: list[tuple[int, int, int]] = []
            run = 0
            for index, block in enumerate(blocks):
                run = run + 1 if index and block == blocks[index - 1] else 1
                if run <= _STEADY_RUN:
                    kept.append(block)
            blocks = kept
        short_key = (*blocks, output, (n_copies, 0, 0))
        found = self.results.get(short_key)
        if found is None:
            found = self.results[short_key] = self._simulate(blocks, output[0], n_copies)
        return found

    def _simulate(
        self, blocks: Sequence[tuple[int, int, int]], output_device: int, n_copies: int
    ) -> list[int]:
        cpu_backend = Backend("CPU", _CPU_ALIGNMENT, host=True)
        layers = self.model.graph.layers
        if self.uniform:
            layers = (layers[0],) * len(blocks)
        shape = replace(self.model.graph, layers=tuple(layers))
        placement = Placement(
            layer_backend=tuple(b[0] for b in blocks),
            kv_backend=tuple(b[2] for b in blocks),
            output_backend=output_device,
            expert_backend=tuple(b[1] for b in blocks),
        )
        backends = [gpu.backend() for gpu in self.gpus] + [cpu_backend]
        graph_settings = replace(self.graph_settings, n_copies=n_copies)
        return compute_buffers(shape, graph_settings, backends, placement)


# ggml's GGML_SCHED_MAX_COPIES: graph and split inputs kept this many times over
_PIPELINE_COPIES = 4


def _pipeline_copies(
    settings: EstimateSettings,
    gpus: Sequence[DeviceProfile],
    offload: int,
    n_layer: int,
    n_cpu_moe: int,
) -> int:
    """4 when llama.cpp turns on pipeline parallelism (llama_context's conditions), else 1."""
    parallel = (
        len(gpus) > 1
        and offload > n_layer
        and settings.split_mode == "layer"
        and settings.offload_kqv
        and not settings.tensor_overrides
        and n_cpu_moe <= 0
        and all(gpu.async_events for gpu in gpus)
    )
    return _PIPELINE_COPIES if parallel else 1


def _memory(
    model: ModelShape,
    settings: EstimateSettings,
    devices: Sequence[DeviceProfile],
    computed: _ComputeCache,
    offload: int,
    n_cpu_moe: int,
) -> LevelEstimate:
    """Memory of one (offload layers, expert layers on the CPU) pair, per device."""
    gpus = [d for d in devices if d.present]
    placed = _layout(model, settings, devices, offload, n_cpu_moe)
    weights = _weights(model, placed, gpus, settings.use_mmap)
    kv = _kv(model, settings, placed, gpus)
    copies = _pipeline_copies(settings, gpus, offload, model.n_layer, n_cpu_moe)
    compute = computed.sizes(placed, copies)
    splits = [
        MemorySplit(weights=weights[d], kv=kv[d], compute=compute[d]) for d in range(len(gpus))
    ]
    cpu = MemorySplit(weights=weights[-1], kv=kv[-1], compute=compute[-1], output=model.n_vocab * 4)
    gpu_total = MemorySplit(
        weights=sum(s.weights for s in splits),
        kv=sum(s.kv for s in splits),
        compute=sum(s.compute for s in splits),
    )
    resolved_moe = min(max(n_cpu_moe, 0), model.n_layer) if model.expert_tensors else 0
    return LevelEstimate(
        offload_layers=offload,
        gpu=gpu_total,
        cpu=cpu,
        n_cpu_moe=resolved_moe,
        devices=tuple((gpu.name, split) for gpu, split in zip(gpus, splits, strict=True)),
    )


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


def _offload_devices(
    settings: EstimateSettings, device: DeviceProfile | Sequence[DeviceProfile]
) -> tuple[DeviceProfile, ...]:
    devices = (device,) if isinstance(device, DeviceProfile) else tuple(device)
    gpus = tuple(d for d in devices if d.present)
    if not gpus:
        return (NO_GPU,)
    if settings.split_mode == "none" or len(gpus) == 1:
        return (gpus[min(max(settings.main_gpu, 0), len(gpus) - 1)],)
    return gpus


def estimate(
    info: ModelInfo,
    settings: EstimateSettings | None = None,
    device: DeviceProfile | Sequence[DeviceProfile] = CUDA,
) -> Estimate:
    """Memory at every offload level 0 .. n_layer+1 for ``info`` under ``settings``.

    ``device`` is the GPU, or llama.cpp's offload devices in its order (blocks are split
    between them by ``settings.tensor_split``). ``levels`` hold ``settings.n_cpu_moe`` expert
    layers on the CPU; ``Estimate.pair`` gives any other count.
    """
    settings = settings or EstimateSettings()
    problems = problems_with(info, settings)
    if any(p.startswith("unknown") for p in problems):
        raise EstimateError(problems[0])
    model = model_shape(info)
    devices = _offload_devices(settings, device)
    exact = info.architecture in EXACT_ARCHITECTURES
    notes = []
    if not exact:
        notes.append(
            f"compute buffers of {info.architecture} are sized with the llama graph (approximate)"
        )
    if settings.split_mode == "row" and len(devices) > 1:
        notes.append("row split is estimated as a layer split (CUDA's split buffers are not)")
    gpus = [d for d in devices if d.present]
    computed = _ComputeCache(model, settings, gpus)

    def pair(level: int, n_cpu_moe: int) -> LevelEstimate:
        placed = level if gpus else 0
        found = _memory(model, settings, devices, computed, placed, n_cpu_moe)
        return replace(found, offload_layers=level)

    levels = tuple(pair(level, settings.n_cpu_moe) for level in range(model.n_layer + 2))
    expert_layers = len({model.layer_of[name] for name in model.expert_tensors})
    est = Estimate(
        model_path=info.path,
        settings=settings,
        device=devices[0],
        n_layer=model.n_layer,
        kv_cells=_kv_cells(settings, model),
        levels=levels,
        exact_graph=exact,
        problems=problems,
        notes=tuple(notes),
        devices=devices,
        expert_layers=expert_layers,
        pair_source=pair,
    )
    for lv in levels:
        est._pairs[(lv.offload_layers, lv.n_cpu_moe)] = lv
    return est


@lru_cache(maxsize=64)
def _cached(
    path: str,
    size: int,
    mtime_ns: int,
    settings: EstimateSettings,
    device: DeviceProfile | tuple[DeviceProfile, ...],
) -> Estimate:
    from tui_llm.catalog.metadata import read_model_info

    return estimate(read_model_info(path), settings, device)


def estimate_file(
    path: str | Path,
    settings: EstimateSettings | None = None,
    device: DeviceProfile | Sequence[DeviceProfile] = CUDA,
) -> Estimate:
    """``estimate`` for a file, remembered while the file is unchanged (the browser asks often)."""
    stat = Path(path).stat()
    chosen = settings or EstimateSettings()
    key = device if isinstance(device, DeviceProfile) else tuple(device)
    return _cached(str(path), stat.st_size, stat.st_mtime_ns, chosen, key)
