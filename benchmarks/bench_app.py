"""App benchmarks: what the Textual UI costs on top of llama.cpp, measured through the whole app.

Prints figures and ratios measured in one run; it is not a test and asserts nothing about time.
Run from the repository root; settings, models and logs go to a temporary folder (the
``TUI_LLM_*_DIR`` variables point there), never to the user's directories:

    .venv/bin/python -m benchmarks.bench_app [--quick]

1. generation tokens/s of a reply sent through the headless app (Pilot types the prompt and
   presses Enter; the figure is the one the reply shows) over ``Llama.generate`` in this process,
   same demo model, load settings, chat template and max tokens, interleaved, medians; a third
   arm drives the app's engine process with the UI idle, to split the cost between the two, and
   the CPU used by this process, the engine and every other process is read for each reply;
2. event-loop lateness of a probe that wakes every 5 ms, while a model loads (the offload panel's
   reload, and a model switch, each from the request until 0.3 s after the model is in, so the
   repaints that follow a load count) and while a reply streams at full speed;
3. launch to first paint of the real ``tui-llm demo`` command in a pseudo-terminal and in tmux,
   and for reference the in-process time from ``make_app`` to the first frame of ``run_test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import html
import json
import math
import os
import re
import select
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from textual.widgets import Static

from benchmarks.bench_engine import BLOCKING_STALL_S
from benchmarks.sections import markdown_table
from tui_llm import config as config_mod
from tui_llm import paths
from tui_llm.app import TuiLlmApp, make_app
from tui_llm.catalog.demo import ensure_demo_model
from tui_llm.catalog.discovery import iter_local_models
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import (
    ChatMessage,
    DoneEvent,
    LoadedEvent,
    SamplingParams,
    TokensEvent,
)
from tui_llm.gpu import MonitorThread, create_monitor
from tui_llm.messages import ApplyLoadSettings, LoadModelRequested
from tui_llm.screens.main import MainScreen
from tui_llm.widgets.message_view import MessageView
from tui_llm.widgets.prompt import PromptInput

REPO = Path(__file__).resolve().parents[1]
TUI_LLM = REPO / ".venv" / "bin" / "tui-llm"
SIZE = (160, 48)
PROBE_PERIOD_S = 0.005
SETTLE_S = 0.3  # a load's window stays open this long after the model is in (follow-up repaints)
STALL_REPORT_S = 0.016  # lateness above this is traced to the code the loop was running
PROMPT = "Tell me about the terminal and the quiet work it holds."
PAINT_MARKER = "GPU offload"  # the offload panel's border title: the main screen is on screen
QUIET_OTHERS = 0.25  # cores used by other processes below which a rep counts as quiet
LARGE_NAME = "random-16x512.gguf"  # a second model for switches; loads in a few tenths of a second
DIR_VARS = ("CONFIG", "DATA", "LOG", "STATE")
STARTUP = "startup: first frame, engine start, first load"
IDLE = "idle, model loaded"
STREAMING = "reply streaming at full speed"
RELOAD = "reload (offload panel: offload and n_ctx change)"
SWITCH = "switch model (picker path)"


@dataclass(frozen=True)
class Plan:
    """How much of each measurement one run does."""

    generation_reps: int
    stream_reps: int
    max_tokens: int
    reload_reps: int
    switch_reps: int
    idle_s: float
    launch_runs: int


FULL = Plan(
    generation_reps=9,
    stream_reps=6,
    max_tokens=600,
    reload_reps=20,
    switch_reps=10,
    idle_s=3.0,
    launch_runs=7,
)
# Only the streaming windows (and the idle reference): for comparing two commits' streaming
# lateness back to back (``--app-session ... --streaming-only``, as on the lent GPU machine).
STREAMING_ONLY = Plan(
    generation_reps=0,
    stream_reps=6,
    max_tokens=600,
    reload_reps=0,
    switch_reps=0,
    idle_s=1.0,
    launch_runs=0,
)
QUICK = Plan(
    generation_reps=2,
    stream_reps=2,
    max_tokens=200,
    reload_reps=2,
    switch_reps=1,
    idle_s=1.0,
    launch_runs=2,
)


def log(text: str) -> None:
    """Progress goes to stderr so stdout holds only the summary."""
    print(text, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(share * len(ordered))))
    return ordered[rank - 1]


# ---- the engine client the app is given, with a record of each reply --------------------------


@dataclass
class ReplyTrace:
    """One reply as the UI side saw it: what was sent, when batches and the end arrived."""

    messages: tuple[ChatMessage, ...]
    requested_at: float
    first_batch_at: float | None = None
    first_batch_tokens: int = 0
    batches: int = 0
    done_at: float | None = None
    done: DoneEvent | None = None


class RecordingEngine(EngineClient):
    """The real engine client; it also notes when the app consumes each event of a reply.

    The app pulls the next event only after it has written the previous batch to the screen, so
    ``done_at`` is when the UI had taken in the whole reply (before the final ``update()``).
    """

    def __init__(self, log_path: Path) -> None:
        # The raw arm blocks the app's loop for a whole reply (``BLOCKING_STALL_S``).
        super().__init__(log_path=log_path, stall_timeout_s=BLOCKING_STALL_S)
        self.replies: list[ReplyTrace] = []

    async def generate(
        self,
        messages: list[ChatMessage] | tuple[ChatMessage, ...],
        sampling: SamplingParams | None = None,
        batch_interval_s: float = 0.04,
    ) -> AsyncIterator[TokensEvent | DoneEvent]:
        trace = ReplyTrace(tuple(messages), time.perf_counter())
        self.replies.append(trace)
        async for event in super().generate(messages, sampling, batch_interval_s):
            now = time.perf_counter()
            if isinstance(event, TokensEvent):
                if trace.first_batch_at is None:
                    trace.first_batch_at = now
                    trace.first_batch_tokens = event.n_tokens
                trace.batches += 1
            else:
                trace.done_at = now
                trace.done = event
            yield event


# ---- event-loop lateness -------------------------------------------------------------------------


@dataclass
class Window:
    """One measured stretch of app activity and the probe's wakes during it.

    Each wake keeps its lateness, and its lateness less the time the loop thread spent off a CPU
    since the previous wake (waiting for a core, or for the GIL): the second is what the app's
    own code cost, the lateness it would have on a machine with a core to spare.
    """

    phase: str
    started: float
    ended: float = 0.0
    lateness_s: list[float] = field(default_factory=list)
    on_cpu_lateness_s: list[float] = field(default_factory=list)
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)  # (generation, seconds)


@dataclass
class Stall:
    """A wake more than ``STALL_REPORT_S`` late: how late it ended, and where the loop was.

    The watchdog takes a stack sample about every 2-5 ms while the wake is overdue (it needs the
    GIL, which the loop hands over every 5 ms while running Python, and not during a garbage
    collection), so the samples of one site are roughly its share of the stall.
    """

    phase: str
    lateness_s: float
    on_cpu_lateness_s: float = 0.0
    samples: Counter[str] = field(default_factory=Counter)  # site -> stack samples taken


class LatenessProbe:
    """An asyncio task in the app's loop that wakes every 5 ms and records how late it woke.

    It keeps a fixed schedule and skips missed ticks, as a Textual ``Timer`` does, so one long
    stall is one late sample. A watchdog thread notes what the event loop was running whenever a
    wake is more than ``STALL_REPORT_S`` overdue (``sys._current_frames``, CPython's documented
    way to see another thread's stack), so each long stall can be traced to code.
    """

    def __init__(self) -> None:
        self.window: Window | None = None
        self.stalls: dict[float, Stall] = {}
        self._task: asyncio.Task[None] | None = None
        self._due = 0.0
        self._loop_thread = threading.get_ident()
        self._watchdog_stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._previous = self._previous_cpu = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, stage: str, info: dict[str, int]) -> None:
        """Time each garbage collection of the loop thread while a window is open."""
        if threading.get_ident() != self._loop_thread or self.window is None:
            return
        if stage == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.window.gc_pauses.append(
                (info["generation"], time.perf_counter() - self._gc_started)
            )
            self._gc_started = 0.0

    def start(self, phase: str) -> Window:
        """Open a window; the first wake is due one period from now, however late the task."""
        assert self._task is None, "the probe is already running"
        window = Window(phase, time.perf_counter())
        self.window = window
        self._loop_thread = threading.get_ident()
        self._previous, self._previous_cpu = window.started, time.thread_time()
        self._due = window.started + PROBE_PERIOD_S
        self._task = asyncio.create_task(self._run(window))
        if not self._watchdog.is_alive():
            self._watchdog.start()
        return window

    async def stop(self) -> Window:
        """Close the window; a wake that is due but has not run yet counts as a late one."""
        assert self._task is not None and self.window is not None
        task, window = self._task, self.window
        now = time.perf_counter()
        if now > self._due:
            self._record(window, self._due, now)
        self._task = None
        self.window = None
        self._due = 0.0
        window.ended = now
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return window

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        self._watchdog_stop.set()
        if self._watchdog.is_alive():
            self._watchdog.join()

    def _record(self, window: Window, due: float, now: float) -> float:
        """Keep one wake's lateness, and its lateness less the loop thread's time off a CPU."""
        cpu = time.thread_time()
        off_cpu = max(0.0, (now - self._previous) - (cpu - self._previous_cpu))
        lateness = now - due
        on_cpu_lateness = max(0.0, lateness - off_cpu)
        window.lateness_s.append(lateness)
        window.on_cpu_lateness_s.append(on_cpu_lateness)
        stall = self.stalls.get(due)
        if stall is not None:
            stall.lateness_s = lateness
            stall.on_cpu_lateness_s = on_cpu_lateness
        self._previous, self._previous_cpu = now, cpu
        return lateness

    async def _run(self, window: Window) -> None:
        start = window.started
        count = 1
        while True:
            due = start + count * PROBE_PERIOD_S
            self._due = due
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            lateness = self._record(window, due, now)
            count += 1
            if lateness > PROBE_PERIOD_S:
                count = int((now - start) / PROBE_PERIOD_S) + 1

    def _watch(self) -> None:
        """Sample the loop thread's stack every 2 ms or so while a wake is overdue."""
        while not self._watchdog_stop.wait(0.002):
            window, due = self.window, self._due
            if window is None or not due:
                continue
            overdue = time.perf_counter() - due
            if overdue < STALL_REPORT_S:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stall = self.stalls.setdefault(due, Stall(window.phase, overdue))
            stall.samples[stall_site(frame)] += 1


_PLUMBING = frozenset(
    {
        "_run",
        "_run_once",
        "run_forever",
        "run_until_complete",
        "run",
        "invoke",
        "_invoke",
        "on_event",
        "_on_message",
        "_dispatch_message",
        "_process_messages",
        "_process_messages_loop",
        "_run_timer",
        "_tick",
        "_pre_process",
        "_flush_next_callbacks",
    }
)


def stall_site(frame: Any) -> str:
    """Where a stall is: the handler the loop was in, then the path into our code.

    The handler is the first frame past the event loop's and Textual's plumbing. The innermost
    frame is added when none of ours is on the stack, and when it shows that the loop was idle
    in ``select`` or collecting garbage.
    """
    stack = traceback.extract_stack(frame)
    loop_frames = [i for i, f in enumerate(stack) if f.filename.endswith("asyncio/events.py")]
    handlers = stack[loop_frames[-1] + 1 :] if loop_frames else []
    entry = next((f for f in handlers if f.name not in _PLUMBING), None)
    ours = [f for f in stack if "/tui_llm/" in f.filename]
    inner = stack[-1]
    special = inner.name in ("select", "_on_gc") or inner.filename.endswith("_weakrefset.py")
    chain: list[traceback.FrameSummary] = []
    # Our first frame in each of the first three files: the path from the handler into our code.
    path: list[traceback.FrameSummary] = []
    for ours_frame in ours:
        if all(ours_frame.filename != seen.filename for seen in path):
            path.append(ours_frame)
    candidates = (entry, *path[:3], inner if special or not ours else None)
    for candidate in candidates:
        if candidate is not None and all(candidate is not seen for seen in chain):
            chain.append(candidate)

    def where(entry: traceback.FrameSummary) -> str:
        short = "/".join(Path(entry.filename).parts[-2:])
        return f"{short} {entry.name}"

    return " > ".join(where(f) for f in chain)


# ---- CPU accounting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuUse:
    """CPU used over a stretch of wall time, in cores (1.0 = one core busy throughout)."""

    wall_s: float
    this_process: float
    engine: float
    others: float


class CpuMeter:
    """This process, the engine child and everything else on the machine, from /proc."""

    def __init__(self, engine_pid: int | None) -> None:
        self._engine = psutil.Process(engine_pid) if engine_pid else None
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float, float]:
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        engine = sum(self._engine.cpu_times()[:2]) if self._engine is not None else 0.0
        return time.perf_counter(), busy, sum(os.times()[:2]), engine

    def stop(self) -> CpuUse:
        end = self._snapshot()
        wall, busy, ours, engine = (b - a for a, b in zip(self._start, end, strict=True))
        wall = max(wall, 1e-9)
        return CpuUse(wall, ours / wall, engine / wall, max(0.0, busy - ours - engine) / wall)


