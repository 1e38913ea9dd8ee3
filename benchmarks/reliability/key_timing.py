"""Key handling time in the app without the lateness probe: each key of the input-abuse
benchmark's key-repeat case, pressed ``REPEAT`` times through Pilot, on SmolLM2 (context 512,
one thread), mean milliseconds per key.

Why apart: Pilot waits after each key until the process's CPU time stops advancing (Textual's
``wait_for_idle``: under 1 ms of CPU in 20 ms, for at most 1 s, twice per key). The input-abuse
benchmark's probe wakes every 5 ms in the same process, which on a 2-core machine can be enough
to keep that test from ever passing, so its "ms each" for the key-repeat case reads up to 2 s a
key whatever the app does. Without the probe the same keys show what handling them costs.

Run: ``.venv/bin/python -m benchmarks.reliability.key_timing``
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.reliability.harness import build_app, poll, send, wait_loaded
from tui_llm.catalog.demo import demo_model_path
from tui_llm.engine.protocol import SamplingParams

REPEAT = 8
PANEL_KEYS = ("right", "left", "]", "[", "end", "home", "c", "f", "k")


async def run() -> list[tuple[str, float]]:
    """(key, mean seconds per press) in the order pressed."""
    app = build_app(demo_model_path(), SamplingParams(temperature=0.0, max_tokens=8))
    rows: list[tuple[str, float]] = []
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot, app)
        await send(pilot, app, "hello")
        screen = app.main_screen

        async def timed(label: str, *keys: str) -> None:
            started = time.perf_counter()
            await pilot.press(*keys)
            rows.append((label, (time.perf_counter() - started) / len(keys)))

        await timed("ctrl+o", "ctrl+o")
        for key in PANEL_KEYS:
            await timed(key, *[key] * REPEAT)
        await timed("enter (one reload)", *["enter"] * 20)
        await poll(pilot, lambda: not screen.model_loading and screen.loaded is not None, 120)
        for key in ("ctrl+n", "ctrl+b", "f6"):
            await timed(key, *[key] * REPEAT)
        for key in ("f1", "ctrl+t"):
            await timed(f"{key}, escape", *[key, "escape"] * (REPEAT // 2))
    return rows


def main() -> None:
    rows = asyncio.run(run())
    width = max(len(key) for key, _ in rows)
    for key, seconds in rows:
        print(f"{key:{width}s}  {seconds * 1000:6.0f} ms per key")
    mean = sum(seconds for _, seconds in rows) / len(rows)
    print(f"{'mean of the rows':{width}s}  {mean * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
