"""The engine child process: owns the one ``Llama`` and answers typed requests on stdin/stdout.

Run as ``python -m tui_llm.engine.worker LOG_PATH``. At start it moves the protocol to private
file descriptors and points fds 1 and 2 at the log file, so nothing llama.cpp prints can reach the
terminal the UI draws on. A reader thread takes requests (and cancels) while the main thread runs
llama.cpp.
"""

from __future__ import annotations

import ctypes
import os
import queue
import sys
import threading
import time
from typing import IO, Any

from tui_llm.engine import kvstate, templates
from tui_llm.engine.bench import bench_once, bench_problem
from tui_llm.engine.compat import missing_internals, unsupported_message
from tui_llm.engine.load_params import (
    KV_TYPE_IDS,
    llama_kwargs,
    placement_problem,
    progress_hook,
    progress_reporter,
    tensor_overrides,
)
from tui_llm.engine.logparse import load_failure_line, parse_load_log
from tui_llm.engine.logsink import LogSink
from tui_llm.engine.model_files import openable_path
from tui_llm.engine.protocol import (
    HEARTBEAT_INTERVAL_S,
    BenchRequest,
    CancelRequest,
    ChatMessage,
    CountEvent,
    CountRequest,
    DevicesEvent,
    DevicesRequest,
    DoneEvent,
    ErrorEvent,
    ErrorKind,
    Event,
    GenerateRequest,
    HeartbeatEvent,
    LoadedEvent,
    LoadRequest,
    LoadSettings,
    ReadyEvent,
    ReplyStats,
    Request,
    ShutdownRequest,
    UnloadedEvent,
    UnloadRequest,
    decode,
    encode,
)
from tui_llm.engine.reasoning import splitter_for
from tui_llm.engine.reply import ReplyStream, special_text
from tui_llm.engine.streaming import tokens_to_evaluate


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
        self._template: templates.ChosenTemplate | None = None
        # The conversation's KV cache, kept aside when a benchmark is about to overwrite it, so
        # the load after a sweep carries it as any reload does.
        self._stash: tuple[LoadSettings, kvstate.SavedState] | None = None
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

    def heartbeat(self) -> None:
        """Say "alive" every ``HEARTBEAT_INTERVAL_S`` until shutdown, from a thread of its own.

        llama.cpp's calls release the GIL, so this keeps going while a long prompt is processed on
        a slow CPU: "busy" and "stopped" differ. A stopped process (SIGSTOP, a machine swapping
        itself to death, Python wedged holding the GIL) sends nothing. A call that never returns
        inside llama.cpp still looks busy: that needs a progress deadline, which prompt
        processing on a slow CPU would trip.
        """
        while not self._shutdown:
            try:
                self.send(HeartbeatEvent())
            except (BrokenPipeError, ValueError, OSError):
                return  # the client is gone; the reader thread's EOF ends the process
            time.sleep(HEARTBEAT_INTERVAL_S)

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
        elif isinstance(request, CountRequest):
            self.count(request)
        elif isinstance(request, BenchRequest):
            self.bench(request)
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
        for endpoint in settings.rpc_servers:
            registered = _register_rpc_server(endpoint)
            if registered is not None:
                self.send(ErrorEvent(rid, *registered))
                return
        try:
            overrides = native.tensor_buft_overrides(tensor_overrides(settings))
            problem = placement_problem(settings, native.list_devices())
            if problem is not None:
                raise ValueError(problem)
        except (RuntimeError, ValueError) as exc:
            self.send(ErrorEvent(rid, "bad_request", _one_line(exc)))
            return

        state = None
        if (
            request.keep_kv
            and self._settings is not None
            and settings.kv_compatible_with(self._settings)
        ):
            state = kvstate.save_state(self._llm)
        if state is None and request.keep_kv and self._stash is not None:
            stashed_settings, stashed = self._stash
            if settings.kv_compatible_with(stashed_settings):
                state = stashed
        if self._stash is not None and settings.model_path != self._stash[0].model_path:
            self._stash = None  # another model: that conversation's cache is of no use
        elif not request.keep_kv and self._stash is None and self._settings is not None:
            # A clean load (a sweep's level) of the same model: the conversation is kept aside
            # for the load after it, as a benchmark keeps it (a reply makes it stale).
            saved = kvstate.save_state(self._llm)
            if saved is not None and settings.model_path == self._settings.model_path:
                self._stash = (self._settings, saved)
        self._unload()

        started = time.perf_counter()
        error: str | None = None
        kind: ErrorKind = "bad_model"
        with self._sink.capture() as lines:
            try:
                reporter = progress_reporter(rid, self.send, self.is_cancelled)
                hook = progress_hook(reporter, overrides)
                with (
                    hook,
                    templates.tolerant_gguf_templates(),
                    openable_path(settings.model_path) as model_path,
                ):
                    self._llm = Llama(model_path, verbose=True, **llama_kwargs(settings))
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
            detail = (
                load_failure_line(lines, settings.n_ctx)
                or self._sink.last_error()
                or error
                or "llama.cpp refused the file"
            )
            self.send(
                ErrorEvent(rid, kind, f"cannot load {name}: {detail}", tuple(self._sink.tail)[-10:])
            )
            return
        missing = missing_internals(self._llm)
        if missing:
            self._unload()
            version = getattr(sys.modules.get("llama_cpp"), "__version__", "?")
            self.send(ErrorEvent(rid, "bad_request", unsupported_message(version, missing)))
            return
        self._settings = settings
        self._template = templates.choose_for_model(
            self._llm, settings.chat_format, info.architecture or ""
        )
        restored = kvstate.restore_state(self._llm, state) if state is not None else 0
        if restored:
            self._stash = None
        self.send(
            LoadedEvent(
                request_id=rid,
                settings=settings,
                n_layer=info.n_layer or 0,
                offloaded_layers=report.offloaded_layers,
                total_layers=report.total_layers or (info.n_layer or 0) + 1,
                buffers=report.buffers,
                devices=devices,
                chat_template_source=self._template.source,
                chat_template_warning=self._template.warning,
                load_seconds=time.perf_counter() - started,
                kv_restored_tokens=restored,
                n_ctx_train=int(info.context_length or 0),
                layers_by_device=report.layers_by_device,
            )
        )

    # ---- generation ----------------------------------------------------------------------

    def bench(self, request: BenchRequest) -> None:
        """One llama-bench-style measurement of the loaded model (see ``BenchRequest``)."""
        rid = request.request_id
        llm = self._llm
        if llm is None:
            self.send(ErrorEvent(rid, "not_loaded", "no model is loaded"))
            return
        problem = bench_problem(llm, request)
        if problem is not None:
            self.send(ErrorEvent(rid, "bad_request", problem))
            return
        if self._stash is None and self._settings is not None:
            saved = kvstate.save_state(llm)
            if saved is not None:
                self._stash = (self._settings, saved)
        self.send(bench_once(llm, request, lambda: self.is_cancelled(rid)))

    def _prompt_tokens(self, messages: tuple[ChatMessage, ...]) -> tuple[str, list[int]]:
        """The rendered prompt for ``messages`` and its tokens; raises ``TemplateError``."""
        llm = self._llm
        assert llm is not None and self._template is not None
        bos_text = special_text(llm, llm.token_bos())
        prompt = templates.render(
            self._template.template, messages, bos_text, special_text(llm, llm.token_eos())
        )
        add_bos = not (bos_text and prompt.startswith(bos_text))
        return prompt, list(llm.tokenize(prompt.encode(), add_bos=add_bos, special=True))

    def _n_ctx(self) -> int:
        """The tokens the context holds (prompt and reply together)."""
        return int(min(self._llm.n_ctx(), len(self._llm.input_ids)))

    def count(self, request: CountRequest) -> None:
        """Tokens of a prompt, rendered and tokenized as ``generate`` would (``CountRequest``)."""
        rid = request.request_id
        if self._llm is None or self._template is None:
            self.send(ErrorEvent(rid, "not_loaded", "no model is loaded"))
            return
        try:
            _prompt, tokens = self._prompt_tokens(request.messages)
        except templates.TemplateError as exc:
            self.send(ErrorEvent(rid, "bad_request", str(exc)))
            return
        self.send(CountEvent(rid, len(tokens), self._n_ctx()))

    def generate(self, request: GenerateRequest) -> None:
        rid = request.request_id
        self._stash = None  # the conversation moves on: a cache kept before a benchmark is stale
        llm = self._llm
        if llm is None or self._template is None:
            self.send(ErrorEvent(rid, "not_loaded", "no model is loaded"))
            return
        started = time.perf_counter()
        try:
            prompt, tokens = self._prompt_tokens(request.messages)
        except templates.TemplateError as exc:
            self.send(ErrorEvent(rid, "bad_request", str(exc)))
            return
        n_ctx = self._n_ctx()
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
        reply = ReplyStream(
            request,
            splitter_for(self._template.template, prompt),
            send=self.send,
            cancelled=lambda: self.is_cancelled(rid),
        )
        finish = reply.run(llm, tokens, n_ctx - len(tokens), self._template.stops)
        ended = time.perf_counter()
        if reply.first_at is None:
            # Stopped while the prompt was processed: what of it was decoded beyond the reused
            # part (llama-cpp-python's n_tokens, whole n_batch chunks).
            evaluated = max(0, min(evaluated, int(llm.n_tokens) - (len(tokens) - evaluated)))
        ttft = (reply.first_at or ended) - started
        gen_span = reply.last_at - (reply.first_at or reply.last_at)
        n_generated = reply.n_generated
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
            reasoning_tokens=reply.reasoning_tokens,
            time_to_first_answer_s=(
                reply.first_answer_at - started if reply.first_answer_at is not None else None
            ),
        )
        self.send(
            DoneEvent(
                rid,
                reply.answer,
                finish,  # type: ignore[arg-type]
                stats,
                int(llm.n_tokens),
                reasoning=reply.reasoning.strip(),
            )
        )