# ---- driving the app --------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 2 ms (short sleeps keep the loop free) until it holds."""
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def last_reply(screen: MainScreen) -> MessageView | None:
    views = [v for v in screen.query(MessageView) if v.role == "assistant"]
    return views[-1] if views else None


def shown_stats(view: MessageView | None) -> str:
    if view is None:
        return ""
    return str(view.query_one(".stats", Static).content)


@dataclass(frozen=True)
class AppReply:
    """One reply through the app: the figures it shows and what the UI side timed."""

    shown_tokens_per_s: float
    engine_tokens_per_s: float
    ui_tokens_per_s: float
    enter_to_shown_s: float
    n_tokens: int
    batches: int
    text: str
    messages: tuple[ChatMessage, ...]
    cpu: CpuUse


async def send_through_app(
    app: TuiLlmApp, pilot: Any, probe: LatenessProbe | None = None
) -> tuple[AppReply, Window | None]:
    """New chat, type the prompt, Enter; wait until the reply shows its figures."""
    screen = app.main_screen
    engine = app.engine
    assert isinstance(engine, RecordingEngine)
    await pilot.press("ctrl+n")
    await wait_until(lambda: not screen.query(MessageView), 10, "the new chat")
    prompt = screen.query_one(PromptInput)
    if not prompt.has_focus:
        # After the first load the focus is elsewhere (see the notes); a user clicks the box.
        await pilot.click(PromptInput)
    await pilot.press(*PROMPT)
    replies_before = len(engine.replies)
    meter = CpuMeter(engine.pid)
    if probe is not None:
        probe.start(STREAMING)
    entered = time.perf_counter()
    await pilot.press("enter")
    await wait_until(
        lambda: (
            len(engine.replies) > replies_before
            and not screen.generating
            and "tok/s" in shown_stats(last_reply(screen))
        ),
        120,
        "the reply",
    )
    shown_at = time.perf_counter()
    window = await probe.stop() if probe is not None else None
    cpu = meter.stop()
    trace = engine.replies[-1]
    assert trace.done is not None and trace.done_at is not None
    text = shown_stats(last_reply(screen))
    match = re.search(r"([\d.]+) tok/s", text)
    stats = trace.done.stats
    ui_rate = 0.0
    if trace.first_batch_at is not None and trace.done_at > trace.first_batch_at:
        ui_rate = (stats.generated_tokens - trace.first_batch_tokens) / (
            trace.done_at - trace.first_batch_at
        )
    reply = AppReply(
        shown_tokens_per_s=float(match.group(1)) if match else 0.0,
        engine_tokens_per_s=stats.generation_tokens_per_s,
        ui_tokens_per_s=ui_rate,
        enter_to_shown_s=shown_at - entered,
        n_tokens=stats.generated_tokens,
        batches=trace.batches,
        text=trace.done.text,
        messages=trace.messages,
        cpu=cpu,
    )
    return reply, window


