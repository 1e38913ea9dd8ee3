"""Shared parts of the reliability measurements: the headless app on a real engine, RPC servers
that can be killed and brought back on the same port, polling, and process accounting."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from textual.pilot import Pilot

from tui_llm import config
from tui_llm.app import TuiLlmApp, make_app
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import SamplingParams
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.prompt import PromptInput
from tui_llm.widgets.textline import TextLine

REPO = Path(__file__).resolve().parents[2]
SIZE = (160, 48)
DIR_VARS = ("CONFIG", "DATA", "STATE", "LOG")
ENGINE_MODULE = "tui_llm.engine.worker"


@contextlib.contextmanager
def user_dirs(root: Path) -> Iterator[Path]:
    """Point the app's per-user folders at ``root`` for the block (and Hugging Face offline)."""
    saved = {key: os.environ.get(key) for key in _dir_keys()}
    for var in DIR_VARS:
        os.environ[f"TUI_LLM_{var}_DIR"] = str(root / var.lower())
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dir_keys() -> list[str]:
    return [f"TUI_LLM_{var}_DIR" for var in DIR_VARS] + ["HF_HUB_OFFLINE"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RpcServer:
    """``tui-llm rpc-server`` on a port of 127.0.0.1 that stays the same across restarts, so an
    app configured with its address finds it again after it was killed."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and return once it accepts connections; RuntimeError otherwise."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "tui_llm", "rpc-server"),
                    *("--port", str(self.port), "--threads", "1"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rpc-server exited: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rpc-server did not start listening")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait()

    def rss_bytes(self) -> int | None:
        return rss_of(self.pid)

    def stop(self) -> None:
        self.kill()
        self.proc = None

    def __enter__(self) -> RpcServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_of(pid: int | None) -> int | None:
    """A process's resident memory in bytes, or None where it is gone."""
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def open_fds() -> int:
    """File descriptors this process holds open."""
    return len(os.listdir("/proc/self/fd"))


def engine_processes() -> list[int]:
    """Live engine processes started by this process (zombies not counted)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if ENGINE_MODULE in child.cmdline():
                found.append(child.pid)
    return found


def end_process(pid: int | None) -> None:
    """Make sure a process a measurement stopped or signalled is gone (SIGCONT, SIGKILL)."""
    if pid is None:
        return
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def build_app(
    model: Path | None,
    sampling: SamplingParams | None = None,
    stall_timeout_s: float | None = None,
    store: Any = None,
    **overrides: Any,
) -> TuiLlmApp:
    """The app as ``tui-llm`` builds it, with no settings saved and small, one-thread loads."""
    engine = EngineClient()
    if stall_timeout_s is not None:
        engine.stall_timeout_s = stall_timeout_s
    app = make_app(
        config.Settings(),
        engine,
        None,
        None,
        initial_model=model,
        save_settings=False,
        store=store,
    )
    app.load_overrides = {"n_ctx": 512, "n_threads": 1, "offload": 0, **overrides}
    app.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=16, seed=1)
    return app


async def poll(
    pilot: Pilot[Any], predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01
) -> float:
    """Seconds until ``predicate`` holds, checked every ``step_s`` while the app runs;
    TimeoutError after ``timeout_s``."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"not within {timeout_s:g} s: {predicate}")
        await pilot.pause(step_s)
    return time.perf_counter() - started


def banner(app: TuiLlmApp) -> str:
    return str(app.main_screen.query_one("#banner", TextLine).render())


def status_line(app: TuiLlmApp) -> str:
    return str(app.main_screen.query_one("StatusBar", TextLine).render())


def shown_messages(app: TuiLlmApp) -> list[tuple[str, str]]:
    """(role, text) of each message on screen."""
    return [(view.role, view.content) for view in app.main_screen.query_one(ChatView).messages()]


async def submit(pilot: Pilot[Any], app: TuiLlmApp, text: str) -> None:
    """Put ``text`` in the message box and press Enter."""
    prompt = app.main_screen.query_one(PromptInput)
    prompt.focus()
    await pilot.pause()
    prompt.text = text
    await pilot.press("enter")


async def send(pilot: Pilot[Any], app: TuiLlmApp, text: str, timeout_s: float = 120.0) -> None:
    """Send ``text`` and wait for the whole reply."""
    screen = app.main_screen
    turns = len(screen.conversation.turns)
    await submit(pilot, app, text)
    await poll(pilot, lambda: len(screen.conversation.turns) > turns, timeout_s, 0.02)
    await poll(pilot, lambda: not screen.generating, timeout_s, 0.02)


async def wait_loaded(pilot: Pilot[Any], app: TuiLlmApp, timeout_s: float = 120.0) -> float:
    screen = app.main_screen
    return await poll(
        pilot, lambda: screen.loaded is not None and not screen.model_loading, timeout_s, 0.02
    )
