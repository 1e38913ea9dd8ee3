"""Typed messages between the UI-side engine client and the llama.cpp child process.

Messages are frozen dataclasses serialised as one JSON object per line, tagged with ``type``; the
child and the parent share this module so the two sides cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

OffloadValue = int | Literal["all"]
SplitMode = Literal["layer", "row", "none"]

KV_CACHE_TYPES: tuple[str, ...] = ("f16", "bf16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")


@dataclass(frozen=True)
class LoadSettings:
    """How llama.cpp loads a model: everything that needs a reload to change."""

    model_path: str
    offload_layers: OffloadValue = 0
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None
    flash_attn: bool = False
    kv_cache_type: str = "f16"
    use_mmap: bool = True
    offload_kqv: bool = True
    rpc_servers: tuple[str, ...] = ()
    chat_format: str | None = None
    # Mixture-of-experts: the expert FFN tensors (``ffn_*_exps``) of the first n_cpu_moe layers
    # stay in host memory (llama.cpp's ``--n-cpu-moe N``; "all" is ``--cpu-moe``).
    n_cpu_moe: OffloadValue = 0
    # llama.cpp's ``-ot PATTERN=BUFT``: (regular expression on tensor names, buffer type name such
    # as "CPU", "CUDA0" or "RPC0[127.0.0.1:50052]"), applied before n_cpu_moe's patterns.
    tensor_overrides: tuple[tuple[str, str], ...] = ()
    # Several devices: proportions per device in llama.cpp's device order (() = by free memory),
    # how a model is cut between them, and the device for the output and small tensors.
    tensor_split: tuple[float, ...] = ()
    split_mode: SplitMode = "layer"
    main_gpu: int = 0

    def offload_for_llama(self) -> int:
        """The ``n_gpu_layers`` value for llama.cpp (``-1`` means every layer)."""
        return -1 if self.offload_layers == "all" else int(self.offload_layers)

    def kv_compatible_with(self, other: LoadSettings) -> bool:
        """Whether a KV cache saved under ``other`` can be restored under these settings."""
        return (
            self.model_path == other.model_path
            and self.n_ctx >= other.n_ctx
            and self.kv_cache_type == other.kv_cache_type
            and self.flash_attn == other.flash_attn
        )


@dataclass(frozen=True)
class SamplingParams:
    """Per-reply sampling settings; changing them needs no reload."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation; a reply's thinking is kept apart from its answer.

    The template sees ``reasoning`` as ``reasoning_content`` (Qwen3's and DeepSeek's name): a
    template that uses it decides which turns keep their thinking; one that does not drops it.
    """

    role: Literal["system", "user", "assistant"]
    content: str
    reasoning: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    """A ggml backend device as llama.cpp sees it (CPU, GPU, or an RPC server)."""

    name: str
    description: str
    kind: Literal["cpu", "gpu", "igpu", "accel", "other"]
    memory_free: int
    memory_total: int


@dataclass(frozen=True)
class BufferSize:
    """One buffer llama.cpp reported in its log: which device, what it holds, how big."""

    device: str
    kind: Literal["model", "kv", "compute", "output", "recurrent"]
    size_bytes: int


@dataclass(frozen=True)
class DeviceLayers:
    """How many of the model's layers llama.cpp assigned to one device (the output layer counts)."""

    device: str
    layers: int


@dataclass(frozen=True)
class ReplyStats:
    """What a user wants to know about a reply's speed."""

    prompt_tokens: int
    prompt_tokens_evaluated: int
    generated_tokens: int
    time_to_first_token_s: float
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    total_s: float
    # Of generated_tokens, those inside a reasoning model's thinking (the tags included).
    reasoning_tokens: int = 0
    # From the request to the first answer text after any thinking; None: no answer text.
    time_to_first_answer_s: float | None = None

    @property
    def answer_tokens(self) -> int:
        """Generated tokens that are not thinking."""
        return self.generated_tokens - self.reasoning_tokens


# ---- requests (parent -> child) -------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    request_id: int
    settings: LoadSettings
    keep_kv: bool = True
    type: Literal["load"] = "load"


@dataclass(frozen=True)
class UnloadRequest:
    request_id: int
    type: Literal["unload"] = "unload"


@dataclass(frozen=True)
class GenerateRequest:
    request_id: int
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    batch_interval_s: float = 0.05
    type: Literal["generate"] = "generate"


@dataclass(frozen=True)
class BenchRequest:
    """Measure the loaded model as llama-bench does: a prompt of ``prompt_tokens`` random tokens
    decoded in batches (pp), then ``gen_tokens`` tokens decoded one at a time (tg); no sampling,
    no text. The KV cache is cleared first; the conversation's is kept aside by the engine and
    carried into the next load with ``keep_kv`` (until a reply or another model replaces it). A
    load with ``keep_kv=False`` of the same model keeps it aside the same way."""

    request_id: int
    prompt_tokens: int
    gen_tokens: int
    seed: int = 0
    type: Literal["bench"] = "bench"


@dataclass(frozen=True)
class CancelRequest:
    request_id: int
    type: Literal["cancel"] = "cancel"


@dataclass(frozen=True)
class DevicesRequest:
    request_id: int
    type: Literal["devices"] = "devices"


@dataclass(frozen=True)
class ShutdownRequest:
    request_id: int = 0
    type: Literal["shutdown"] = "shutdown"


# ---- events (child -> parent) ---------------------------------------------------------------


