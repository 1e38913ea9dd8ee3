"""How the engine asks llama.cpp to load a model: ``Llama()`` arguments and model params.

Shared by the engine child and its benchmark. ``llama_cpp`` is imported inside the functions
that need it, never at module level.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tui_llm.catalog.ggml_types import type_ids_by_name
from tui_llm.engine.protocol import KV_CACHE_TYPES, LoadSettings, ProgressEvent, SplitMode

if TYPE_CHECKING:
    from tui_llm.engine.native import TensorBuftOverrides

# ggml type id of each KV cache type llama.cpp accepts.
KV_TYPE_IDS = {name: type_ids_by_name()[name] for name in KV_CACHE_TYPES}
# llama.h's enum llama_split_mode.
SPLIT_MODE_IDS: dict[SplitMode, int] = {"none": 0, "layer": 1, "row": 2}
# The expert FFN tensors, as llama.cpp's common.h matches them for --cpu-moe and --n-cpu-moe
# (fused gate_up and "chunked" experts included); shared experts (``_shexp``) do not match.
FFN_EXPS_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
CPU_BUFFER_TYPE = "CPU"


def expert_layer_pattern(layer: int) -> str:
    """The pattern for one layer's expert tensors (common.h's ``llm_ffn_exps_block_regex``)."""
    return rf"blk\.{layer}{FFN_EXPS_PATTERN}"


def tensor_overrides(settings: LoadSettings) -> tuple[tuple[str, str], ...]:
    """(pattern, buffer type name) pairs for a load, in llama.cpp's order of precedence.

    The user's ``tensor_overrides`` come first (the first matching pattern wins), then
    ``n_cpu_moe``'s: one pattern for "all" (``--cpu-moe``), else one per layer 0..N-1.
    """
    pairs = list(settings.tensor_overrides)
    if settings.n_cpu_moe == "all":
        pairs.append((FFN_EXPS_PATTERN, CPU_BUFFER_TYPE))
    else:
        pairs += [
            (expert_layer_pattern(layer), CPU_BUFFER_TYPE) for layer in range(settings.n_cpu_moe)
        ]
    return tuple(pairs)


def llama_kwargs(settings: LoadSettings) -> dict[str, Any]:
    """``Llama()`` keyword arguments for load settings (the engine's and its benchmark's)."""
    kv_type = KV_TYPE_IDS[settings.kv_cache_type]
    return {
        "n_gpu_layers": settings.offload_for_llama(),
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_ubatch,
        "n_threads": settings.n_threads,
        "n_threads_batch": settings.n_threads,
        "flash_attn": settings.flash_attn,
        "type_k": kv_type,
        "type_v": kv_type,
        "use_mmap": settings.use_mmap,
        "offload_kqv": settings.offload_kqv,
        "split_mode": SPLIT_MODE_IDS[settings.split_mode],
        "main_gpu": settings.main_gpu,
        "tensor_split": list(settings.tensor_split) if settings.tensor_split else None,
    }


@contextmanager
def progress_hook(
    on_progress: Callable[[float], bool], overrides: TensorBuftOverrides | None = None
) -> Iterator[None]:
    """Install a progress callback (``False`` aborts) and the tensor buffer type overrides
    (``native.tensor_buft_overrides``) on the params ``Llama()`` builds inside the block.

    llama-cpp-python has no argument for the overrides, so they go in as its progress callback
    does: through ``llama_model_default_params``. The block keeps ``overrides`` alive.
    """
    import llama_cpp.llama_cpp as llama_cpp

    def callback_fn(progress: float, _user: ctypes.c_void_p) -> bool:
        return on_progress(progress)

    callback = llama_cpp.llama_progress_callback(callback_fn)
    original = llama_cpp.llama_model_default_params

    repack = not cpu_has_amx()

    def params_with_progress() -> Any:
        params = original()
        params.progress_callback = callback
        # llama.cpp's AMX weight repacking segfaults on the first matmul of quantized models
        # (ggml-org/llama.cpp#20824); on AMX CPUs keep weights in their plain layout.
        params.use_extra_bufts = repack
        if overrides is not None:
            params.tensor_buft_overrides = overrides.address
        return params

    llama_cpp.llama_model_default_params = params_with_progress
    try:
        yield
    finally:
        llama_cpp.llama_model_default_params = original


def progress_reporter(
    request_id: int, send: Callable[[ProgressEvent], None], cancelled: Callable[[int], bool]
) -> Callable[[float], bool]:
    """A load progress callback that sends a ``ProgressEvent`` per 1 % (and at 100 %);
    it returns ``False`` (llama.cpp then aborts the load) once the request is cancelled."""
    last = [-1.0]

    def on_progress(progress: float) -> bool:
        if cancelled(request_id):
            return False
        if progress - last[0] >= 0.01 or progress >= 1.0:
            last[0] = progress
            send(ProgressEvent(request_id, float(progress)))
        return True

    return on_progress


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX (Linux only; elsewhere there is no AMX backend)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False
