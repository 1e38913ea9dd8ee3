"""The engine child process: owns the one ``Llama`` and answers typed requests on stdin/stdout.

Run as ``python -m tui_llm.engine.worker LOG_PATH``. At start it moves the protocol to private
file descriptors and points fds 1 and 2 at the log file, so nothing llama.cpp prints can reach the
terminal the UI draws on. A reader thread takes requests (and cancels) while the main thread runs
llama.cpp.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from tui_llm.engine import chat_format, kvstate
from tui_llm.engine.load_params import KV_TYPE_IDS, llama_kwargs, progress_hook
from tui_llm.engine.logparse import parse_load_log
from tui_llm.engine.logsink import LogSink
from tui_llm.engine.protocol import (
    CancelRequest,
    ChatMessage,
    DevicesEvent,
    DevicesRequest,
    DoneEvent,
    ErrorEvent,
    ErrorKind,
    Event,
    GenerateRequest,
    LoadedEvent,
    LoadRequest,
    LoadSettings,
    ProgressEvent,
    ReadyEvent,
    ReplyStats,
    Request,
    SamplingParams,
    ShutdownRequest,
    TokensEvent,
    UnloadedEvent,
    UnloadRequest,
    decode,
    encode,
)
from tui_llm.engine.streaming import find_stop, held_back, tokens_to_evaluate


class Worker:
    """Handles requests one at a time on the main thread; cancels arrive on the reader thread."""

    def __init__(self, out: IO[bytes], sink: LogSink, log_path: str) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self._sink = sink
        self._log_path = log_path
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._cancelled: set[int] = set()
        self._cancel_lock = threading.Lock()
        self._llm: Any = None
        self._settings: LoadSettings | None = None
        self._template: str | None = None
        self._template_name = ""
        self._stops: tuple[str, ...] = ()
        self._template_warning: str | None = None
        self._shutdown = False

    # ---- plumbing ------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        data = encode(event)
        with self._out_lock:
            self._out.write(data)
            self._out.flush()

    def reader(self, stream: IO[bytes]) -> None:
        """Read requests until EOF; cancels take effect at once, the rest queue up."""
        for line in stream:
            try:
                message = decode(line)
            except ValueError as exc:
                self.send(ErrorEvent(0, "bad_request", str(exc)))
                continue
            if isinstance(message, CancelRequest):
                with self._cancel_lock:
                    self._cancelled.add(message.request_id)
            elif isinstance(message, ShutdownRequest):
                self._shutdown = True
                self._queue.put(None)
            else:
                self._queue.put(message)  # type: ignore[arg-type]
        self._shutdown = True
        self._queue.put(None)

    def is_cancelled(self, request_id: int) -> bool:
        return self._shutdown or request_id in self._cancelled

    def run(self) -> None:
        import llama_cpp

        from tui_llm.engine import native

        self.send(
            ReadyEvent(
                pid=os.getpid(),
                llama_cpp_version=getattr(llama_cpp, "__version__", "?"),
                supports_gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
                supports_rpc=native.supports_rpc(),
                supports_mmap=bool(llama_cpp.llama_supports_mmap()),
                system_info=llama_cpp.llama_print_system_info().decode(errors="replace"),
                devices=native.list_devices(),
                log_path=self._log_path,
            )
        )
        while True:
            request = self._queue.get()
            if request is None:
                break
            try:
                self.handle(request)
            except Exception as exc:  # one request failing must not end the engine
                self.send(
                    ErrorEvent(
                        request.request_id,
                        "internal",
                        f"{type(exc).__name__}: {exc}".splitlines()[0],
                        tuple(self._sink.tail)[-10:],
                    )
                )
            finally:
                with self._cancel_lock:
                    self._cancelled.discard(request.request_id)
        self._unload()

    def handle(self, request: Request) -> None:
        if isinstance(request, LoadRequest):
            self.load(request)
        elif isinstance(request, GenerateRequest):
            self.generate(request)
        elif isinstance(request, UnloadRequest):
            self._unload()
            self.send(UnloadedEvent(request.request_id))
        elif isinstance(request, DevicesRequest):
            from tui_llm.engine import native

            self.send(DevicesEvent(request.request_id, native.list_devices()))

    # ---- loading -------------------------------------------------------------------------

    def _unload(self) -> None:
        if self._llm is not None:
            # close() frees the model and context now; no collection needed to get memory back.
            self._llm.close()
            self._llm = None
        self._settings = None

    def _progress_reporter(self, request_id: int) -> Callable[[float], bool]:
        """A load progress callback: sends progress events; ``False`` (cancelled) aborts."""
        last = [-1.0]

        def on_progress(progress: float) -> bool:
            if self.is_cancelled(request_id):
                return False
            if progress - last[0] >= 0.01 or progress >= 1.0:
                last[0] = progress
                self.send(ProgressEvent(request_id, float(progress)))
            return True

        return on_progress

    def load(self, request: LoadRequest) -> None:
        from llama_cpp import Llama

        from tui_llm.catalog.gguf_reader import GGUFError
        from tui_llm.catalog.metadata import read_model_info
        from tui_llm.engine import native

        settings = request.settings
        rid = request.request_id
        name = os.path.basename(settings.model_path)
        try:
            info = read_model_info(settings.model_path)
        except (GGUFError, OSError) as exc:
            self.send(ErrorEvent(rid, "bad_model", _one_line(exc)))
            return
        if settings.kv_cache_type not in KV_TYPE_IDS:
            self.send(
                ErrorEvent(rid, "bad_request", f"unknown KV cache type {settings.kv_cache_type}")
            )
            return
        try:
            for endpoint in settings.rpc_servers:
                native.add_rpc_server(endpoint)
        except RuntimeError as exc:
            self.send(ErrorEvent(rid, "bad_request", _one_line(exc)))
            return

        state = None
        if (
            request.keep_kv
            and self._settings is not None
            and settings.kv_compatible_with(self._settings)
        ):
            state = kvstate.save_state(self._llm)
        self._unload()

        started = time.perf_counter()
        error: str | None = None
        kind: ErrorKind = "bad_model"
        with self._sink.capture() as lines:
            try:
                with progress_hook(self._progress_reporter(rid)):
                    self._llm = Llama(settings.model_path, verbose=True, **llama_kwargs(settings))
            except (ValueError, RuntimeError, OSError) as exc:
                error = _one_line(exc)
        devices = native.list_devices()
        report = parse_load_log(lines, devices)
        if self._llm is None:
            if self.is_cancelled(rid):
                self.send(ErrorEvent(rid, "cancelled", f"loading {name} was cancelled"))
                return
            if report.out_of_memory:
                kind = "out_of_memory"
            detail = self._sink.last_error() or error or "llama.cpp refused the file"
            self.send(
                ErrorEvent(rid, kind, f"cannot load {name}: {detail}", tuple(self._sink.tail)[-10:])
            )
            return
        self._settings = settings
        self._choose_template(settings)
        restored = kvstate.restore_state(self._llm, state) if state is not None else 0
        self.send(
            LoadedEvent(
                request_id=rid,
                settings=settings,
                n_layer=info.n_layer or 0,
                offloaded_layers=report.offloaded_layers,
                total_layers=report.total_layers or (info.n_layer or 0) + 1,
                buffers=report.buffers,
                devices=devices,
                chat_template_source=self._template_name,
                chat_template_warning=self._template_warning,
                load_seconds=time.perf_counter() - started,
                kv_restored_tokens=restored,
                n_ctx_train=int(info.context_length or 0),
                layers_by_device=report.layers_by_device,
            )
        )

    def _choose_template(self, settings: LoadSettings) -> None:
        llm = self._llm
        metadata: dict[str, str] = llm.metadata
        self._template_warning = None
        if settings.chat_format:
            name = settings.chat_format
            self._template = chat_format.BUILTIN_FORMATS[name]
            self._template_name = name
            self._stops = chat_format.STOP_STRINGS.get(name, ())
        elif metadata.get("tokenizer.chat_template"):
            self._template = metadata["tokenizer.chat_template"]
            self._template_name = "gguf"
            self._stops = ()
        else:
            name = chat_format.DEFAULT_FALLBACK
            self._template = chat_format.BUILTIN_FORMATS[name]
            self._template_name = name
            self._stops = chat_format.STOP_STRINGS.get(name, ())
            self._template_warning = (
                f"this model has no chat template; using the {name} format "
                "(choose another with --chat-format)"
            )

    # ---- generation ----------------------------------------------------------------------

    def _render(self, messages: tuple[ChatMessage, ...]) -> tuple[str, tuple[str, ...]]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="ignore")
        bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="ignore")
        formatter = Jinja2ChatFormatter(template=self._template or "", eos_token=eos, bos_token=bos)
        chat: Any = [{"role": m.role, "content": m.content} for m in messages]
        response = formatter(messages=chat)
        stops = tuple(s for s in (*self._stops,) if s)
        return response.prompt, stops

    def generate(self, request: GenerateRequest) -> None:
        import llama_cpp

        rid = request.request_id
        llm = self._llm
        if llm is None:
            self.send(ErrorEvent(rid, "not_loaded", "no model is loaded"))
            return
        sampling: SamplingParams = request.sampling
        started = time.perf_counter()
        prompt, template_stops = self._render(request.messages)
        bos_text = llm.detokenize([llm.token_bos()], special=True).decode(errors="ignore")
        add_bos = not (bos_text and prompt.startswith(bos_text))
        tokens = llm.tokenize(prompt.encode(), add_bos=add_bos, special=True)
        n_ctx = min(llm.n_ctx(), len(llm.input_ids))
        if len(tokens) >= n_ctx:
            self.send(
                ErrorEvent(
                    rid,
                    "bad_request",
                    f"the conversation is {len(tokens)} tokens, the context holds {n_ctx}",
                )
            )
            return
        evaluated = tokens_to_evaluate(
            [int(t) for t in llm.input_ids[: llm.n_tokens]], tokens, llm._requires_eval
        )
        stops = tuple(dict.fromkeys((*sampling.stop, *template_stops)))
        room = n_ctx - len(tokens)
        max_tokens = min(sampling.max_tokens, room) if sampling.max_tokens > 0 else room
        if sampling.seed is not None:
            llm.set_seed(sampling.seed)
        vocab = llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""
        emitted = 0
        batch_tokens = 0
        n_generated = 0
        first_at: float | None = None
        last_at = started
        last_flush = started
        finish: str = "length"
        piece_buf = ctypes.create_string_buffer(256)

        for token in llm.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        ):
            now = time.perf_counter()
            if first_at is None:
                first_at = now
            last_at = now
            if self.is_cancelled(rid):
                finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            n_generated += 1
            batch_tokens += 1
            n = llama_cpp.llama_token_to_piece(vocab, token, piece_buf, 256, 0, False)
            text += decoder.decode(piece_buf.raw[: max(n, 0)])
            stop_at = find_stop(text, stops, emitted)
            if stop_at is not None:
                text = text[:stop_at]
                finish = "stop"
                break
            safe = len(text) - held_back(text, stops)
            if safe > emitted and now - last_flush >= request.batch_interval_s:
                self.send(TokensEvent(rid, text[emitted:safe], batch_tokens))
                emitted, batch_tokens, last_flush = safe, 0, now
            if n_generated >= max_tokens:
                finish = "length" if n_generated < room else "context"
                break
        text += decoder.decode(b"", final=True) if finish != "stop" else ""
        if len(text) > emitted:
            self.send(TokensEvent(rid, text[emitted:], batch_tokens))
        ended = time.perf_counter()
        ttft = (first_at or ended) - started
        gen_span = last_at - (first_at or last_at)
        stats = ReplyStats(
            prompt_tokens=len(tokens),
            prompt_tokens_evaluated=evaluated,
            generated_tokens=n_generated,
            time_to_first_token_s=ttft,
            prompt_tokens_per_s=evaluated / ttft if ttft > 0 else 0.0,
            generation_tokens_per_s=(n_generated - 1) / gen_span
            if n_generated > 1 and gen_span > 0
            else 0.0,
            total_s=ended - started,
        )
        self.send(DoneEvent(rid, text, finish, stats, int(llm.n_tokens)))  # type: ignore[arg-type]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _die_with_parent() -> None:
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    log_path = args[0] if args else os.devnull
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    log_file = os.fdopen(log_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stdout = log_file
    sys.stderr = log_file
    sink = LogSink(log_file)

    import llama_cpp

    def on_log(_level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        sink.write(text.decode("utf-8", errors="replace"))

    log_callback = llama_cpp.llama_log_callback(on_log)
    llama_cpp.llama_log_set(log_callback, ctypes.c_void_p(0))

    worker = Worker(proto_out, sink, log_path)
    reader = threading.Thread(target=worker.reader, args=(proto_in,), daemon=True)
    reader.start()
    worker.run()
    proto_out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
