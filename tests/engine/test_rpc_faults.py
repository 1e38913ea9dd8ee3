"""RPC devices that are not there: a closed port, an unknown host, a port out of range, and a
server that accepts the connection and never answers (as one busy with another client does).
Each gives one line naming the endpoint, never llama.cpp's abort or a wait for ever."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cancel_load_in_flight, replies_after_a_new_engine, settings
from tests.ui.test_app import build, wait_until
from tests.unit.test_cli import tui_llm
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.rpc_endpoint import (
    HELLO_TIMEOUT_S,
    EndpointError,
    parse_endpoint,
    port_taken_reason,
)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    "text",
    [
        "localhost",
        ":50052",
        "host:",
        "host:0",
        "host:65536",
        "host:99999999999",
        "a b:1",
        "http://host:1",
        "::1:50052",
        "[::1]:50052",
        "host:12ab",
        "-x:1",
    ],
)
def test_malformed_endpoints_are_refused(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def test_good_endpoints_parse() -> None:
    assert str(parse_endpoint(" 127.0.0.1:50052 ")) == "127.0.0.1:50052"
    assert parse_endpoint("gpu-box.lan:1").port == 1
    assert parse_endpoint("gpu_box:65535").host == "gpu_box"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("chat", "demo", "--prompt", "x", "--rpc", "127.0.0.1:70000"), "1-65535"),
        (("chat", "demo", "--prompt", "x", "--rpc", "127.0.0.1"), "HOST:PORT"),
        (("rpc-server", "--port", "70000"), "1 to 65535"),
    ],
)
def test_a_bad_endpoint_is_a_usage_error(args: tuple[str, ...], said: str) -> None:
    result = tui_llm(*args, timeout=60)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr


def test_chat_to_a_closed_port_says_it_cannot_reach_it(model_8l: Path) -> None:
    port = closed_port()
    result = tui_llm("chat", str(model_8l), "--prompt", "x", "--rpc", f"127.0.0.1:{port}")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot reach the RPC server at 127.0.0.1:{port}" in lines[0]
    assert "connection refused" in lines[0] and "SIGABRT" not in lines[0]


async def test_an_unknown_host_leaves_the_engine_as_it_was(model_8l: Path) -> None:
    client = EngineClient()
    await client.start()
    try:
        await client.load(settings(model_8l))
        pid = client.pid
        with pytest.raises(EngineError) as caught:
            await client.load(settings(model_8l, rpc_servers=("no-such-host.invalid:50052",)))
        assert caught.value.kind == "bad_request"
        assert "cannot reach the RPC server at no-such-host.invalid:50052" in str(caught.value)
        assert "unknown host" in str(caught.value)
        assert client.pid == pid and client.loaded is not None  # nothing was sent to it
    finally:
        await client.close()


def test_rpc_server_on_a_taken_port_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert port_taken_reason("127.0.0.1", port) is not None
        result = tui_llm("rpc-server", "--port", str(port), timeout=60)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert lines == [f"tui-llm rpc-server: port {port} on 127.0.0.1 is taken by another process"]


@pytest.mark.rpc
async def test_a_server_that_never_answers_times_out_and_the_engine_is_replaced(
    model_8l: Path,
) -> None:
    client = EngineClient()
    await client.start()
    first_pid = client.pid
    try:
        with silent_server() as endpoint:
            started = time.monotonic()
            with pytest.raises(EngineError) as caught:
                await client.load(settings(model_8l, rpc_servers=(endpoint,)))
            waited_s = time.monotonic() - started
        print(f"\nsilent RPC server: load refused after {waited_s:.1f} s")
        assert caught.value.kind == "not_answering"
        assert f"the RPC server at {endpoint} accepted the connection but did not answer" in str(
            caught.value
        )
        assert HELLO_TIMEOUT_S <= waited_s < HELLO_TIMEOUT_S + 20
        assert not client.running  # its thread still waits on the server: replaced next time
        await replies_after_a_new_engine(client, model_8l, first_pid)
    finally:
        await client.close()


@pytest.mark.rpc
async def test_a_load_cancelled_while_a_server_never_answers_still_replaces_the_engine(
    model_8l: Path,
) -> None:
    """Cancelled during the hello, the load's end is awaited in the background: the hello's
    timeout then gives the engine up (a thread of it still waits on the server), as it does
    for a load that was not cancelled."""
    client = EngineClient()
    crashes: list[EngineError] = []
    client.on_crash = crashes.append
    await client.start()
    first_pid = client.pid
    try:
        with silent_server() as endpoint:
            await cancel_load_in_flight(client, settings(model_8l, rpc_servers=(endpoint,)))
            started = time.monotonic()
            while not crashes and time.monotonic() - started < HELLO_TIMEOUT_S + 30:
                await asyncio.sleep(0.05)
        assert crashes, "the engine was kept"
        assert crashes[0].kind == "not_answering"
        assert f"the RPC server at {endpoint} accepted the connection" in str(crashes[0])
        assert not client.running
        await replies_after_a_new_engine(client, model_8l, first_pid)
    finally:
        await client.close()


@pytest.mark.rpc
def test_chat_to_a_server_that_never_answers_ends_with_one_line(model_8l: Path) -> None:
    with silent_server() as endpoint:
        result = tui_llm("chat", str(model_8l), "--prompt", "x", "--rpc", endpoint)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"the RPC server at {endpoint} accepted the connection but did not answer" in lines[0]


@pytest.mark.rpc
@pytest.mark.parametrize("case", ["closed port", "silent server"])
async def test_the_app_says_which_rpc_server_failed(model_8l: Path, case: str) -> None:
    with silent_server() as silent:
        if case == "closed port":
            endpoint, said = f"127.0.0.1:{closed_port()}", "cannot reach"
        else:
            endpoint, said = silent, "did not answer"
        app = build(model_8l, rpc_servers=(endpoint,))
        async with app.run_test(size=(160, 48)) as pilot:
            screen = app.main_screen

            def messages() -> list[str]:
                return [str(n.message) for n in app._notifications if said in str(n.message)]

            await wait_until(pilot, lambda: bool(messages()), timeout=HELLO_TIMEOUT_S + 30)
            await wait_until(pilot, lambda: not screen.model_loading)
            assert endpoint in messages()[0] and "SIGABRT" not in messages()[0]
            assert screen.loaded is None
