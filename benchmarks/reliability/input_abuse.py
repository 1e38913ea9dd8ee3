"""Input abuse through the headless app on a real engine: a 1 MB paste, a 10,000-line message,
a prompt longer than the context, a conversation of thousands of messages, key repeat on every
control, resizing during a reload. For each: the event loop's lateness (``LatenessProbe``, a
5 ms tick) while it happens, how long it took, and whether the app did the right thing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import events
from textual.pilot import Pilot

from benchmarks.bench_app import LatenessProbe, percentile
from benchmarks.reliability.harness import build_app, poll, send, shown_messages, wait_loaded
from benchmarks.sections import markdown_table
from tui_llm.app import TuiLlmApp
from tui_llm.engine.protocol import SamplingParams
from tui_llm.messages import ApplyLoadSettings
from tui_llm.store.conversations import ConversationStore
from tui_llm.widgets.offload import OffloadPanel
from tui_llm.widgets.prompt import PromptInput

MB = 2**20
LONG_CONVERSATION = 3000  # messages


@dataclass
class AbuseCase:
    """One abuse: lateness of the loop while it ran (seconds), its time, whether it went right."""

    name: str
    seconds: float = 0.0
    p50_s: float = 0.0
    p99_s: float = 0.0
    max_s: float = 0.0
    correct: bool = False
    note: str = ""


Check = Callable[[Pilot[Any], TuiLlmApp], Awaitable[tuple[bool, str]]]


async def measure(
    name: str, pilot: Pilot[Any], app: TuiLlmApp, probe: LatenessProbe, action: Check
) -> AbuseCase:
    """Run ``action`` with the probe's window open; its (correct, note) goes in the case."""
    probe.start(name)
    started = time.perf_counter()
    try:
        correct, note = await action(pilot, app)
    except Exception as exc:  # a failed case is recorded as one
        correct, note = False, f"{type(exc).__name__}: {exc}"[:200]
    seconds = time.perf_counter() - started
    window = await probe.stop()
    late = window.lateness_s or [0.0]
    return AbuseCase(
        name, seconds, percentile(late, 0.5), percentile(late, 0.99), max(late), correct, note
    )


