"""The app with an engine that stops answering (SIGSTOP): it says so, Esc and quitting do not
wait on it, F5 kills it and a new engine carries on with the conversation."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.reliability.harness import RpcServer
from tests.engine.test_hung_engine import STALL_S, gone, resume_and_kill
from tests.engine.test_rpc_server_lost import STOP_S
from tests.ui.test_app import build, roles, send, start_long_reply, wait_until
from tui_llm.app import TuiLlmApp
from tui_llm.engine.protocol import SamplingParams
from tui_llm.widgets.textline import TextLine


def banner(app: TuiLlmApp) -> str:
    return str(app.main_screen.query_one("#banner", TextLine).render())


def stop_as_the_load_is_sent(app: TuiLlmApp, stopped: list[int]) -> None:
    """SIGSTOP the engine as the next load is asked of it, so that the load cannot end. (Stopped
    at the load's first progress report, as this once did, a small model's load could finish in
    the engine before the app had read that report on a busy machine: the engine's log then
    ended with the loaded model's template.)"""
    engine_load = app.engine.load

    async def stopping_load(
        settings: Any, on_progress: Callable[[float], None] | None = None, keep_kv: bool = True
    ) -> Any:
        if not stopped and app.engine.pid is not None:
            stopped.append(app.engine.pid)
            app.engine.kill(signal.SIGSTOP)
        return await engine_load(settings, on_progress, keep_kv)

    app.engine.load = stopping_load  # type: ignore[method-assign]


async def test_stopped_mid_reply_esc_is_quick_f5_replaces_it(model_8l: Path) -> None:
    app = build(model_8l, n_ctx=4096)
    app.engine.stall_timeout_s = STALL_S
    stopped_pid: int | None = None
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.main_screen
            await wait_until(pilot, lambda: screen.loaded is not None)
            await start_long_reply(pilot, app, "a long reply please")
            stopped_pid = app.engine.pid
            app.engine.kill(signal.SIGSTOP)
            started = time.monotonic()
            await pilot.press("escape")
            await wait_until(pilot, lambda: not screen.generating)
            esc_s = time.monotonic() - started
            await wait_until(pilot, lambda: "stopped answering" in banner(app))
            noticed_s = time.monotonic() - started
            print(f"\napp, stopped mid-reply: Esc {esc_s:.2f} s, noticed after {noticed_s:.2f} s")
            assert esc_s < 3
            assert "F5" in banner(app)
            status = str(screen.query_one("StatusBar", TextLine).render())
            assert "engine stopped (F5 restarts)" in status
            partial = screen.conversation.last_reply()
            assert screen.conversation.last_role == "assistant" and partial

            app.sampling = SamplingParams(temperature=0.0, max_tokens=8)
            await pilot.press("f5")
            await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
            assert stopped_pid is not None and gone(stopped_pid)
            assert screen.loaded is not None and screen.loaded.settings.n_ctx == 4096
            await send(pilot, app, "are you back?")
            assert screen.conversation.turns[1].content == partial
            assert roles(app)[-2:] == ["user", "assistant"]
            assert "stopped answering" not in banner(app)
    finally:
        resume_and_kill(stopped_pid)


async def test_stopped_mid_load_is_said_and_f5_loads_again(model_32l: Path) -> None:
    app = build(model_32l)
    app.engine.stall_timeout_s = STALL_S
    stopped: list[int] = []
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.main_screen
            await wait_until(pilot, lambda: screen.loaded is not None)
            stop_as_the_load_is_sent(app, stopped)
            screen.load_model(model_32l, offload=0)
            await wait_until(pilot, lambda: bool(stopped))
            await wait_until(pilot, lambda: "stopped answering" in banner(app))
            await wait_until(pilot, lambda: not screen.model_loading)
            assert any("stopped answering" in str(n.message) for n in app._notifications)
            assert screen.loaded is None  # no automatic reload into a silent engine
            app.engine.load = type(app.engine).load.__get__(app.engine)  # type: ignore[method-assign]
            await pilot.press("f5")
            await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
            assert gone(stopped[0])
            await send(pilot, app, "hello")
            assert roles(app) == ["user", "assistant"]
    finally:
        for pid in stopped:
            resume_and_kill(pid)


async def test_quitting_does_not_wait_on_a_stopped_engine(model_8l: Path) -> None:
    app = build(model_8l, n_ctx=4096)
    stopped_pid: int | None = None
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.main_screen
            await wait_until(pilot, lambda: screen.loaded is not None)
            await start_long_reply(pilot, app, "a long reply please")
            stopped_pid = app.engine.pid
            app.engine.kill(signal.SIGSTOP)
            started = time.monotonic()
        quit_s = time.monotonic() - started
        print(f"\napp, stopped mid-reply: quit took {quit_s:.2f} s")
        assert quit_s < 4
        assert stopped_pid is not None and gone(stopped_pid)
        assert screen.conversation.last_role == "assistant"  # what streamed is kept
    finally:
        resume_and_kill(stopped_pid)


@pytest.mark.rpc
async def test_a_stopped_rpc_server_mid_reply_is_said_after_esc_and_f5_carries_on(
    model_8l: Path, tmp_path: Path
) -> None:
    """The engine waits for ever on a stopped RPC server while its heartbeat goes on: Esc cuts
    the reply at once, the unconfirmed stop gives the engine up, the banner names the server,
    and F5 (the server back on its port) loads again with the conversation kept."""
    server = RpcServer(tmp_path / "rpc-server.log")
    server.start()
    app = build(model_8l, n_ctx=4096, offload="all", rpc_servers=(server.address,))
    app.engine.stop_timeout_s = STOP_S
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.main_screen
            await wait_until(pilot, lambda: screen.loaded is not None)
            await start_long_reply(pilot, app, "a long reply please")
            stuck_pid = app.engine.pid
            server.kill(signal.SIGSTOP)
            started = time.monotonic()
            await pilot.press("escape")
            await wait_until(pilot, lambda: not screen.generating)
            esc_s = time.monotonic() - started
            await wait_until(pilot, lambda: "did not stop" in banner(app))
            noticed_s = time.monotonic() - started
            print(f"\napp, RPC server stopped: Esc {esc_s:.2f} s, given up after {noticed_s:.2f} s")
            assert esc_s < 3
            assert f"waiting on the RPC server at {server.address}?" in banner(app)
            assert "F5" in banner(app)
            partial = screen.conversation.last_reply()
            assert screen.conversation.last_role == "assistant" and partial

            server.stop()  # the frozen server is replaced on the same port
            server.start()
            app.sampling = SamplingParams(temperature=0.0, max_tokens=8)
            await pilot.press("f5")
            await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
            assert stuck_pid is not None and gone(stuck_pid)
            assert screen.loaded is not None and screen.loaded.settings.rpc_servers
            await send(pilot, app, "are you back?")
            assert screen.conversation.turns[1].content == partial
            assert roles(app)[-2:] == ["user", "assistant"]
            assert "did not stop" not in banner(app)
    finally:
        server.kill(signal.SIGCONT)
        server.stop()
