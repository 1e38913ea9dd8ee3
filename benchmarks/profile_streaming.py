"""The UI's work per streamed token, profiled: function calls and CPU seconds of the app process.

``python -m benchmarks.profile_streaming [--replies N] [--json FILE]``

Lateness (benchmarks/bench_app.py) says how late the event loop ran, which on a shared machine
moves with other processes' load as much as with our code. This counts what our code does instead:
the headless app (the same one bench_app builds: real engine, demo model, greedy, 600 tokens)
streams N replies under cProfile, and the figures are per generated token, so the batch count
(which follows the engine's timing) cancels out. Run it at two commits to tell a regression of the
UI's streaming path from noise (docs/benchmarks-app.md has such a comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bench_app as app_bench
from tui_llm.catalog.demo import ensure_demo_model
from tui_llm.engine.protocol import SamplingParams
from tui_llm.widgets.message_view import MessageView
from tui_llm.widgets.prompt import PromptInput

MAX_TOKENS = 600


async def profile_replies(replies: int) -> list[dict[str, Any]]:
    """Stream ``replies`` replies through the headless app; per reply: tokens, batches, profiled
    function calls and CPU seconds of this process from Enter to the reply's figures."""
    folder = Path(tempfile.mkdtemp(prefix="tui-llm-profile-"))
    for name in app_bench.DIR_VARS:
        os.environ[f"TUI_LLM_{name}_DIR"] = str(folder / name.lower())
    app = app_bench.build_app(folder, ensure_demo_model())
    results: list[dict[str, Any]] = []
    async with app.run_test(size=app_bench.SIZE) as pilot:
        screen = app.main_screen
        await app_bench.wait_until(
            lambda: screen.loaded is not None and not screen.model_loading, 120, "the load"
        )
        app.sampling = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, seed=1)
        engine = app.engine
        assert isinstance(engine, app_bench.RecordingEngine)
        for _ in range(replies):
            await pilot.press("ctrl+n")
            await app_bench.wait_until(lambda: not screen.query(MessageView), 10, "a new chat")
            if not screen.query_one(PromptInput).has_focus:
                await pilot.click(PromptInput)
            await pilot.press(*app_bench.PROMPT)
            before = len(engine.replies)
            profiler = cProfile.Profile()
            cpu_start = time.process_time()
            profiler.enable()
            await pilot.press("enter")
            await app_bench.wait_until(
                lambda before=before: (  # type: ignore[misc]
                    len(engine.replies) > before
                    and not screen.generating
                    and "tok/s" in app_bench.shown_stats(app_bench.last_reply(screen))
                ),
                120,
                "the reply",
            )
            profiler.disable()
            cpu = time.process_time() - cpu_start
            trace = engine.replies[-1]
            assert trace.done is not None
            tokens = trace.done.stats.generated_tokens
            calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
            results.append(
                {"tokens": tokens, "batches": trace.batches, "calls": calls, "cpu_s": cpu}
            )
            print(
                f"{tokens} tokens in {trace.batches} batches: {calls / tokens:,.0f} calls and "
                f"{cpu / tokens * 1000:.2f} ms CPU per token",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_streaming")
    parser.add_argument("--replies", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the per-reply figures")
    args = parser.parse_args(argv)
    results = asyncio.run(profile_replies(args.replies))
    tokens = sum(r["tokens"] for r in results)
    print(
        f"all {len(results)} replies: {sum(r['calls'] for r in results) / tokens:,.0f} calls and "
        f"{sum(r['cpu_s'] for r in results) / tokens * 1000:.2f} ms CPU per token"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
