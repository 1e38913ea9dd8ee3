"""ctypes access to ggml's device registry and RPC backend inside llama-cpp-python's libraries.

Only the engine child process and the RPC server process import this (it loads llama.cpp). The
libraries are opened by their sonames (``libggml.so.0``): the wheel ships copies rather than
symlinks, and opening ``libggml.so`` would create a second device registry llama.cpp never sees.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tui_llm.engine.protocol import DeviceInfo

_DEVICE_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


def llama_lib_dir() -> Path:
    """The folder holding llama-cpp-python's shared libraries."""
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def _open(stem: str) -> ctypes.CDLL | None:
    """Open one of the bundled ggml libraries by the name libllama links against."""
    lib_dir = llama_lib_dir()
    if sys.platform == "darwin":
        candidates = [f"lib{stem}.0.dylib", f"lib{stem}.dylib"]
    elif sys.platform == "win32":
        candidates = [f"{stem}.dll"]
    else:
        candidates = [f"lib{stem}.so.0", f"lib{stem}.so"]
    for name in candidates:
        path = lib_dir / name
        if path.exists():
            return ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return None


@cache
def _ggml() -> ctypes.CDLL:
    import llama_cpp  # noqa: F401  (loads libllama and with it libggml first)

    lib = _open("ggml")
    if lib is None:
        raise RuntimeError(f"libggml not found in {llama_lib_dir()}")
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_description.restype = ctypes.c_char_p
    lib.ggml_backend_dev_memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_dev_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_dev_buffer_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_buffer_type.restype = ctypes.c_void_p
    lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_buft_name.restype = ctypes.c_char_p
    lib.ggml_backend_register.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_register.restype = None
    return lib


@cache
def _ggml_rpc() -> ctypes.CDLL | None:
    _ggml()
    lib = _open("ggml-rpc")
    if lib is None:
        return None
    lib.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_rpc_add_server.restype = ctypes.c_void_p
    lib.ggml_backend_rpc_start_server.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.ggml_backend_rpc_start_server.restype = None
    return lib