async def reload_through_app(
    app: TuiLlmApp, probe: LatenessProbe, phase: str, post: Callable[[MainScreen], None]
) -> tuple[Window, LoadedEvent, float]:
    """Post a load request to the main screen and probe the loop until the screen has settled.

    The window stays open ``SETTLE_S`` after the new model is in, so the repaints that follow a
    load (the banner, the estimate of the panel) are measured too. Returns the window, the
    loaded event and the seconds from the request to the model being in.
    """
    screen = app.main_screen
    before = screen.loaded
    window = probe.start(phase)
    post(screen)
    await wait_until(
        lambda: (
            screen.loaded is not None and screen.loaded is not before and not screen.model_loading
        ),
        120,
        phase,
    )
    loaded_s = time.perf_counter() - window.started
    await asyncio.sleep(SETTLE_S)
    await probe.stop()
    assert screen.loaded is not None
    return window, screen.loaded, loaded_s


# ---- the in-process session -----------------------------------------------------------------


@dataclass
class Report:
    """Result rows for the summary, one markdown table per section, plus loose notes."""

    sections: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, *cells: str) -> None:
        self.sections.setdefault(section, []).append(cells)

    def merge(self, other: Report) -> None:
        for section, rows in other.sections.items():
            self.sections.setdefault(section, []).extend(rows)
        self.notes.extend(other.notes)


def lateness_row(label: str, windows: Sequence[Window]) -> tuple[str, ...]:
    samples = [s for w in windows for s in w.lateness_s]
    on_cpu = [s for w in windows for s in w.on_cpu_lateness_s]
    span = sum(w.ended - w.started for w in windows)
    if not samples:
        return (label, "0", f"{span:.1f}", "-", "-", "-", "-", "-", "-", "-")
    pauses = [p for w in windows for p in w.gc_pauses]
    longest = max(pauses, key=lambda p: p[1], default=None)
    gc_cell = "-"
    if longest is not None:
        gc_cell = f"{len(pauses)}, longest {longest[1] * 1000:.1f} (gen {longest[0]})"
    return (
        label,
        str(len(samples)),
        f"{span:.1f}",
        f"{percentile(samples, 0.5) * 1000:.2f}",
        f"{percentile(samples, 0.99) * 1000:.1f}",
        f"{max(samples) * 1000:.1f}",
        str(sum(1 for s in samples if s > STALL_REPORT_S)),
        f"{percentile(on_cpu, 0.99) * 1000:.1f}",
        f"{max(on_cpu) * 1000:.1f}",
        gc_cell,
    )


