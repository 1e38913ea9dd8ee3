"""Opening a long saved conversation in the app: time to show its end, and frame lateness while
scrolling back through all of it.

A conversation of 1,000 messages (500 questions and Markdown answers with a list and a code
block) is saved in a SQLite file in a temporary folder; the headless app (``run_test``, 160x48, no
model) opens it as F3 does (``open_conversation``) and the figures are:

1. time to show the end: from the call until the last message is mounted, the view is scrolled
   to its end and that message lies inside the view (polled every 2 ms), each round from an
   empty chat;
2. frame lateness while scrolling: the view pages up 30 times a second, as a held Page Up key
   does, until the first message is on screen (the earlier messages mount as the view nears its
   top), with the 5 ms event-loop probe of ``bench_app`` running; a wake later than 16 ms is a
   frame the terminal would show late. It pages once without animation and once through the
   key's own action (animated: the app has Textual pause the garbage collector meanwhile).
   Scrolling stops after 60 s (20 s with ``--quick``). The same lateness less the time the loop
   thread waited for a core ("on CPU") is what the app's own work cost; the longest full garbage
   collections are listed apart.

    .venv/bin/python -m benchmarks.bench_resume [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_app import STALL_REPORT_S, LatenessProbe, Window, percentile
from benchmarks.sections import markdown_table
from tui_llm import config as config_mod
from tui_llm.app import TuiLlmApp, make_app
from tui_llm.engine.client import EngineClient
from tui_llm.store import ConversationStore
from tui_llm.widgets.chat import ChatView

SIZE = (160, 48)
KEY_REPEAT_S = 1 / 30
MESSAGES = 1000
ANSWER = """Here is what {n} means in this context:

- the first point about item {n}, said plainly;
- a second point, with `inline code` and **bold** text;
- a third, longer point that wraps onto a second line in a terminal of usual width, as answers do.

```python
def item_{n}(value: int) -> int:
    return value * {n}
```