@dataclass(frozen=True)
class ReadyEvent:
    """The child is up: what the installed llama.cpp build can do."""

    pid: int
    llama_cpp_version: str
    supports_gpu_offload: bool
    supports_rpc: bool
    supports_mmap: bool
    system_info: str
    devices: tuple[DeviceInfo, ...]
    log_path: str
    request_id: int = 0
    type: Literal["ready"] = "ready"


@dataclass(frozen=True)
class ProgressEvent:
    request_id: int
    progress: float
    type: Literal["progress"] = "progress"


@dataclass(frozen=True)
class LoadedEvent:
    """A model is loaded; the buffers are what llama.cpp itself reported."""

    request_id: int
    settings: LoadSettings
    n_layer: int
    offloaded_layers: int
    total_layers: int
    buffers: tuple[BufferSize, ...]
    devices: tuple[DeviceInfo, ...]
    chat_template_source: str
    chat_template_warning: str | None
    load_seconds: float
    kv_restored_tokens: int
    n_ctx_train: int
    layers_by_device: tuple[DeviceLayers, ...] = ()
    type: Literal["loaded"] = "loaded"


@dataclass(frozen=True)
class UnloadedEvent:
    request_id: int
    type: Literal["unloaded"] = "unloaded"


@dataclass(frozen=True)
class TokensEvent:
    """A batch of generated text (several tokens gathered over ~40 ms): answer and thinking."""

    request_id: int
    text: str
    n_tokens: int
    reasoning: str = ""
    type: Literal["tokens"] = "tokens"


@dataclass(frozen=True)
class DoneEvent:
    """A reply ended: its whole answer, its thinking (if the model thinks), why it ended."""

    request_id: int
    text: str
    finish_reason: Literal["stop", "length", "cancelled", "context"]
    stats: ReplyStats
    n_past: int
    reasoning: str = ""
    type: Literal["done"] = "done"


@dataclass(frozen=True)
class BenchEvent:
    """One measurement of a ``BenchRequest`` (seconds of wall time in the engine)."""

    request_id: int
    prompt_tokens: int
    prompt_s: float
    gen_tokens: int
    gen_s: float
    first_token_s: float  # the prompt and the first generated token: time to first token
    type: Literal["bench_result"] = "bench_result"

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def gen_tokens_per_s(self) -> float:
        return self.gen_tokens / self.gen_s if self.gen_s > 0 else 0.0


@dataclass(frozen=True)
class HeartbeatEvent:
    """Sent every ``HEARTBEAT_INTERVAL_S`` by a thread of its own, even while llama.cpp computes:
    an engine that is busy keeps sending them, one that is stopped or hung sends nothing."""

    request_id: int = 0
    type: Literal["heartbeat"] = "heartbeat"


HEARTBEAT_INTERVAL_S = 0.25


@dataclass(frozen=True)
class DevicesEvent:
    request_id: int
    devices: tuple[DeviceInfo, ...]
    type: Literal["device_list"] = "device_list"


ErrorKind = Literal[
    "bad_model",
    "out_of_memory",
    "cancelled",
    "not_loaded",
    "bad_request",
    "internal",
    "crashed",
    "not_answering",
]


@dataclass(frozen=True)
class ErrorEvent:
    """A request failed; ``message`` is one line meant for the user."""

    request_id: int
    kind: ErrorKind
    message: str
    log_tail: tuple[str, ...] = ()
    type: Literal["error"] = "error"


Request = (
    LoadRequest
    | UnloadRequest
    | GenerateRequest
    | BenchRequest
    | CancelRequest
    | DevicesRequest
    | ShutdownRequest
)
Event = (
    ReadyEvent
    | ProgressEvent
    | LoadedEvent
    | UnloadedEvent
    | TokensEvent
    | DoneEvent
    | BenchEvent
    | DevicesEvent
    | ErrorEvent
    | HeartbeatEvent
)

_TYPES: dict[str, type[Any]] = {
    cls.__dataclass_fields__["type"].default: cls  # type: ignore[attr-defined]
    for cls in (*get_args(Request), *get_args(Event))
}
assert len(_TYPES) == len(get_args(Request)) + len(get_args(Event)), "message type tags collide"


def encode(message: Request | Event) -> bytes:
    """One JSON line for a message."""
    return json.dumps(dataclasses.asdict(message), separators=(",", ":")).encode() + b"\n"


def _build(tp: Any, value: Any) -> Any:
    """Rebuild a typed value (dataclass, tuple, union) from its JSON form."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: _build(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.name in value
        }
        return tp(**kwargs)
    if origin is tuple:
        args = get_args(tp)
        item = args[0] if args else Any
        return tuple(_build(item, v) for v in value)
    if origin is Union or isinstance(tp, types.UnionType):
        for option in get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _build(option, value)
        return value
    return value


def load_settings_from_json(data: dict[str, Any]) -> LoadSettings:
    """``LoadSettings`` from its ``dataclasses.asdict`` form (lists become tuples; keys it does not
    know are ignored, missing ones take their defaults); raises ``TypeError`` on other data."""
    settings: LoadSettings = _build(LoadSettings, data)
    return settings


def decode(line: bytes | str) -> Request | Event:
    """Parse one JSON line into its message dataclass; raises ``ValueError`` on anything else."""
    try:
        raw = json.loads(line)
        cls = _TYPES[raw["type"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"bad engine message: {line[:80]!r}") from exc
    try:
        built: Request | Event = _build(cls, raw)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"bad {raw['type']} message: {exc}") from exc
    return built
