"""Engine faults through the whole app: a signal to the engine (or its RPC server) while a model
loads, while a prompt is processed and while a reply streams; what the app says, how soon, what
it keeps, and whether F5 brings a working engine back.

Each case runs in a fresh headless app (Pilot) on a real engine process and SmolLM2, on the CPU
or with every layer on an RPC server standing in for the GPU. Detection time runs from the
signal to the banner line on screen, polled every 10 ms.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks.reliability.harness import (
    RpcServer,
    banner,
    build_app,
    end_process,
    engine_processes,
    poll,
    send,
    shown_messages,
    submit,
    wait_loaded,
)
from benchmarks.sections import markdown_table
from tui_llm.app import TuiLlmApp
from tui_llm.engine.protocol import SamplingParams

Phase = Literal["load", "prompt", "streaming"]
PHASES: tuple[Phase, ...] = ("load", "prompt", "streaming")
SIGNALS = (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGSTOP)
STALL_TIMEOUT_S = 5.0  # the engine client's default: the figures are the user's
DETECT_LIMIT_S = 30.0  # a case whose message takes longer counts as not detected
LONG_PROMPT = (
    " ".join(
        f"Line {i}: the quick brown fox jumps over the lazy dog near the river bank."
        for i in range(90)
    )
    + "\nSummarise the lines above."
)
N_CTX = 4096


@dataclass(frozen=True)
class FaultCase:
    """One signal sent at one moment: to the engine, or to the RPC server it uses."""

    target: Literal["engine", "rpc-server"]
    sig: signal.Signals
    phase: Phase
    device: Literal["cpu", "rpc"]

    @property
    def label(self) -> str:
        who = "engine" if self.target == "engine" else "RPC server"
        return f"{self.sig.name} {who}, {self.phase}, {self.device.upper()}"


def all_cases() -> list[FaultCase]:
    """Every signal at every phase on both devices, and the RPC server killed mid-load and
    mid-reply."""
    cases = [
        FaultCase("engine", sig, phase, device)
        for device in ("cpu", "rpc")
        for phase in PHASES
        for sig in SIGNALS
    ]
    cases += [
        FaultCase("rpc-server", signal.SIGKILL, "load", "rpc"),
        FaultCase("rpc-server", signal.SIGKILL, "streaming", "rpc"),
        # A stopped server leaves the engine in a call that never returns, its heartbeat going:
        # the user presses Esc, and the stop that never comes gives the engine up.
        FaultCase("rpc-server", signal.SIGSTOP, "prompt", "rpc"),
        FaultCase("rpc-server", signal.SIGSTOP, "streaming", "rpc"),
    ]
    return cases


@dataclass
class FaultOutcome:
    """What the app did after the signal.

    ``detected_s``: signal to the banner line, or None when none came within
    ``DETECT_LIMIT_S``; ``kept``: every message on screen before the signal is still in the
    conversation, the partial reply included; ``recovered_s``: F5 to a loaded model (0 where
    the app reloaded by itself: ``recovered_by``), and ``replied``: that model then answered.
    """

    case: FaultCase
    phase_seen: str
    message: str = ""
    detected_s: float | None = None
    kept: bool = False
    partial_chars: int = 0
    recovered_s: float | None = None
    recovered_by: str = "F5"
    replied: bool = False
    leftovers: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.detected_s is not None
            and self.kept
            and self.recovered_s is not None
            and self.replied
            and self.leftovers == 0
            and not self.error
        )


def arm_on_first_progress(app: TuiLlmApp, act: Callable[[], None]) -> None:
    """Run ``act`` when the next load reports its first progress, once."""
    engine = app.engine
    original = engine.load
    done: list[bool] = []

    async def load(settings: Any, on_progress: Any = None, keep_kv: bool = True) -> Any:
        def hook(progress: float) -> None:
            if not done:
                done.append(True)
                act()
            if on_progress is not None:
                on_progress(progress)

        engine.load = original  # type: ignore[method-assign]
        return await original(settings, hook, keep_kv)

    engine.load = load  # type: ignore[method-assign]


async def run_case(
    case: FaultCase, model: Path, rpc: RpcServer | None, stall_timeout_s: float = STALL_TIMEOUT_S
) -> FaultOutcome:
    """Run one case in a fresh app; never raises (a failure is the outcome's ``error``)."""
    overrides: dict[str, Any] = {"n_ctx": N_CTX}
    if case.device == "rpc":
        assert rpc is not None
        overrides.update(rpc_servers=(rpc.address,), offload="all")
    app = build_app(
        model, SamplingParams(temperature=0.0, max_tokens=8), stall_timeout_s, **overrides
    )
    outcome = FaultOutcome(case, phase_seen="")
    signalled: list[float] = []
    engine_pid: list[int | None] = []

    def fire() -> None:
        engine_pid.append(app.engine.pid)
        signalled.append(time.perf_counter())
        if case.target == "engine":
            app.engine.kill(case.sig)
        else:
            assert rpc is not None
            rpc.kill(case.sig)

    try:
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.main_screen
            await wait_loaded(pilot, app)
            await send(pilot, app, "Hello! Who are you?")
            if case.phase == "load":
                arm_on_first_progress(app, fire)
                screen.load_model(model)
                await poll(pilot, lambda: bool(signalled), 120)
                outcome.phase_seen = "load" if screen.model_loading else "after load"
            elif case.phase == "prompt":
                app.sampling = SamplingParams(temperature=0.0, max_tokens=100000)
                await submit(pilot, app, LONG_PROMPT)
                await poll(pilot, lambda: screen.generating, 60)
                await pilot.pause(0.3)
                streamed = shown_messages(app)[-1]
                outcome.phase_seen = "prompt" if not streamed[1] else "streaming"
                fire()
            else:
                app.sampling = SamplingParams(temperature=0.0, max_tokens=100000)
                await submit(pilot, app, "Tell me a long story about a lighthouse keeper.")
                await poll(pilot, lambda: len(shown_messages(app)[-1][1]) > 20, 120)
                outcome.phase_seen = "streaming"
                fire()
            on_screen = shown_messages(app)
            if case.target == "rpc-server" and case.sig == signal.SIGSTOP:
                await pilot.press("escape")  # nothing else would end the wait
            try:
                await poll(pilot, lambda: "F5" in banner(app), DETECT_LIMIT_S)
                outcome.detected_s = time.perf_counter() - signalled[0]
                outcome.message = banner(app).split(" — ")[0]
            except TimeoutError:
                outcome.message = f"no message within {DETECT_LIMIT_S:g} s"
            await poll(pilot, lambda: not screen.generating and not screen.model_loading, 30)
            outcome.kept, outcome.partial_chars = _kept(app, on_screen, case.phase != "load")
            if case.target == "rpc-server":
                assert rpc is not None
                rpc.kill(signal.SIGCONT)
                rpc.stop()  # a stopped server is replaced on the same port
                await asyncio.to_thread(rpc.start)
            app.sampling = SamplingParams(temperature=0.0, max_tokens=4)
            if screen.loaded is not None:
                # A load that failed brings the model loaded before back by itself.
                outcome.recovered_by = "itself"
                outcome.recovered_s = 0.0
            else:
                pressed = time.perf_counter()
                await pilot.press("f5")
                await wait_loaded(pilot, app)
                outcome.recovered_s = time.perf_counter() - pressed
            before = len(screen.conversation.turns)
            await send(pilot, app, "Are you back?")
            outcome.replied = (
                len(screen.conversation.turns) == before + 2
                and screen.conversation.last_role == "assistant"
            )
    except Exception as exc:  # a case's failure is its outcome
        outcome.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        for pid in engine_pid:
            if case.sig == signal.SIGSTOP:
                end_process(pid)
        if case.target == "rpc-server" and rpc is not None and case.sig == signal.SIGSTOP:
            rpc.kill(signal.SIGCONT)
            rpc.stop()
        rpc_down = rpc is not None and (rpc.proc is None or rpc.proc.poll() is not None)
        if case.target == "rpc-server" and rpc is not None and rpc_down:
            await asyncio.to_thread(rpc.start)
    outcome.leftovers = await _leftovers()
    return outcome


def _kept(app: TuiLlmApp, on_screen: list[tuple[str, str]], streaming: bool) -> tuple[bool, int]:
    """Whether every message shown at the signal is in the conversation (a partial reply at
    least as long as what was shown), and the partial reply's length."""
    turns = app.main_screen.conversation.turns
    partial = 0
    for index, (role, text) in enumerate(on_screen):
        if role == "assistant" and index == len(on_screen) - 1 and streaming:
            if not text:
                continue  # an empty reply box: nothing was shown
            if index >= len(turns) or not turns[index].content.startswith(text.rstrip()):
                return False, 0
            partial = len(turns[index].content)
            continue
        if index >= len(turns) or turns[index].role != role:
            return False, 0
        if role == "user" and turns[index].content != text:
            return False, 0
    return True, partial


async def _leftovers(wait_s: float = 3.0) -> int:
    deadline = time.monotonic() + wait_s
    while engine_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    left = engine_processes()
    for pid in left:
        end_process(pid)
    return len(left)


def table(outcomes: list[FaultOutcome]) -> str:
    """The Markdown table of docs/reliability.md."""
    rows = []
    for o in outcomes:
        rows.append(
            (
                o.case.label,
                o.phase_seen,
                f"{o.detected_s:.2f} s" if o.detected_s is not None else "—",
                o.message.replace("\n", " ")[:130],
                ("yes" if o.kept else "**no**")
                + (f" ({o.partial_chars} chars)" if o.partial_chars else ""),
                (
                    "—"
                    if o.recovered_s is None
                    else "reloaded by itself"
                    if o.recovered_by == "itself"
                    else f"{o.recovered_s:.1f} s"
                ),
                "yes" if o.replied else "**no**",
                str(o.leftovers),
                o.error or "",
            )
        )
    return markdown_table(
        (
            "case",
            "signalled during",
            "detected in",
            "banner",
            "chat kept (partial reply)",
            "F5 to a loaded model",
            "new engine replied",
            "engines left",
            "error",
        ),
        rows,
    )