That is all there is to item {n}."""


def write_conversation(store: ConversationStore, messages: int) -> int:
    conversation = store.new_conversation("/models/any.gguf", "")
    for n in range(messages // 2):
        store.add_message(conversation, "user", f"Question {n}: what about item {n}?")
        store.add_message(conversation, "assistant", ANSWER.format(n=n))
    return conversation


def end_shown(chat: ChatView) -> bool:
    views = chat.messages()
    if not views or not views[-1].content.endswith(f"item {MESSAGES // 2 - 1}."):
        return False
    return chat.max_scroll_y > 0 and chat.scroll_y == chat.max_scroll_y


async def wait_for(predicate: object, timeout_s: float = 120.0) -> None:
    assert callable(predicate)
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the app did not get there")
        await asyncio.sleep(0.002)


@dataclass
class ScrollPass:
    """One scroll from the end of the conversation towards its first message."""

    window: Window  # the probe's wakes meanwhile
    presses: int
    seconds: float
    mounted: int  # messages mounted when it stopped


async def scroll_back(chat: ChatView, page_up: Callable[[], object], limit_s: float) -> ScrollPass:
    """Page up 30 times a second, as a held key repeats, until the first message is on screen
    or ``limit_s`` passed (without Pilot's wait for every widget to be idle after each key)."""
    probe = LatenessProbe()
    probe.start("scroll")
    began = time.perf_counter()
    presses = 0
    while (chat.unmounted_count or chat.scroll_y > 0) and time.perf_counter() - began < limit_s:
        page_up()
        await asyncio.sleep(KEY_REPEAT_S)
        presses += 1
    window = await probe.stop()
    seconds = time.perf_counter() - began
    probe.close()
    return ScrollPass(window, presses, seconds, len(chat.messages()))


async def session(
    rounds: int, folder: Path, scroll_limit_s: float
) -> tuple[list[float], ScrollPass, ScrollPass]:
    """(seconds to show the end per round, a scroll back paging without animation, one with
    the Page Up key's own action: animated, and Textual pauses the collector meanwhile)."""
    store = ConversationStore(folder / "conversations.sqlite3")
    conversation = write_conversation(store, MESSAGES)
    app: TuiLlmApp = make_app(
        config_mod.Settings(), EngineClient(), None, lambda: [], save_settings=False
    )
    app.store = store
    shown: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        screen = app.main_screen
        chat = screen.query_one(ChatView)
        await pilot.pause()
        for _ in range(rounds):
            await screen.action_new_chat()
            await pilot.pause()
            started = time.perf_counter()
            await screen.open_conversation(conversation)
            await wait_for(lambda: end_shown(chat))
            await wait_for(lambda: chat.messages()[-1].region.bottom <= chat.region.bottom)
            shown.append(time.perf_counter() - started)
            await pilot.pause()
        chat.focus()
        await pilot.pause()
        plain = await scroll_back(chat, lambda: chat.scroll_page_up(animate=False), scroll_limit_s)
        await screen.open_conversation(conversation)
        await wait_for(lambda: end_shown(chat))
        await pilot.pause()
        keyed = await scroll_back(chat, chat.action_page_up, scroll_limit_s)
    store.close()
    return shown, plain, keyed


def lateness_rows(name: str, scroll: ScrollPass) -> list[tuple[str, str, str, str]]:
    """Two rows for one scroll pass: lateness, and lateness on CPU with the full collections."""
    window = scroll.window
    lateness, on_cpu = window.lateness_s, window.on_cpu_lateness_s
    full_collections = sorted(s for generation, s in window.gc_pauses if generation == 2)

    def figures(values: list[float]) -> str:
        return (
            f"{percentile(values, 0.5) * 1000:.1f} / {percentile(values, 0.99) * 1000:.1f}"
            f" / {max(values) * 1000:.1f}"
        )

    def over(values: list[float]) -> str:
        return f"{sum(1 for s in values if s > STALL_REPORT_S)} wakes over 16 ms of {len(values)}"

    collections = (
        f"{len(full_collections)} full garbage collections, the longest "
        + ", ".join(f"{s * 1000:.0f}" for s in reversed(full_collections[-3:]))
        + " ms"
        if full_collections
        else "no full garbage collection"
    )
    return [
        (
            f"frame lateness {name}, p50 / p99 / max (ms)",
            figures(lateness),
            over(lateness),
            f"{scroll.presses} pages up in {scroll.seconds:.1f} s; {scroll.mounted} of "
            f"{MESSAGES} messages mounted by then",
        ),
        (
            "the same on CPU (less waits for a core), p50 / p99 / max (ms)",
            figures(on_cpu),
            over(on_cpu),
            collections,
        ),
    ]


def measure(quick: bool) -> str:
    rounds = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="tui-llm-bench-resume-") as tmp:
        folder = Path(tmp)
        for name in ("CONFIG", "DATA", "STATE", "LOG"):
            os.environ[f"TUI_LLM_{name}_DIR"] = str(folder / name.lower())
        limit = 20.0 if quick else 60.0
        shown, plain, keyed = asyncio.run(session(rounds, folder, limit))
    rows = [
        (
            f"time to show the end of {MESSAGES} messages (ms)",
            f"{statistics.median(shown) * 1000:.0f}",
            f"{min(shown) * 1000:.0f}-{max(shown) * 1000:.0f}",
            f"{len(shown)} opens",
        ),
        *lateness_rows(f"while paging up without animation (at most {limit:.0f} s)", plain),
        *lateness_rows("paging up as the Page Up key does (animated)", keyed),
    ]
    table = markdown_table(("measure", "median", "range", "runs"), rows)
    return (
        f"{table}\n\nTarget: the end shown within 1 s; scrolling with no wake over 16 ms late. "
        f"Opened as F3 does (`open_conversation`) in a headless app of {SIZE[0]}x{SIZE[1]}. "
        "Each saved message is one widget whose Markdown is rendered once per width "
        f"(`SavedMessage`); the newest {ChatView.INITIAL_MESSAGES} are mounted at once, then "
        f"{ChatView.REVEAL_STEP} per frame as the view nears an end of those mounted, and past "
        f"{ChatView.MOUNTED_LIMIT} the farthest from the view are unmounted again."
    )


def collect(quick: bool) -> dict[str, str]:
    """Run the benchmark; its Markdown for ``docs/benchmarks-app.md`` (section ``app.resume``)."""
    return {"app.resume": measure(quick)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 opens instead of 5")
    args = parser.parse_args(argv)
    print(measure(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