def list_devices() -> tuple[DeviceInfo, ...]:
    """Every backend device llama.cpp can use, with its free and total memory."""
    lib = _ggml()
    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(index)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind = _DEVICE_KINDS.get(lib.ggml_backend_dev_type(dev), "other")
        devices.append(
            DeviceInfo(
                name=(lib.ggml_backend_dev_name(dev) or b"?").decode(errors="replace"),
                description=(lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                kind=kind,  # type: ignore[arg-type]
                memory_free=int(free.value),
                memory_total=int(total.value),
            )
        )
    return tuple(devices)


def buffer_types() -> dict[str, int]:
    """Every device's default buffer type by name, as llama.cpp's ``-ot`` lists them.

    Maps ``ggml_backend_buft_name`` (``CPU``, ``CUDA0``, ``RPC0[127.0.0.1:50052]``) to the
    ``ggml_backend_buffer_type_t`` address; the CPU entry is the one llama.cpp compares overrides
    against to use its repacked CPU buffer types.
    """
    lib = _ggml()
    found: dict[str, int] = {}
    for index in range(lib.ggml_backend_dev_count()):
        buft = lib.ggml_backend_dev_buffer_type(lib.ggml_backend_dev_get(index))
        if buft:
            name = (lib.ggml_backend_buft_name(buft) or b"?").decode(errors="replace")
            found.setdefault(name, int(buft))
    return found


def buffer_type(name: str) -> int:
    """The buffer type an override names: a buffer type name (``RPC0[127.0.0.1:50052]``, as
    llama.cpp's ``-ot`` takes it) or a device name (``RPC1``, ``CUDA0``, ``CPU``).

    Raises ValueError, one line listing the valid names, for a name no device has.
    """
    by_name = buffer_types()
    if name in by_name:
        return by_name[name]
    lib = _ggml()
    dev = lib.ggml_backend_dev_by_name(name.encode())
    if dev:
        buft = lib.ggml_backend_dev_buffer_type(dev)
        if buft:
            return int(buft)
    devices = [device.name for device in list_devices()]
    valid = sorted(set(by_name) | set(devices))
    raise ValueError(f"unknown buffer type {name!r}; valid: {', '.join(valid)}")


class TensorBuftOverride(ctypes.Structure):
    """llama.h's ``llama_model_tensor_buft_override``: a tensor name pattern and a buffer type."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@dataclass(frozen=True)
class TensorBuftOverrides:
    """The NULL-terminated override array for ``llama_model_params.tensor_buft_overrides``.

    Holds the encoded patterns too: llama.cpp reads them through the array's pointers during the
    load, so this object must outlive ``Llama()``.
    """

    array: ctypes.Array[TensorBuftOverride]
    patterns: tuple[bytes, ...]

    @property
    def address(self) -> int:
        """The array's address, for the ``c_void_p`` field llama-cpp-python declares."""
        return ctypes.addressof(self.array)


def tensor_buft_overrides(overrides: Sequence[tuple[str, str]]) -> TensorBuftOverrides | None:
    """The array for (pattern, buffer type name) pairs, in order (llama.cpp uses the first
    pattern that matches a tensor name); None for no pairs. Register RPC servers first.

    Raises ValueError (one line, listing the valid names) for an unknown buffer type.
    """
    if not overrides:
        return None
    patterns = tuple(pattern.encode() for pattern, _ in overrides)
    array = (TensorBuftOverride * (len(overrides) + 1))()
    for index, (pattern, (_, buft_name)) in enumerate(zip(patterns, overrides, strict=True)):
        array[index].pattern = pattern
        array[index].buft = buffer_type(buft_name)
    return TensorBuftOverrides(array, patterns)


def supports_rpc() -> bool:
    """Whether this llama-cpp-python build has the RPC backend."""
    import llama_cpp

    try:
        return bool(llama_cpp.llama_supports_rpc())
    except AttributeError:
        return _ggml_rpc() is not None


_registered_rpc: set[str] = set()


def add_rpc_server(endpoint: str) -> None:
    """Register an RPC server as a device before a model loads (idempotent per endpoint)."""
    if endpoint in _registered_rpc:
        return
    rpc = _ggml_rpc()
    if rpc is None:
        raise RuntimeError("this llama-cpp-python build has no RPC backend (GGML_RPC=off)")
    reg = rpc.ggml_backend_rpc_add_server(endpoint.encode())
    if not reg:
        raise RuntimeError(f"cannot reach RPC server {endpoint}")
    _ggml().ggml_backend_register(reg)
    _registered_rpc.add(endpoint)


def serve_rpc(endpoint: str, n_threads: int, cache_dir: str | None = None) -> None:
    """Serve this machine's best local device over RPC; blocks for the life of the process."""
    lib = _ggml()
    rpc = _ggml_rpc()
    if rpc is None:
        raise RuntimeError("this llama-cpp-python build has no RPC backend (GGML_RPC=off)")
    device = None
    for kind in (1, 3, 2, 0):  # GPU, ACCEL, IGPU, then CPU
        candidate = lib.ggml_backend_dev_by_type(kind)
        if candidate:
            device = candidate
            break
    if device is None:
        raise RuntimeError("no ggml device to serve")
    devices = (ctypes.c_void_p * 1)(device)
    rpc.ggml_backend_rpc_start_server(
        endpoint.encode(),
        cache_dir.encode() if cache_dir else None,
        n_threads,
        1,
        devices,
    )


def served_device_name() -> str:
    """The name of the device ``serve_rpc`` would serve."""
    lib = _ggml()
    for kind in (1, 3, 2, 0):
        candidate = lib.ggml_backend_dev_by_type(kind)
        if candidate:
            return (lib.ggml_backend_dev_name(candidate) or b"?").decode(errors="replace")
    return "none"


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when the app that started it dies.

    The engine runs in its own session (so Ctrl+C in the terminal does not reach it); without
    this, an app killed outright would leave it holding memory (and an RPC server's connection).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


class PrefillAbort:
    """Make one llama_decode stoppable while a prompt is processed (``llama_set_abort_callback``).

    llama.cpp's CPU backend asks the callback before each graph node and, when it answers true,
    ends the decode with status 2 (llama-cpp-python raises ``RuntimeError("llama_decode returned
    2")``), after removing that ubatch's positions from the KV cache (src/llama-context.cpp).
    Without it a long prompt on a slow CPU runs to its end however long that takes, whatever
    the user asked. The callback is a Python call per graph node, about 600 per decode for a
    small model: nothing beside a prompt's ubatch, a cost for a single token, so it is cleared
    (``clear``) once the first token is out. Keeps the ctypes callback alive while installed.
    """

    def __init__(self, llm: Any, cancelled: Callable[[], bool]) -> None:
        import llama_cpp

        self._ctx = llm._ctx.ctx
        self._callback_type = llama_cpp.ggml_abort_callback
        self._callback = self._callback_type(lambda _data: bool(cancelled()))
        self._set = _llama().llama_set_abort_callback
        self._set(self._ctx, self._callback, None)
        self.installed = True

    def clear(self) -> None:
        """Remove the callback (decodes run unhindered again); idempotent."""
        if self.installed:
            self._set(self._ctx, self._callback_type(), None)  # NULL: none
            self.installed = False


@cache
def _llama() -> ctypes.CDLL:
    import llama_cpp

    lib: ctypes.CDLL = llama_cpp.llama_cpp._lib
    lib.llama_set_abort_callback.argtypes = [
        ctypes.c_void_p,
        llama_cpp.ggml_abort_callback,
        ctypes.c_void_p,
    ]
    lib.llama_set_abort_callback.restype = None
    return lib