def build_app(folder: Path, demo: Path) -> TuiLlmApp:
    """The app as ``run_app`` builds it (real engine, monitor and scan), in the temp folders."""
    settings = config_mod.Settings()
    dirs = config_mod.model_dirs(settings)
    dirs.append(demo.parent)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    return make_app(
        settings,
        RecordingEngine(log_path=folder / f"engine-{os.getpid()}.log"),
        MonitorThread(create_monitor(), interval_s=1.0),
        scanner=lambda: iter_local_models(dirs, home=home, env={}),
        initial_model=demo,
        save_settings=True,
        sample_interval_s=1.0,
    )


async def bench_tokens(plan: Plan, folder: Path, demo: Path, report: Report) -> None:
    """Part 1, in this process: the app, its engine alone, and llama-cpp-python beside it."""
    app = build_app(folder, demo)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.main_screen
        await wait_until(
            lambda: screen.loaded is not None and not screen.model_loading, 120, "load"
        )
        app.sampling = SamplingParams(temperature=0.0, max_tokens=plan.max_tokens, seed=1)
        await bench_generation(app, pilot, plan, report)


async def bench_app_session(plan: Plan, folder: Path, demo: Path, large: Path) -> Report:
    """Parts 2 and 3 (in-process), in a process that imports what ``tui-llm`` imports only.

    No llama-cpp-python, numpy or baseline here: their objects would lengthen every garbage
    collection of the loop, and the baseline's would be collected in the app's windows.
    """
    report = Report()
    probe = LatenessProbe()
    windows: dict[str, list[Window]] = {}

    def keep(window: Window) -> None:
        windows.setdefault(window.phase, []).append(window)

    made = time.perf_counter()
    app = build_app(folder, demo)
    probe.start(STARTUP)
    try:
        async with app.run_test(size=SIZE) as pilot:
            first_frame_s = time.perf_counter() - made
            svg_text = html.unescape(app.export_screenshot()).replace("\xa0", " ")
            shown = PAINT_MARKER in svg_text
            screen = app.main_screen
            await wait_until(
                lambda: screen.loaded is not None and not screen.model_loading, 120, "load"
            )
            keep(await probe.stop())
            report.add(
                "paint",
                "in-process: make_app() to run_test() ready (Pilot waited for the first frame)",
                f"{first_frame_s * 1000:.0f}",
                "1",
                "-",
                "yes" if shown else "no (marker missing!)",
            )
            focused_at_load = type(app.focused).__name__

            probe.start(IDLE)
            await asyncio.sleep(plan.idle_s)
            keep(await probe.stop())
            focused = app.focused
            verdict = (
                "the prompt, as expected"
                if isinstance(focused, PromptInput)
                else "NOT the prompt: keys typed do not reach it"
            )
            report.notes.append(
                f"focus when the first model was in: {focused_at_load}; {plan.idle_s:.0f} s later: "
                f"{type(focused).__name__} ({verdict})"
            )

            log("2b. event loop while replies stream")
            app.sampling = SamplingParams(temperature=0.0, max_tokens=plan.max_tokens, seed=1)
            for rep in range(plan.stream_reps):
                reply, window = await send_through_app(app, pilot, probe)
                assert window is not None
                keep(window)
                log(
                    f"  reply {rep + 1}: {reply.shown_tokens_per_s:.1f} tok/s, worst lateness "
                    f"{max(window.lateness_s) * 1000:.1f} ms"
                )

            if plan.reload_reps or plan.switch_reps:
                log("2a. event loop while models load")
                await bench_loads(app, probe, plan, report, keep, demo, large)
    finally:
        if probe.window is not None:
            await probe.stop()
        probe.close()

    report.add("stall", *lateness_row(f"{IDLE} (reference)", windows[IDLE]))
    for phase in (RELOAD, SWITCH):
        report.add("stall", *lateness_row(f"(a) {phase}", windows.get(phase, [])))
    report.add("stall", *lateness_row(f"(b) {STREAMING}", windows[STREAMING]))
    report.add("stall", *lateness_row(f"{STARTUP} (reference)", windows[STARTUP]))
    summarize_stalls(probe, report)
    heavy = [name for name in ("llama_cpp", "numpy", "gguf") if name in sys.modules]
    report.notes.append(
        "the stall session's process had imported "
        + (", ".join(heavy) if heavy else "neither llama_cpp nor numpy, like `tui-llm` itself")
    )
    return report


async def engine_direct(
    engine: EngineClient, messages: Sequence[ChatMessage], sampling: SamplingParams
) -> DoneEvent:
    """One reply from the app's own engine process, driven with no UI while the app idles."""
    done: DoneEvent | None = None
    async for event in engine.generate(list(messages), sampling):
        if isinstance(event, DoneEvent):
            done = event
    assert done is not None
    return done


@dataclass
class Arms:
    """The replies of the three arms, in rep order, with the CPU each used."""

    app: list[AppReply] = field(default_factory=list)
    engine: list[DoneEvent] = field(default_factory=list)
    engine_cpu: list[CpuUse] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)  # bench_engine.Generation
    raw_cpu: list[CpuUse] = field(default_factory=list)