def _register_rpc_server(endpoint: str) -> tuple[ErrorKind, str] | None:
    """Register an RPC server with llama.cpp under a deadline: None, or what went wrong.

    llama.cpp's hello has no timeout: a server that accepts and never answers (one serving
    another client) would hold the engine for ever. The call runs on a thread of its own; past
    ``HELLO_TIMEOUT_S`` it is left behind, and the error's kind (``not_answering``) tells the
    client to replace this engine, whose thread may yet register the device.
    """
    from tui_llm.engine import native
    from tui_llm.engine.rpc_endpoint import HELLO_TIMEOUT_S

    outcome: list[BaseException | None] = []

    def register() -> None:
        try:
            native.add_rpc_server(endpoint)
        except RuntimeError as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=register, name=f"rpc-hello {endpoint}", daemon=True)
    thread.start()
    thread.join(HELLO_TIMEOUT_S)
    if not outcome:
        return (
            "not_answering",
            f"the RPC server at {endpoint} accepted the connection but did not answer in "
            f"{HELLO_TIMEOUT_S:g} s (is it serving another client?)",
        )
    error = outcome[0]
    return None if error is None else ("bad_request", _one_line(error))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    from tui_llm.engine import native

    native.die_with_parent()
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
    threading.Thread(target=worker.heartbeat, daemon=True).start()
    worker.run()
    proto_out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
