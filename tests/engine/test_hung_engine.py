"""An engine that stops answering (SIGSTOP stands in for a wedged process) is noticed, stopping
and quitting do not wait on it, and a new engine replaces it; a busy one is not mistaken for it.

Timings are measured and printed (docs/reliability.md records them); the asserts use limits
several times the design's bounds so a loaded machine does not fail them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import settings, user
from tui_llm.engine.client import STOP_WAIT_S, EngineClient, EngineError
from tui_llm.engine.protocol import ChatMessage, DoneEvent, SamplingParams, TokensEvent

STALL_S = 2.0  # the tests' stall timeout (the app's is 5 s): the same code, shorter waits
LONG = SamplingParams(temperature=0.0, max_tokens=100000)


def resume_and_kill(pid: int | None) -> None:
    """Teardown for a test that stopped a process: never leave one behind, stopped or not."""
    if pid is None:
        return
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextlib.asynccontextmanager
async def stoppable_engine() -> AsyncIterator[tuple[EngineClient, list[EngineError]]]:
    client = EngineClient(stall_timeout_s=STALL_S)
    crashes: list[EngineError] = []
    client.on_crash = crashes.append
    await client.start()
    pids = [client.pid]
    try:
        yield client, crashes
    finally:
        pids.append(client.pid)
        await client.close()
        for pid in pids:
            resume_and_kill(pid)


async def test_a_stopped_engine_mid_reply_is_noticed_and_replaced(model_8l: Path) -> None:
    async with stoppable_engine() as (client, crashes):
        await client.load(settings(model_8l))
        stream = client.generate([user("tell me everything")], LONG, 0.0)
        assert isinstance(await stream.__anext__(), TokensEvent)
        stopped_pid = client.pid
        assert stopped_pid is not None
        client.kill(signal.SIGSTOP)
        stopped_at = time.monotonic()
        with pytest.raises(EngineError) as caught:
            async for _ in stream:
                pass
        detected_s = time.monotonic() - stopped_at
        print(f"\nstopped mid-reply: noticed after {detected_s:.2f} s (stall timeout {STALL_S} s)")
        assert caught.value.kind == "not_answering"
        assert "stopped answering" in str(caught.value) and "SIGSTOP" in str(caught.value)
        assert STALL_S * 0.9 <= detected_s < STALL_S + 10
        assert crashes and crashes[0].kind == "not_answering"
        assert not client.running and client.loaded is None

        started = time.monotonic()
        await client.start()  # F5: the silent engine is killed, a new one starts
        print(f"replaced in {time.monotonic() - started:.2f} s")
        assert gone(stopped_pid) and client.pid != stopped_pid
        await client.load(settings(model_8l))
        done = await client.chat([user("back?")], SamplingParams(temperature=0.0, max_tokens=4))
        assert done.stats.generated_tokens == 4


async def test_stopping_a_reply_and_closing_do_not_wait_on_a_stopped_engine(
    model_8l: Path,
) -> None:
    """Esc (the consuming task cancelled) and quit (close) right after SIGSTOP, before the
    stall is noticed: each returns within about ``STOP_WAIT_S``."""
    async with stoppable_engine() as (client, _crashes):
        await client.load(settings(model_8l))
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in client.generate([user("go on and on")], LONG, 0.0):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        pid = client.pid
        assert pid is not None
        client.kill(signal.SIGSTOP)
        started = time.monotonic()
        await client.cancel_all()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        esc_s = time.monotonic() - started
        started = time.monotonic()
        await client.close()
        close_s = time.monotonic() - started
        print(f"\nstopped engine: Esc returned in {esc_s:.3f} s, close in {close_s:.3f} s")
        assert esc_s < STOP_WAIT_S * 3
        assert close_s < STOP_WAIT_S * 3 + 1
        assert gone(pid)


async def test_a_stopped_engine_during_a_load_is_noticed(model_32l: Path) -> None:
    async with stoppable_engine() as (client, _crashes):
        # Stopped as the load is asked for, so that it cannot end (stopped at its first
        # progress report, a small model's load could finish before the report was read).
        client.kill(signal.SIGSTOP)
        stopped_at = time.monotonic()
        with pytest.raises(EngineError) as caught:
            await client.load(settings(model_32l))
        detected_s = time.monotonic() - stopped_at
        print(f"\nstopped mid-load: noticed after {detected_s:.2f} s")
        assert caught.value.kind == "not_answering"
        assert detected_s < STALL_S + 10
        assert client.load_in_flight is False and client.loaded is None
        await client.start()
        loaded = await client.load(settings(model_32l))
        assert loaded.n_layer == 32


async def test_a_busy_engine_is_not_taken_for_a_stopped_one(smollm2: Path) -> None:
    """A long prompt processed in one decode call sends no tokens for seconds; the heartbeat
    thread keeps it alive with a stall timeout far shorter than the silence."""
    client = EngineClient(stall_timeout_s=1.0)
    await client.start()
    try:
        await client.load(settings(smollm2, n_ctx=1024, n_batch=1024, n_ubatch=1024))
        long_prompt: list[ChatMessage] = [user("word " * 400)]
        done = await client.chat(long_prompt, SamplingParams(temperature=0.0, max_tokens=1))
        assert isinstance(done, DoneEvent)
        print(f"\nbusy engine: {done.stats.time_to_first_token_s:.1f} s with no tokens, no stall")
        assert done.stats.time_to_first_token_s > 1.5  # the silence outlasted the stall timeout
        assert client.crash is None and client.running
    finally:
        await client.close()