async def bench_generation(app: TuiLlmApp, pilot: Any, plan: Plan, report: Report) -> None:
    """Three arms in rotation: the app, its engine without the UI, and llama-cpp-python here.

    The baseline reuses the engine benchmark's raw path: ``Llama()`` with the engine's model
    params (repacked weights off on AMX CPUs), the GGUF chat template, the engine's clock.
    """
    from benchmarks.bench_engine import engine_model_params, raw_generate, raw_load

    screen = app.main_screen
    assert screen.loaded is not None
    load_settings = screen.loaded.settings
    sampling = app.sampling
    arms = Arms()
    order = ("app", "engine", "raw")
    with engine_model_params() as repack:
        llm = raw_load(load_settings)
        try:
            # One untimed reply each: pages touched, caches warm.
            warm, _ = await send_through_app(app, pilot)
            messages = warm.messages
            await engine_direct(app.engine, messages, sampling)
            llm.set_seed(sampling.seed)
            raw_generate(llm, messages, sampling)
            gc.collect()
            for rep in range(plan.generation_reps):
                # Rotate the order so that drift on a shared machine hits every arm alike.
                for which in order[rep % 3 :] + order[: rep % 3]:
                    if which == "app":
                        arms.app.append((await send_through_app(app, pilot))[0])
                    elif which == "engine":
                        meter = CpuMeter(app.engine.pid)
                        arms.engine.append(await engine_direct(app.engine, messages, sampling))
                        arms.engine_cpu.append(meter.stop())
                    else:
                        # Blocks the app's loop while the app is idle.
                        llm.set_seed(sampling.seed)
                        meter = CpuMeter(app.engine.pid)
                        arms.raw.append(raw_generate(llm, messages, sampling))
                        arms.raw_cpu.append(meter.stop())
                        # The baseline's garbage (llama.cpp samplers) is not the app's: collect
                        # it now rather than during the app's next reply.
                        gc.collect()
                last = arms.app[-1]
                log(
                    f"  rep {rep + 1}: raw {arms.raw[-1].tokens_per_s:.1f} tok/s, engine alone "
                    f"{arms.engine[-1].stats.generation_tokens_per_s:.1f}, app shows "
                    f"{last.shown_tokens_per_s:.1f} (UI side {last.ui_tokens_per_s:.1f}, "
                    f"{last.batches} batches; cores: UI {last.cpu.this_process:.2f}, engine "
                    f"{last.cpu.engine:.2f}, other processes {last.cpu.others:.2f})"
                )
        finally:
            llm.close()
            del llm
            gc.collect()
    report_generation(arms, plan, report, describe_load(load_settings), repack)


def report_generation(
    arms: Arms, plan: Plan, report: Report, load_description: str, repack: bool
) -> None:
    app_runs, engine_runs, raw_runs = arms.app, arms.engine, arms.raw
    engine_cpu, raw_cpu = arms.engine_cpu, arms.raw_cpu
    raw_rate = median([r.tokens_per_s for r in raw_runs])
    alone_rate = median([e.stats.generation_tokens_per_s for e in engine_runs])
    shown_rate = median([r.shown_tokens_per_s for r in app_runs])
    engine_rate = median([r.engine_tokens_per_s for r in app_runs])
    ui_rate = median([r.ui_tokens_per_s for r in app_runs])
    pair = [a.shown_tokens_per_s / r.tokens_per_s for a, r in zip(app_runs, raw_runs, strict=True)]
    pair_engine = [
        a.shown_tokens_per_s / e.stats.generation_tokens_per_s
        for a, e in zip(app_runs, engine_runs, strict=True)
    ]
    raw_reply = median([r.reply_s for r in raw_runs])
    app_reply = median([r.enter_to_shown_s for r in app_runs])
    counts = sorted(
        {r.n_tokens for r in raw_runs}
        | {a.n_tokens for a in app_runs}
        | {e.stats.generated_tokens for e in engine_runs}
    )
    texts = {r.text for r in raw_runs} | {a.text for a in app_runs} | {e.text for e in engine_runs}
    same_text = len(texts) == 1
    report.add(
        "generation",
        "app (reply figure shown) / raw llama-cpp-python",
        f"{raw_rate:.1f}",
        f"{shown_rate:.1f}",
        f"{shown_rate / raw_rate:.3f} (target >= 0.95)",
        f"{min(pair):.3f}-{max(pair):.3f}",
    )
    quiet = [
        i
        for i in range(len(app_runs))
        if max(app_runs[i].cpu.others, raw_cpu[i].others) < QUIET_OTHERS
    ]
    if quiet:
        quiet_pair = [pair[i] for i in quiet]
        quiet_raw = median([raw_runs[i].tokens_per_s for i in quiet])
        quiet_app = median([app_runs[i].shown_tokens_per_s for i in quiet])
        report.add(
            "generation",
            f"app / raw, only reps where other processes used < {QUIET_OTHERS} cores "
            f"({len(quiet)} of {len(pair)})",
            f"{quiet_raw:.1f}",
            f"{quiet_app:.1f}",
            f"{quiet_app / quiet_raw:.3f}",
            f"{min(quiet_pair):.3f}-{max(quiet_pair):.3f}",
        )
    else:
        report.add(
            "generation",
            f"app / raw, reps where other processes used < {QUIET_OTHERS} cores",
            "-",
            "-",
            "none: the machine was never that quiet",
            "-",
        )
    for i, (app_run, engine_run, raw_run) in enumerate(
        zip(app_runs, engine_runs, raw_runs, strict=True)
    ):
        report.add(
            "reps",
            str(i + 1),
            f"{raw_run.tokens_per_s:.1f} ({raw_cpu[i].others:.2f})",
            f"{engine_run.stats.generation_tokens_per_s:.1f} ({engine_cpu[i].others:.2f})",
            f"{app_run.shown_tokens_per_s:.1f} ({app_run.cpu.others:.2f})",
            f"{app_run.cpu.this_process:.2f}",
            f"{pair[i]:.3f}",
        )
    report.add(
        "generation",
        "engine process alone (same child, UI idle) / raw: the engine's share",
        f"{raw_rate:.1f}",
        f"{alone_rate:.1f}",
        f"{alone_rate / raw_rate:.3f}",
        "-",
    )
    report.add(
        "generation",
        "app / engine process alone: the UI's share",
        f"{alone_rate:.1f} (engine alone)",
        f"{shown_rate:.1f}",
        f"{shown_rate / alone_rate:.3f}",
        f"{min(pair_engine):.3f}-{max(pair_engine):.3f}",
    )
    report.add(
        "generation",
        "app, rate at which the UI took in the batches / raw",
        f"{raw_rate:.1f}",
        f"{ui_rate:.1f}",
        f"{ui_rate / raw_rate:.3f}",
        "-",
    )
    report.add(
        "generation",
        "whole reply, ms: Enter to figures shown (app) vs prompt to last token (raw)",
        f"{raw_reply * 1000:.0f}",
        f"{app_reply * 1000:.0f}",
        f"{raw_reply / app_reply:.3f} (raw / app time)",
        "-",
    )
    report.notes.append(
        f"generation: load settings as the app loaded them ({load_description}), "
        f"use_extra_bufts={repack} for raw and app alike; sampling temperature 0, seed 1, "
        f"max_tokens {plan.max_tokens}; tokens per reply {'/'.join(map(str, counts))}, "
        f"{'identical texts' if same_text else 'TEXTS DIFFER between raw and app'}; engine's own "
        f"rate inside the app {engine_rate:.1f} tok/s; {plan.generation_reps} interleaved reps"
    )
    app_cpu = [a.cpu for a in app_runs]
    per_token = {
        "app": [a.cpu.engine * a.cpu.wall_s / a.n_tokens for a in app_runs],
        "engine": [
            c.engine * c.wall_s / e.stats.generated_tokens
            for c, e in zip(engine_cpu, engine_runs, strict=True)
        ],
    }
    for label, rate, uses, engine_ms in (
        ("app (Enter to figures shown)", shown_rate, app_cpu, per_token["app"]),
        ("engine process alone", alone_rate, engine_cpu, per_token["engine"]),
        ("raw llama-cpp-python", raw_rate, raw_cpu, []),
    ):
        report.add(
            "cpu",
            label,
            f"{rate:.1f}",
            f"{median([u.this_process for u in uses]):.2f}",
            f"{median([u.engine for u in uses]):.2f}",
            f"{median([u.others for u in uses]):.2f}",
            f"{median(engine_ms) * 1000:.2f}" if engine_ms else "-",
        )