async def paste_1mb(pilot: Pilot[Any], app: TuiLlmApp) -> tuple[bool, str]:
    """A 1 MiB paste lands whole in the message box."""
    prompt = app.main_screen.query_one(PromptInput)
    prompt.focus()
    await pilot.pause()
    text = ("a pasted line of text, forty-odd bytes long\n" * (MB // 44 + 1))[:MB]
    app.post_message(events.Paste(text))
    await poll(pilot, lambda: len(prompt.text) >= MB - 64, 120, 0.02)
    return len(prompt.text) == MB, f"{len(prompt.text)} characters in the box"


def context_notice(app: TuiLlmApp, before: frozenset[str] = frozenset()) -> str:
    """The app's latest notification about the context not among ``before`` (identities), or
    ""."""
    said = [
        str(n.message)
        for n in app._notifications
        if "context" in str(n.message) and n.identity not in before
    ]
    return said[-1] if said else ""


def notice_ids(app: TuiLlmApp) -> frozenset[str]:
    """The identities of the notifications on screen now."""
    return frozenset(n.identity for n in app._notifications)


async def send_too_long(pilot: Pilot[Any], app: TuiLlmApp) -> tuple[bool, str]:
    """The 1 MiB in the box sent: it cannot fit the context, so the app says so and gives the
    message back in the box, whole (issue 14's context rule); nothing is lost."""
    screen = app.main_screen
    prompt = screen.query_one(PromptInput)
    before = notice_ids(app)
    await pilot.press("enter")
    await poll(pilot, lambda: bool(context_notice(app, before)), 120, 0.02)
    await poll(pilot, lambda: not screen.generating and len(prompt.text) >= MB - 64, 120, 0.02)
    kept = len(prompt.text) == MB
    return kept, f"{context_notice(app)[:100]} ({len(prompt.text)} characters back in the box)"


def many_lines_action(lines: int) -> Check:
    async def action(pilot: Pilot[Any], app: TuiLlmApp) -> tuple[bool, str]:
        """A message of ``lines`` lines typed in the box and sent; shown whole."""
        screen = app.main_screen
        text = "\n".join(f"line {n}" for n in range(lines))
        prompt = screen.query_one(PromptInput)
        prompt.focus()
        prompt.text = text
        before = notice_ids(app)
        await pilot.press("enter")
        # Sent and shown whole, or (longer than the context) given back whole with a notice.
        await poll(
            pilot,
            lambda: (
                any(t.content == text for t in screen.conversation.turns)
                or (prompt.text == text and bool(context_notice(app, before)))
            ),
            60,
        )
        await poll(pilot, lambda: not screen.generating, 300, 0.02)
        if prompt.text == text:
            said = context_notice(app, before)[:80]
            return True, f"{lines} lines back in the box whole: {said}"
        shown = [c for role, c in shown_messages(app) if role == "user"]
        ok = bool(shown) and shown[-1].count("\n") == lines - 1
        last = screen.chat_view.messages()[-1]
        stats = str(last.query_one(".stats").render()) if last.role == "assistant" else ""
        return ok, f"shown with {shown[-1].count(chr(10)) + 1 if shown else 0} lines; {stats[:80]}"

    return action


def open_long_conversation(store: ConversationStore, count: int) -> Check:
    async def action(pilot: Pilot[Any], app: TuiLlmApp) -> tuple[bool, str]:
        """A stored conversation of ``count`` messages opened, scrolled end to end, sent one
        more message: every message shown, and a reply or a line saying the context is full."""
        conversation = store.new_conversation(None, "", title="a long one")
        for n in range(count):
            store.add_message(conversation, "user" if n % 2 == 0 else "assistant", f"message {n}")
        screen = app.main_screen
        await screen.open_conversation(conversation)
        view = screen.chat_view

        def listed() -> int:  # mounted, and saved ones before and after the mounted window
            return len(view.messages()) + view.unmounted_count + view.later_count

        await poll(pilot, lambda: bool(view.messages()) and listed() == count, 300, 0.05)
        for key in ("home", "end", "pageup", "pagedown"):
            screen.chat_view.focus()
            await pilot.press(key)
        await send(pilot, app, "and one more")
        turns = len(screen.conversation.turns)
        shown = len(view.messages())
        last = view.messages()[-1]
        stats = str(last.query_one(".stats").render())
        # Longer than the context, the conversation gets no reply but a line that says so.
        answered = turns == count + 2 or (turns == count + 1 and "context" in stats)
        # The chat mounts a window of the newest messages; every message stays listed, in order.
        ok = listed() == count + 2 and answered
        return ok, f"{shown} messages mounted, {turns} in the conversation; {stats[:90]}"

    return action


def key_repeat_action(repeat: int) -> Check:
    async def action(pilot: Pilot[Any], app: TuiLlmApp) -> tuple[bool, str]:
        """Key repeat on every control: each offload panel key ``repeat`` times, Enter 50 times
        (one reload), Ctrl+N, Ctrl+B (an odd count), F6, F1 and Ctrl+T each with Esc, Esc: the
        app ends where the keys leave it, with one model loaded."""
        screen = app.main_screen
        loads: list[object] = []
        engine_load = app.engine.load

        async def counting_load(*args: Any, **kwargs: Any) -> Any:
            loads.append(args[0])
            return await engine_load(*args, **kwargs)

        said: list[str] = []
        app_notify = app.notify

        def recording_notify(message: str, *args: Any, **kwargs: Any) -> None:
            said.append(f"{kwargs.get('title', '')}: {message}")
            app_notify(message, *args, **kwargs)

        app.engine.load = counting_load  # type: ignore[method-assign]
        app.notify = recording_notify  # type: ignore[method-assign]
        before = screen.loaded.settings if screen.loaded is not None else None
        pressed = 0
        started = time.perf_counter()

        async def press(*keys: str) -> None:
            nonlocal pressed
            await pilot.press(*keys)
            pressed += len(keys)

        try:
            await press("ctrl+o")
            panel = screen.query_one(OffloadPanel)
            for key in ("right", "left", "]", "[", "end", "home", "c", "f", "k"):
                await press(*[key] * repeat)
            await press("end")
            await press(*["enter"] * 50)
            await poll(pilot, lambda: not screen.model_loading and screen.loaded is not None, 120)
            await pilot.pause(0.5)
            await press(*["ctrl+n"] * repeat)
            await press(*["ctrl+b"] * (repeat + 1))
            await press(*["f6"] * repeat)
            for key in ("f1", "ctrl+t"):
                for _ in range(repeat // 4):
                    await press(key, "escape")
            await press(*["escape"] * repeat)
            await poll(pilot, lambda: screen is app.screen, 30)
            per_key = (time.perf_counter() - started) / pressed
            # A combination llama.cpp refuses (a quantized V cache without flash attention)
            # fails, is said, and the model loaded before comes back: a second load.
            asked = [s for s in loads if s != before]
            failed = [m for m in said if "load failed" in m.lower()]
            ok = len(asked) == 1 and screen.loaded is not None and not panel.dirty
            back = " (it failed; the previous settings were loaded again)" if failed else ""
            return ok, (
                f"{pressed} keys ({per_key * 1000:.0f} ms each as Pilot waits for the app to "
                f"settle); {len(asked)} reload from 50 Enters{back}; back on the chat with the "
                "model loaded"
            )
        finally:
            app.engine.load = engine_load  # type: ignore[method-assign]
            app.notify = app_notify  # type: ignore[method-assign]

    return action


async def resize_during_reload(pilot: Pilot[Any], app: TuiLlmApp) -> tuple[bool, str]:
    """Forty resizes between 60x20 and 200x60 while a reload runs; the reload completes and the
    chat is intact."""
    screen = app.main_screen
    loaded = screen.loaded
    assert loaded is not None
    turns = list(screen.conversation.turns)
    screen.post_message(
        ApplyLoadSettings(
            0, 1024 if loaded.settings.n_ctx != 1024 else 512, False, loaded.settings.kv_cache_type
        )
    )
    await poll(pilot, lambda: screen.model_loading, 30, 0.005)
    sizes = 0
    while screen.model_loading or sizes < 40:
        width, height = (60, 20) if sizes % 2 else (200, 60)
        await pilot.resize_terminal(width, height)
        sizes += 1
        await pilot.pause(0.02)
    await pilot.resize_terminal(160, 48)
    await wait_loaded(pilot, app)
    ok = screen.loaded is not loaded and list(screen.conversation.turns) == turns
    return ok, f"{sizes} resizes; reload done, conversation unchanged"


async def run_abuse(model: Path, database: Path, quick: bool = False) -> list[AbuseCase]:
    """Every case, in one app on ``model`` (context 512, so a long prompt overflows it)."""
    store = ConversationStore(database)
    app = build_app(model, SamplingParams(temperature=0.0, max_tokens=8), store=store)
    probe = LatenessProbe()
    cases: list[AbuseCase] = []
    long_conversation = 300 if quick else LONG_CONVERSATION
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_loaded(pilot, app)
            await send(pilot, app, "hello")
            plan: list[tuple[str, Check]] = [
                ("1 MiB paste into the message box", paste_1mb),
                ("that 1 MiB sent (longer than the 512-token context)", send_too_long),
                ("10,000-line message sent", many_lines_action(1000 if quick else 10_000)),
                ("key repeat on every control", key_repeat_action(8 if quick else 50)),
                ("resizing during a reload", resize_during_reload),
                (
                    f"a stored conversation of {long_conversation:,} messages opened, one sent",
                    open_long_conversation(store, long_conversation),
                ),
            ]
            for name, action in plan:
                await pilot.press("ctrl+n")
                cases.append(await measure(name, pilot, app, probe, action))
    finally:
        probe.close()
    return cases


def table(cases: list[AbuseCase]) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f}"

    return markdown_table(
        ("case", "took", "loop lateness p50 / p99 / max (ms)", "correct", "what the app did"),
        [
            (
                c.name,
                f"{c.seconds:.1f} s",
                f"{ms(c.p50_s)} / {ms(c.p99_s)} / {ms(c.max_s)}",
                "yes" if c.correct else "**no**",
                c.note.replace("\n", " "),
            )
            for c in cases
        ],
    )
