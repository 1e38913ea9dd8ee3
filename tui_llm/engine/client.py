"""The asyncio side of the engine: starts the child process and talks typed messages to it.

Nothing here imports llama.cpp; the UI and the CLI both drive the engine through this class, and
nothing in it blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tui_llm.engine.crash import exit_message, process_state, stall_message, stuck_message
from tui_llm.engine.logfiles import new_log_path, read_log_tail
from tui_llm.engine.protocol import (
    BenchEvent,
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
    ProgressEvent,
    ReadyEvent,
    Request,
    SamplingParams,
    ShutdownRequest,
    TokensEvent,
    UnloadedEvent,
    UnloadRequest,
    decode,
    encode,
)
from tui_llm.engine.rpc_endpoint import unreachable_reason

STALL_TIMEOUT_S = 5.0
"""Seconds without a word (heartbeats come every 0.25 s, even while llama.cpp computes) after
which the engine has stopped answering."""
STOP_WAIT_S = 1.0
"""The longest Esc and quitting wait for the engine before they go on without it."""
STOP_TIMEOUT_S = 10.0
"""The longest a reply that was stopped (Esc) may take to end in the engine. The engine checks
for a stop between tokens and, in a prompt, between the CPU backend's graph nodes
(``native.PrefillAbort``); a call that returns to neither (an RPC server that stopped answering
mid-computation) keeps the heartbeat going but never ends: past this, the engine counts as not
answering and F5 replaces it. Benchmarks have no such deadline: a measurement runs to its end
(llama-bench's prompt)."""
LOAD_STOP_TIMEOUT_S = 60.0
"""The same for a cancelled load, which sees its cancel only at llama.cpp's next progress report:
steps without one (a large KV cache kept aside, the KV cache allocated and cleared, one large
tensor over a slow link to an RPC server) take seconds to tens of seconds."""
START_TIMEOUT_S = 120.0
"""The longest a new engine may take to import llama.cpp and say it is ready."""


class EngineError(Exception):
    """A request failed; ``str()`` is one line for the user, ``kind`` says what went wrong."""

    def __init__(self, kind: ErrorKind, message: str, log_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.log_tail = log_tail


@dataclass
class _Pending:
    # What the engine is doing for this request, for a crash message ("loading x.gguf").
    activity: str
    queue: asyncio.Queue[Event | EngineError] = field(default_factory=asyncio.Queue)


class EngineClient:
    """One llama.cpp child process, driven with ``await``; restartable after a crash."""

    def __init__(
        self,
        python: str | None = None,
        log_path: Path | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        load_stop_timeout_s: float = LOAD_STOP_TIMEOUT_S,
    ) -> None:
        self._python = python or sys.executable
        self.stall_timeout_s = stall_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.load_stop_timeout_s = load_stop_timeout_s
        self._fixed_log_path = log_path
        self.log_path: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.ready: ReadyEvent | None = None
        self.loaded: LoadedEvent | None = None
        # True from the moment a load request is sent (the engine frees the old model first)
        # until it is answered: ``loaded`` is then the old model, no longer in memory.
        self.load_in_flight = False
        self.crash: EngineError | None = None
        self.on_crash: Callable[[EngineError], None] | None = None
        # The child went silent (no heartbeat for ``stall_timeout_s``): it is still there but
        # given up on; ``start`` and ``close`` kill it without asking.
        self.stalled = False
        # A request stopped early whose end the child has not confirmed yet (see ``generate``).
        self._draining: asyncio.Task[None] | None = None
        # The RPC servers of the last load sent: a crash or a hang may be theirs.
        self._rpc_servers: tuple[str, ...] = ()
        self._closing = False  # an exit asked for by ``close`` is not a crash

    # ---- process ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A child is there and answering (a stalled one does not count)."""
        return self._proc is not None and self._proc.returncode is None and not self.stalled

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> ReadyEvent:
        """Start the child and wait until llama.cpp is imported and has listed its devices."""
        if self.running and self.ready is not None:
            return self.ready
        if self._proc is not None and self._proc.returncode is None:
            await self.close()  # a stalled child, or one that never got ready: replaced at once
        self.crash = None
        self.stalled = False
        self._closing = False
        self.loaded = None
        self.log_path = self._fixed_log_path or new_log_path()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        src_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH", "")) if p)
        self._proc = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "tui_llm.engine.worker",
            str(self.log_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            limit=16 * 1024 * 1024,
            start_new_session=True,
        )
        pending = self._register(0, "starting")
        self._reader = asyncio.create_task(self._read_events(self._proc))
        try:
            event = await asyncio.wait_for(self._next(pending), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            await self.close()
            raise EngineError(
                "not_answering", f"the engine did not start within {START_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            self._pending.pop(0, None)
        assert isinstance(event, ReadyEvent)
        self.ready = event
        return event

    async def close(self) -> None:
        """Ask the child to exit (freeing all its memory), then make sure it has.

        Waits at most ``STOP_WAIT_S`` for a clean exit, then kills the child; a stalled child is
        killed at once. The exit of a process killed in the kernel (state D) is not awaited
        past another ``STOP_WAIT_S``: it dies with its parent (PR_SET_PDEATHSIG) anyway.
        """
        proc = self._proc
        if proc is None:
            return
        self._closing = True
        if self._draining is not None:
            # A stopped request of this engine: nothing of it is awaited any more.
            self._draining.cancel()
            self._draining = None
        if proc.returncode is None:
            if not self.stalled:
                with contextlib.suppress(Exception):
                    await self._send(ShutdownRequest())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._reader, STOP_WAIT_S)
        self._proc = None
        self.loaded = None
        self.ready = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the child (tests and a last resort)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    async def _read_events(self, proc: asyncio.subprocess.Process) -> None:
        """Route the child's events to the waiting requests until it exits or goes silent.

        From its first heartbeat on, a child that sends nothing for ``stall_timeout_s`` has
        stopped answering: every waiting request fails with ``not_answering``.
        """
        assert proc.stdout is not None
        heard_heartbeat = False
        while True:
            try:
                if heard_heartbeat:
                    line = await asyncio.wait_for(proc.stdout.readline(), self.stall_timeout_s)
                else:
                    line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            except asyncio.TimeoutError:
                if proc.returncode is None and self._proc is proc:
                    self._on_stall(proc)
                    return
                continue
            if not line:
                break
            try:
                event = decode(line)
            except ValueError:
                continue
            if isinstance(event, HeartbeatEvent):
                heard_heartbeat = True
                continue
            pending = self._pending.get(getattr(event, "request_id", 0))
            if pending is not None:
                pending.queue.put_nowait(event)  # type: ignore[arg-type]
        code = await proc.wait()
        if self._proc is proc:
            self._on_exit(code)

    def _on_exit(self, code: int) -> None:
        # Asked to exit, or done with every request (a stopped one's end may still be awaited).
        expected = self._closing or not self._pending
        doing = [p.activity for p in self._pending.values() if p.activity]
        message, tail = exit_message(
            code, self.log_tail(400), doing[0] if doing else None, self._rpc_servers
        )
        error = EngineError("crashed", message, tail)
        self.loaded = None
        self.ready = None
        if not self._closing and (not expected or code != 0):
            self.crash = error
        for pending in self._pending.values():
            pending.queue.put_nowait(error)
        if self.crash is not None and self.on_crash is not None:
            self.on_crash(error)

    def _on_stall(self, proc: asyncio.subprocess.Process) -> None:
        self._give_up(stall_message(self.stall_timeout_s, process_state(proc.pid)))

    def _on_stuck(self, activity: str, timeout_s: float) -> None:
        """A stopped request did not end within ``timeout_s``: the engine still heartbeats but
        is caught in a llama.cpp call that does not return."""
        self._give_up(stuck_message(activity, timeout_s, self._rpc_servers))

    def _give_up(self, message: str) -> None:
        """The child is still there but no longer answers: every waiting request fails with
        ``not_answering``; ``start`` and ``close`` kill it without asking."""
        error = EngineError("not_answering", message)
        self.stalled = True
        self.crash = error
        self.loaded = None
        self.ready = None
        for pending in self._pending.values():
            pending.queue.put_nowait(error)
        if self.on_crash is not None:
            self.on_crash(error)

    def log_tail(self, lines: int = 12) -> list[str]:
        """The last lines of this engine's llama.cpp log."""
        return read_log_tail(self.log_path, lines) if self.log_path is not None else []

    # ---- requests --------------------------------------------------------------------------

    def _register(self, request_id: int, activity: str) -> _Pending:
        pending = _Pending(activity)
        self._pending[request_id] = pending
        return pending

    async def _send(self, request: Request) -> None:
        proc = self._proc
        if self.stalled and self.crash is not None:
            raise self.crash  # given up on (silent, or stuck after a stop): F5 replaces it
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise self.crash or EngineError("crashed", "the engine is not running")
        try:
            proc.stdin.write(encode(request))
            # A live child reads its input on a thread of its own at once; a full pipe that
            # does not drain means a child that stopped.
            await asyncio.wait_for(proc.stdin.drain(), self.stall_timeout_s)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self.crash or EngineError("crashed", "the engine process is gone") from exc
        except asyncio.TimeoutError:
            raise self.crash or EngineError(
                "not_answering", "the engine stopped reading its requests"
            ) from None

    async def _settle(self) -> None:
        """Wait for a request stopped earlier to end in the child, so the next request starts
        clean. Bounded: it ends at the child's last event for it, when the child dies or stops
        answering, or after its stop deadline (the engine is then given up on, and the request
        fails at the send with the ``not_answering`` ``EngineError``)."""
        task = self._draining
        if task is not None:
            # Not cancelled with the caller, nor ending it when ``close`` cancels the drain.
            await asyncio.wait({task})
            if self._draining is task:
                self._draining = None

    def _drain_later(self, request_id: int, pending: _Pending, timeout_s: float) -> None:
        """A request was stopped: its end is awaited in the background (for at most
        ``timeout_s``), the caller goes on."""
        self._draining = asyncio.create_task(
            self._drain(request_id, pending, timeout_s, self._proc)
        )

    async def _drain(
        self,
        request_id: int,
        pending: _Pending,
        timeout_s: float,
        proc: asyncio.subprocess.Process | None,
    ) -> None:
        async def ended() -> None:
            while not isinstance(await self._next(pending), DoneEvent | LoadedEvent):
                pass

        def still_this_engine() -> bool:  # not replaced meanwhile (close, start)
            return self._proc is proc and self.running

        try:
            await asyncio.wait_for(ended(), timeout_s)
        except EngineError as exc:
            if exc.kind == "not_answering" and still_this_engine():
                # A load's RPC hello timed out: a thread of the engine still waits on the
                # server (see ``load``), so it is replaced before the next request.
                self._give_up(str(exc))
        except asyncio.TimeoutError:
            if still_this_engine():
                self._on_stuck(pending.activity, timeout_s)
        finally:
            self._pending.pop(request_id, None)

    @staticmethod
    async def _next(pending: _Pending) -> Event:
        item = await pending.queue.get()
        if isinstance(item, EngineError):
            raise item
        if isinstance(item, ErrorEvent):
            raise EngineError(item.kind, item.message, item.log_tail)
        return item

    async def load(
        self,
        settings: LoadSettings,
        on_progress: Callable[[float], None] | None = None,
        keep_kv: bool = True,
    ) -> LoadedEvent:
        """Load (or reload) a model; the old one's memory is released first.

        With ``keep_kv`` and settings that allow it, the conversation's KV cache is carried over.
        Cancelling the awaiting task cancels the load in llama.cpp. RPC servers are connected to
        first (llama.cpp aborts on one it cannot reach): ``bad_request`` "cannot reach the RPC
        server at HOST:PORT", the engine untouched. One that accepts and never answers gives
        ``not_answering``, and the engine, which may still be waiting on it, is replaced.
        """
        for endpoint in settings.rpc_servers:
            problem = await unreachable_reason(endpoint)
            if problem is not None:
                raise EngineError("bad_request", problem)
        if not self.running:
            await self.start()
        assert self.ready is not None
        registered = set(self.loaded.settings.rpc_servers) if self.loaded else set()
        if registered - set(settings.rpc_servers):
            # RPC devices cannot be unregistered from a process: start a fresh one.
            await self.close()
            await self.start()
        async with self._lock:
            await self._settle()
            rid = next(self._ids)
            pending = self._register(rid, f"loading {Path(settings.model_path).name}")
            draining = False
            try:
                self.load_in_flight = True
                self._rpc_servers = settings.rpc_servers
                await self._send(LoadRequest(rid, settings, keep_kv))
                while True:
                    event = await self._next(pending)
                    if isinstance(event, ProgressEvent):
                        if on_progress is not None:
                            on_progress(event.progress)
                    elif isinstance(event, LoadedEvent):
                        self.loaded = event
                        return event
            except asyncio.CancelledError:
                self.loaded = None
                if self.running:
                    with contextlib.suppress(EngineError):
                        await self._send(CancelRequest(rid))
                    # Its end is awaited in the background, under the stop deadline.
                    self._drain_later(rid, pending, self.load_stop_timeout_s)
                    draining = True
                raise
            except EngineError as exc:
                self.loaded = None
                if exc.kind == "not_answering" and self.running:
                    await self.close()  # a thread of it still waits on the RPC server
                raise
            finally:
                self.load_in_flight = False
                if not draining:
                    self._pending.pop(rid, None)

    async def unload(self) -> None:
        """Free the model while keeping the process."""
        async with self._lock:
            await self._settle()
            rid = next(self._ids)
            pending = self._register(rid, "unloading the model")
            try:
                await self._send(UnloadRequest(rid))
                while not isinstance(await self._next(pending), UnloadedEvent):
                    pass
                self.loaded = None
            finally:
                self._pending.pop(rid, None)

    async def devices(self) -> DevicesEvent:
        """The backend devices with their current free and total memory."""
        async with self._lock:
            await self._settle()
            rid = next(self._ids)
            pending = self._register(rid, "listing its devices")
            try:
                await self._send(DevicesRequest(rid))
                while True:
                    event = await self._next(pending)
                    if isinstance(event, DevicesEvent):
                        return event
            finally:
                self._pending.pop(rid, None)

    async def generate(
        self,
        messages: list[ChatMessage] | tuple[ChatMessage, ...],
        sampling: SamplingParams | None = None,
        batch_interval_s: float = 0.05,
    ) -> AsyncIterator[TokensEvent | DoneEvent]:
        """Stream a reply as token batches, ending with a ``DoneEvent``.

        Closing the iterator early (or cancelling the consuming task) stops generation in the
        child; the ``DoneEvent`` then says ``cancelled``.
        """
        async with self._lock:
            await self._settle()
            rid = next(self._ids)
            pending = self._register(rid, "writing a reply")
            finished = False
            try:
                await self._send(
                    GenerateRequest(
                        rid, tuple(messages), sampling or SamplingParams(), batch_interval_s
                    )
                )
                while True:
                    try:
                        event = await self._next(pending)
                    except EngineError:
                        finished = True  # the engine ended this request: nothing to drain
                        raise
                    if isinstance(event, TokensEvent):
                        yield event
                    elif isinstance(event, DoneEvent):
                        finished = True
                        yield event
                        return
            finally:
                if not finished and self.running:
                    with contextlib.suppress(EngineError):
                        await self._send(CancelRequest(rid))
                    # The child confirms in the background: the caller (Esc) does not wait,
                    # the next request does (``_settle``).
                    self._drain_later(rid, pending, self.stop_timeout_s)
                else:
                    self._pending.pop(rid, None)

    async def count_tokens(
        self, messages: list[ChatMessage] | tuple[ChatMessage, ...]
    ) -> CountEvent:
        """Tokens ``messages`` take as the loaded model's prompt, and its context size.

        Raises ``EngineError`` (``not_loaded``; ``bad_request`` when the template fails).
        """
        async with self._lock:
            await self._settle()
            rid = next(self._ids)
            pending = self._register(rid, "counting a prompt's tokens")
            try:
                await self._send(CountRequest(rid, tuple(messages)))
                while True:
                    event = await self._next(pending)
                    if isinstance(event, CountEvent):
                        return event
            finally:
                self._pending.pop(rid, None)

    async def bench(self, prompt_tokens: int, gen_tokens: int, seed: int = 0) -> BenchEvent:
        """One llama-bench-style measurement of the loaded model (``BenchRequest``). It clears
        the KV cache; the engine keeps the conversation's aside for the next ``load`` with
        ``keep_kv``. Cancelling stops it after the token at hand."""
        async with self._lock:
            await self._settle()
            rid = next(self._ids)
            pending = self._register(rid, "running a benchmark")
            try:
                await self._send(BenchRequest(rid, prompt_tokens, gen_tokens, seed))
                while True:
                    event = await self._next(pending)
                    if isinstance(event, BenchEvent):
                        return event
            except asyncio.CancelledError:
                with contextlib.suppress(EngineError):
                    await self._send(CancelRequest(rid))
                raise
            finally:
                self._pending.pop(rid, None)

    async def cancel_all(self) -> None:
        """Cancel whatever the child is doing (generation or load)."""
        for rid in list(self._pending):
            if rid:
                with contextlib.suppress(EngineError):
                    await self._send(CancelRequest(rid))

    async def chat(
        self,
        messages: list[ChatMessage] | tuple[ChatMessage, ...],
        sampling: SamplingParams | None = None,
    ) -> DoneEvent:
        """Generate a whole reply and return its ``DoneEvent``."""
        done: DoneEvent | None = None
        async for event in self.generate(messages, sampling):
            if isinstance(event, DoneEvent):
                done = event
        assert done is not None
        return done