def describe_load(settings: Any) -> str:
    threads = "default" if settings.n_threads is None else str(settings.n_threads)
    return (
        f"n_ctx {settings.n_ctx}, n_threads {threads}, n_batch {settings.n_batch}, offload "
        f"{settings.offload_layers}, KV {settings.kv_cache_type}, flash_attn {settings.flash_attn}"
    )


async def bench_loads(
    app: TuiLlmApp,
    probe: LatenessProbe,
    plan: Plan,
    report: Report,
    keep: Callable[[Window], None],
    demo: Path,
    large: Path,
) -> None:
    screen = app.main_screen
    assert screen.loaded is not None
    base = screen.loaded.settings
    other_ctx = 2048 if base.n_ctx != 2048 else 4096
    variants = [("all", other_ctx), (base.offload_layers, base.n_ctx)]
    load_times: dict[str, list[float]] = {}
    for rep in range(plan.reload_reps):
        offload, n_ctx = variants[rep % 2]
        phase = RELOAD

        def post(target: MainScreen, offload: Any = offload, n_ctx: int = n_ctx) -> None:
            target.post_message(
                ApplyLoadSettings(offload, n_ctx, base.flash_attn, base.kv_cache_type)
            )

        window, loaded, loaded_s = await reload_through_app(app, probe, phase, post)
        keep(window)
        load_times.setdefault("reload", []).append(loaded_s)
        log(
            f"  reload to offload {offload}, n_ctx {n_ctx}: {loaded_s:.2f} s "
            f"(llama.cpp {loaded.load_seconds:.2f} s), worst lateness "
            f"{max(window.lateness_s, default=0) * 1000:.1f} ms"
        )
    for _ in range(plan.switch_reps):
        for target in (large, demo):
            phase = SWITCH

            def post_switch(screen_: MainScreen, path: Path = target) -> None:
                screen_.post_message(LoadModelRequested(path))

            window, loaded, loaded_s = await reload_through_app(app, probe, phase, post_switch)
            keep(window)
            load_times.setdefault(target.name, []).append(loaded_s)
            log(
                f"  switch to {target.name}: {loaded_s:.2f} s "
                f"(llama.cpp {loaded.load_seconds:.2f} s), worst lateness "
                f"{max(window.lateness_s, default=0) * 1000:.1f} ms"
            )
    report.notes.append(
        "loads: request to model in, median s: "
        + ", ".join(f"{name} {median(times):.2f}" for name, times in load_times.items())
    )


def summarize_stalls(probe: LatenessProbe, report: Report) -> None:
    """Where the loop was during the wakes later than ``STALL_REPORT_S``, by phase.

    Sites are ranked by stack samples (roughly, milliseconds of stall spent there).
    """
    phases: dict[str, list[Stall]] = {}
    for stall in probe.stalls.values():
        phases.setdefault(stall.phase, []).append(stall)
    for phase, stalls in phases.items():
        samples: Counter[str] = Counter()
        worst: dict[str, float] = {}
        seen_in: Counter[str] = Counter()
        for stall in stalls:
            samples.update(stall.samples)
            for site in stall.samples:
                seen_in[site] += 1
                worst[site] = max(worst.get(site, 0.0), stall.lateness_s)
        total = sum(samples.values()) or 1
        for site, count in samples.most_common(5):
            where = f"`{site}`"
            if site.endswith(" select"):
                where += " (between callbacks: the stall was off-CPU time or a collection)"
            elif site.endswith(" _on_gc") or "_weakrefset.py" in site:
                where += " (garbage collection; samples land as it ends)"
            report.add(
                "stall sites",
                phase,
                where,
                f"{count * 100 // total}%",
                str(seen_in[site]),
                f"{worst[site] * 1000:.0f}",
            )


# ---- launch to first paint ------------------------------------------------------------------

_ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def screen_text(raw: bytes) -> str:
    """The printable text of terminal output, escape sequences removed."""
    return _ESCAPES.sub(b"", raw).decode("utf-8", errors="replace")


