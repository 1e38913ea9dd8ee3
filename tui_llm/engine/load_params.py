"""How the engine asks llama.cpp to load a model: ``Llama()`` arguments and model params.

Shared by the engine child and its benchmark. ``llama_cpp`` is imported inside the functions
that need it, never at module level.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tui_llm.catalog.ggml_types import type_ids_by_name
from tui_llm.engine.protocol import KV_CACHE_TYPES, LoadSettings, ProgressEvent

# ggml type id of each KV cache type llama.cpp accepts.
KV_TYPE_IDS = {name: type_ids_by_name()[name] for name in KV_CACHE_TYPES}


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
    }


@contextmanager
def progress_hook(on_progress: Callable[[float], bool]) -> Iterator[None]:
    """Install a progress callback on the params ``Llama()`` builds; ``False`` aborts."""
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
