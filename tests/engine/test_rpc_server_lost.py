"""An RPC server that goes away while the engine uses it: killed, the engine's crash names the
server rather than llama.cpp's abort alone; stopped (SIGSTOP, or a machine that froze), the
engine is caught in a llama.cpp call that never returns while its heartbeat goes on, so a stop
that is not confirmed within ``stop_timeout_s`` gives the engine up and a new one replaces it.

Each test runs its own server (``tui-llm rpc-server``), never the session's shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.reliability.harness import RpcServer
from tests.helpers import cancel_load_in_flight, replies_after_a_new_engine, settings, user
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.protocol import SamplingParams, TokensEvent

pytestmark = pytest.mark.rpc

STOP_S = 2.0  # the tests' stop timeout (the app's is 10 s): the same code, a shorter wait
LONG = SamplingParams(temperature=0.0, max_tokens=100000)


@contextlib.asynccontextmanager
async def engine_on_own_server(
    tmp_path: Path,
) -> AsyncIterator[tuple[EngineClient, RpcServer, list[EngineError]]]:
    server = RpcServer(tmp_path / "rpc-server.log")
    server.start()
    client = EngineClient(stop_timeout_s=STOP_S, load_stop_timeout_s=STOP_S)
    crashes: list[EngineError] = []
    client.on_crash = crashes.append
    try:
        await client.start()
        yield client, server, crashes
    finally:
        await client.close()
        server.kill(signal.SIGCONT)
        server.stop()


async def test_a_killed_rpc_server_is_named_in_the_crash(model_8l: Path, tmp_path: Path) -> None:
    async with engine_on_own_server(tmp_path) as (client, server, crashes):
        await client.load(settings(model_8l, offload_layers="all", rpc_servers=(server.address,)))
        stream = client.generate([user("tell me everything")], LONG, 0.0)
        assert isinstance(await stream.__anext__(), TokensEvent)
        server.kill(signal.SIGKILL)
        with pytest.raises(EngineError) as caught:
            async for _ in stream:
                pass
        message = str(caught.value)
        print(f"\n{message}")
        assert caught.value.kind == "crashed"
        assert "killed by SIGABRT while writing a reply" in message
        assert f"the connection to the RPC server at {server.address} dropped" in message
        assert crashes and str(crashes[0]) == message
        assert len(message.splitlines()) == 1

        # Back on the CPU, a new engine replies.
        await replies_after_a_new_engine(client, model_8l)


async def test_a_stopped_rpc_server_mid_reply_gives_the_engine_up_after_a_stop(
    model_8l: Path, tmp_path: Path
) -> None:
    async with engine_on_own_server(tmp_path) as (client, server, crashes):
        await client.load(settings(model_8l, offload_layers="all", rpc_servers=(server.address,)))
        stream = client.generate([user("tell me everything")], LONG, 0.0)
        assert isinstance(await stream.__anext__(), TokensEvent)
        stuck_pid = client.pid
        server.kill(signal.SIGSTOP)
        # The engine's next call to the server never returns; its heartbeat goes on, so it
        # is not "stopped answering" by the stall rule. Esc: the stream is closed.
        await stream.aclose()
        stopped_at = time.monotonic()
        assert client.running  # the stop is awaited in the background

        # The next request waits for the stop, which never comes: the engine is given up.
        with pytest.raises(EngineError) as caught:
            await client.count_tokens([user("hi")])
        waited_s = time.monotonic() - stopped_at
        message = str(caught.value)
        print(f"\nstopped RPC server: engine given up {waited_s:.2f} s after Esc: {message}")
        assert caught.value.kind == "not_answering"
        assert f"did not stop writing a reply within {STOP_S:g} s" in message
        assert f"waiting on the RPC server at {server.address}?" in message
        assert STOP_S * 0.9 <= waited_s < STOP_S + 10
        assert crashes and crashes[0] is caught.value
        assert not client.running and client.loaded is None

        # A new engine replaces the stuck one (which is killed), on the CPU.
        await replies_after_a_new_engine(client, model_8l, stuck_pid)


async def test_a_stop_that_is_confirmed_in_time_keeps_the_engine(
    model_8l: Path, tmp_path: Path
) -> None:
    """The stop deadline only gives up an engine that does not answer: a busy RPC server that
    resumes before it keeps the engine and its model."""
    async with engine_on_own_server(tmp_path) as (client, server, crashes):
        await client.load(settings(model_8l, offload_layers="all", rpc_servers=(server.address,)))
        stream = client.generate([user("tell me everything")], LONG, 0.0)
        assert isinstance(await stream.__anext__(), TokensEvent)
        pid = client.pid
        server.kill(signal.SIGSTOP)
        await stream.aclose()
        server.kill(signal.SIGCONT)
        done = await client.chat([user("hi")], SamplingParams(temperature=0.0, max_tokens=3))
        assert done.stats.generated_tokens == 3
        assert client.pid == pid and client.loaded is not None and not crashes


async def test_a_stopped_rpc_server_mid_load_gives_the_engine_up_after_a_cancel(
    model_8l: Path, tmp_path: Path
) -> None:
    """A load that waits on a stopped server (here: for the old model's buffers to be freed and
    new ones made) does not see its cancel; the cancel has the same deadline as a reply's stop."""
    async with engine_on_own_server(tmp_path) as (client, server, crashes):
        on_server = settings(model_8l, offload_layers="all", rpc_servers=(server.address,))
        await client.load(on_server)
        stuck_pid = client.pid
        server.kill(signal.SIGSTOP)
        await cancel_load_in_flight(client, replace(on_server, offload_layers=4))
        cancelled_at = time.monotonic()
        while not crashes and time.monotonic() - cancelled_at < 60:
            await asyncio.sleep(0.05)
        assert crashes, "the stuck load was never given up"
        waited_s = time.monotonic() - cancelled_at
        message = str(crashes[0])
        print(f"\nstopped RPC server: engine given up {waited_s:.2f} s after the cancel: {message}")
        assert crashes[0].kind == "not_answering"
        assert f"did not stop loading {model_8l.name} within {STOP_S:g} s" in message
        assert f"waiting on the RPC server at {server.address}?" in message
        assert waited_s >= STOP_S * 0.9
        assert not client.running and client.loaded is None

        await replies_after_a_new_engine(client, model_8l, stuck_pid)