def engine_leftovers(folder: Path) -> list[int]:
    """Engine processes whose log file lies in ``folder`` (only this benchmark starts those)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tui_llm.engine.worker" in cmdline and any(str(folder).encode() in c for c in cmdline):
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Launch:
    first_output_s: float
    first_paint_s: float
    quit_s: float


def launch_in_pty(env: dict[str, str], timeout_s: float = 30.0) -> Launch:
    """Start ``tui-llm demo`` on a 160x48 pseudo-terminal; time its first frame, then Ctrl+Q."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(TUI_LLM), "demo"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    first_output = first_paint = 0.0
    try:
        while not first_paint:
            remaining = started + timeout_s - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no frame with {PAINT_MARKER!r}: {screen_text(output)[-300:]}")
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(master, 1 << 16)
            now = time.perf_counter()
            if not first_output:
                first_output = now
            output += chunk
            if PAINT_MARKER in screen_text(output):
                first_paint = now
        quit_at = time.perf_counter()
        os.write(master, b"\x11")  # Ctrl+Q, Textual's quit
        while proc.poll() is None and time.perf_counter() - quit_at < 15:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    os.read(master, 1 << 16)
        quit_s = time.perf_counter() - quit_at
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return Launch(first_output - started, first_paint - started, quit_s)


class Tmux:
    """A private tmux server (its own socket), so the user's sessions are never touched."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"tui-llm-bench-{os.getpid()}"
        self.socket_path = ""
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=check,
        )

    def __enter__(self) -> Tmux:
        # The server starts with an idle session, so launches below do not pay for its start.
        self("new-session", "-d", "-s", "keep", "-x", str(SIZE[0]), "-y", str(SIZE[1]))
        self.socket_path = self("display-message", "-p", "#{socket_path}").stdout.strip()
        return self

    def __exit__(self, *exc: object) -> None:
        self("kill-server", check=False)
        if self.socket_path:  # tmux leaves the socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


def launch_in_tmux(tmux: Tmux, run: int, timeout_s: float = 30.0) -> Launch:
    """``tmux new-session -d -x 160 -y 48 'tui-llm demo'``; poll the pane until the frame shows."""
    name = f"launch{run}"
    env_flags = [
        f"-e{key}={value}"
        for key, value in tmux.env.items()
        if key.startswith("TUI_LLM_") or key in ("HOME", "TERM", "COLORTERM")
    ]
    command = shlex.join([str(TUI_LLM), "demo"])
    started = time.perf_counter()
    tmux(
        "new-session", "-d", "-s", name, "-x", str(SIZE[0]), "-y", str(SIZE[1]),
        "-c", str(REPO), *env_flags, command,
    )  # fmt: skip
    first_paint = 0.0
    try:
        while not first_paint:
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"no frame with {PAINT_MARKER!r} in tmux")
            pane = tmux("capture-pane", "-p", "-t", name, check=False).stdout
            if PAINT_MARKER in pane:
                first_paint = time.perf_counter()
            else:
                time.sleep(0.005)
        quit_at = time.perf_counter()
        tmux("send-keys", "-t", name, "C-q")
        while tmux("has-session", "-t", name, check=False).returncode == 0:
            if time.perf_counter() - quit_at > 15:
                break
            time.sleep(0.02)
        quit_s = time.perf_counter() - quit_at
    finally:
        tmux("kill-session", "-t", name, check=False)
    return Launch(0.0, first_paint - started, quit_s)


IMPORT_STEPS = (
    ("Python starts (`python -c pass`)", "pass"),
    ("+ `import textual.app`", "import textual.app"),
    (
        "+ the app's modules (`tui_llm.cli`, `.app`, `.catalog.discovery`, `.gpu`)",
        "import tui_llm.cli, tui_llm.app, tui_llm.catalog.discovery, tui_llm.gpu",
    ),
)
LLAMA_CHECK = "import sys; print(','.join(m for m in ('llama_cpp', 'numpy') if m in sys.modules))"


def bench_imports(runs: int, env: dict[str, str], report: Report) -> None:
    """Where launch time goes before the first frame: interpreter start and imports."""
    for label, code in IMPORT_STEPS:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True)
            times.append((time.perf_counter() - started) * 1000)
        report.add(
            "paint",
            label,
            f"{median(times):.0f}",
            str(runs),
            f"{min(times):.0f}-{max(times):.0f}",
            "-",
        )
    loaded = subprocess.run(
        [sys.executable, "-c", f"{IMPORT_STEPS[-1][1]}; {LLAMA_CHECK}"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    report.notes.append(
        "heavy modules imported by the app's modules before the first frame: "
        + (loaded or "neither llama_cpp nor numpy")
    )


def bench_launch(plan: Plan, folder: Path, report: Report) -> None:
    env = dict(os.environ)
    # An empty home: the app's scan of Hugging Face, LM Studio and Ollama folders finds nothing
    # of the user's (the TUI_LLM_*_DIR variables already keep its own files in the temp folder).
    home = folder / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    for variable in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "OLLAMA_MODELS"):
        env.pop(variable, None)
    env["TERM"] = "xterm-256color"
    env["COLORTERM"] = "truecolor"
    env.pop("TEXTUAL", None)
    cold_env = dict(env)
    cold_data = folder / "cold-data"
    cold_env["TUI_LLM_DATA_DIR"] = str(cold_data)
    log("3. launch to first paint")
    cold = launch_in_pty(cold_env)
    log(f"  pty, fresh data dir (demo model written first): {cold.first_paint_s * 1000:.0f} ms")
    ensure_demo_model()
    launch_in_pty(env)  # untimed: file cache warm, as for a user's second launch
    pty_runs: list[Launch] = []
    tmux_runs: list[Launch] = []
    with Tmux(env) as tmux:
        for run in range(plan.launch_runs):
            pty_runs.append(launch_in_pty(env))
            tmux_runs.append(launch_in_tmux(tmux, run))
            log(
                f"  run {run + 1}: pty {pty_runs[-1].first_paint_s * 1000:.0f} ms "
                f"(first byte {pty_runs[-1].first_output_s * 1000:.0f} ms), "
                f"tmux {tmux_runs[-1].first_paint_s * 1000:.0f} ms"
            )
    leftovers = engine_leftovers(folder)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)

    def cells(runs: Sequence[Launch]) -> tuple[str, str]:
        values = [r.first_paint_s * 1000 for r in runs]
        return f"{median(values):.0f}", f"{min(values):.0f}-{max(values):.0f}"

    pty_median, pty_range = cells(pty_runs)
    tmux_median, tmux_range = cells(tmux_runs)
    report.add(
        "paint",
        "`tui-llm demo` in a pty (160x48), process start to the first frame with the marker",
        f"{pty_median} (target <= 1000)",
        str(len(pty_runs)),
        pty_range,
        "yes",
    )
    report.add(
        "paint",
        "`tui-llm demo` in tmux (new-session -x 160 -y 48), polled with capture-pane",
        f"{tmux_median} (target <= 1000)",
        str(len(tmux_runs)),
        tmux_range,
        "yes",
    )
    report.add(
        "paint",
        "`tui-llm demo` in a pty, first launch: the demo model is written before the app starts",
        f"{cold.first_paint_s * 1000:.0f}",
        "1",
        "-",
        "yes",
    )
    bench_imports(plan.launch_runs, env, report)
    report.notes.append(
        f"launch: first byte of output in the pty after a median "
        f"{median([r.first_output_s for r in pty_runs]) * 1000:.0f} ms; Ctrl+Q to exit took a "
        f"median {median([r.quit_s for r in pty_runs]) * 1000:.0f} ms; engine processes left "
        f"after the launches: {len(leftovers)}"
    )


# ---- the run ------------------------------------------------------------------------------------

HEADERS = {
    "generation": ("measure", "baseline tok/s", "measured tok/s", "ratio", "per-rep ratio range"),
    "reps": (
        "rep",
        "raw tok/s (other processes, cores)",
        "engine alone tok/s (others)",
        "app tok/s (others)",
        "UI process, cores",
        "app / raw",
    ),
    "cpu": (
        "arm (same replies as above)",
        "tok/s",
        "this process, cores",
        "engine process, cores",
        "other processes, cores",
        "engine CPU ms per token",
    ),
    "stall": (
        "while",
        "wakes",
        "seconds",
        "p50 ms",
        "p99 ms",
        "max ms",
        "wakes > 16 ms",
        "p99 ms on CPU",
        "max ms on CPU",
        "GC runs, longest ms",
    ),
    "stall sites": (
        "while",
        "loop thread while a wake was > 16 ms overdue (handler > our frames)",
        "share of samples",
        "stalls",
        "worst stall ms",
    ),
    "paint": ("launch", "median ms", "runs", "range ms", "frame has the marker"),
}


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def summary(report: Report, elapsed: float, loads: tuple[str, str]) -> str:
    """The run as Markdown: the machine's load, the tables, the notes."""
    parts = [
        f"load average (1, 5, 15 min) at start: {loads[0]}; at end: {loads[1]}; "
        f"run took {elapsed:.0f} s"
    ]
    for section, headers in HEADERS.items():
        rows = report.sections.get(section, [])
        if rows:
            parts.append(markdown_table(headers, rows))
    if report.notes:
        parts.append("\n".join(f"- {note}" for note in report.notes))
    return "\n\n".join(parts)


def print_summary(report: Report, quick: bool, elapsed: float, loads: tuple[str, str]) -> None:
    command = ".venv/bin/python -m benchmarks.bench_app" + (" --quick" if quick else "")
    print(f"command: {command}")
    from benchmarks.bench_engine import machine_line

    print(f"machine: {machine_line()}")
    print(summary(report, elapsed, loads))


def run_app_session(plan: Plan, quick: bool, folder: Path, demo: Path, large: Path) -> Report:
    """Parts 2 and 3 (in-process) in a fresh interpreter; its report comes back as JSON."""
    out = folder / "app-session.json"
    command = [sys.executable, "-m", "benchmarks.bench_app", "--app-session", str(out)]
    command += [str(demo), str(large)] + (["--quick"] if quick else [])
    subprocess.run(command, cwd=REPO, check=True)
    data = json.loads(out.read_text())
    return Report(
        {name: [tuple(row) for row in rows] for name, rows in data["sections"].items()},
        data["notes"],
    )


def measure(plan: Plan, quick: bool) -> tuple[Report, float, tuple[str, str]]:
    """The whole run: its report, seconds, and the load average at the start and the end."""
    from tui_llm.catalog.generate import write_llama_gguf

    began = time.perf_counter()
    loads_before = load_average()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="tui-llm-bench-app-") as tmp:
        folder = Path(tmp)
        for name in DIR_VARS:
            os.environ[f"TUI_LLM_{name}_DIR"] = str(folder / name.lower())
        demo = ensure_demo_model()
        large = write_llama_gguf(
            paths.default_models_dir() / LARGE_NAME, n_layer=16, n_embd=512, n_ctx=4096, seed=16
        )
        log("1. tokens/s through the app, its engine alone, raw llama-cpp-python")
        asyncio.run(bench_tokens(plan, folder, demo, report))
        log("2. event loop, in a fresh process")
        report.merge(run_app_session(plan, quick, folder, demo, large))
        bench_launch(plan, folder, report)
    return report, time.perf_counter() - began, (loads_before, load_average())


def collect(quick: bool) -> dict[str, str]:
    """Run the benchmark; its Markdown for ``docs/benchmarks-app.md`` (section ``app``)."""
    report, elapsed, loads = measure(QUICK if quick else FULL, quick)
    return {"app": summary(report, elapsed, loads)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter replies")
    parser.add_argument(
        "--app-session",
        nargs=3,
        metavar=("OUT_JSON", "DEMO", "LARGE"),
        help=argparse.SUPPRESS,  # internal: the stall session, run in a fresh interpreter
    )
    parser.add_argument("--streaming-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = STREAMING_ONLY if args.streaming_only else QUICK if args.quick else FULL
    if args.app_session:
        out, demo, large = (Path(p) for p in args.app_session)
        session = asyncio.run(bench_app_session(plan, out.parent, demo, large))
        out.write_text(json.dumps({"sections": session.sections, "notes": session.notes}))
        return 0

    report, elapsed, loads = measure(plan, args.quick)
    print_summary(report, args.quick, elapsed, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
