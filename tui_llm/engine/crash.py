"""What the client says when its engine dies, goes silent or gets stuck: one line naming the
cause, from the exit status, the engine's llama.cpp log and the process state.

Pure functions of what was observed, so each wording is tested without a process to kill.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from tui_llm.engine.logsink import RPC_SERVER_GONE, abort_message, last_error_line

CRASH_TAIL_LINES = 12
"""Log lines kept with a crash (``EngineError.log_tail``)."""

_STATES = {
    "T": "it is stopped (SIGSTOP?)",
    "t": "it is stopped by a debugger",
    "D": "it is stuck in the kernel, in a driver or disk call",
}


def exit_message(
    code: int, log_tail: Sequence[str], activity: str | None, rpc_servers: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    """The line for an engine that exited with ``code`` (negative: the signal that killed it)
    while doing ``activity``, and the log lines kept with it.

    ``log_tail``: the end of its log, long enough (400 lines) to reach a GGML_ABORT's message
    above gdb's backtrace. The hint in brackets is, in order: the abort's message (an RPC
    server's dropped connection named as such), the last line that reads like an error, or for
    a SIGKILL nobody asked for, the kernel's OOM killer.
    """
    if code < 0:
        try:
            what = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"killed by signal {-code}"
    else:
        what = f"exited with status {code}"
    aborted = abort_message(log_tail) if code == -signal.SIGABRT else None
    tail = tuple(log_tail[-CRASH_TAIL_LINES:])
    hint = aborted or last_error_line(tail)
    if aborted is not None and RPC_SERVER_GONE in aborted:
        servers = ", ".join(rpc_servers) or "?"
        hint = f"the connection to the RPC server at {servers} dropped: it stopped or crashed"
    if hint is None and code == -signal.SIGKILL:
        hint = "out of memory? the kernel's OOM killer sends SIGKILL"
    while_doing = f" while {activity}" if activity else ""
    return f"the engine process {what}{while_doing}" + (f" ({hint})" if hint else ""), tail


def stall_message(stall_timeout_s: float, state: str | None) -> str:
    """The line for an engine that sent nothing (not even a heartbeat) for ``stall_timeout_s``;
    ``state`` is its process state letter (``process_state``), which may say why."""
    why = _STATES.get(state or "", "")
    message = f"the engine stopped answering: no word from it for {stall_timeout_s:g} s"
    return message + (f" ({why})" if why else "")


def stuck_message(activity: str, stop_timeout_s: float, rpc_servers: Sequence[str]) -> str:
    """The line for an engine that still heartbeats but did not end ``activity`` within
    ``stop_timeout_s`` of being asked to stop: caught in a llama.cpp call that does not
    return, most likely one waiting on an RPC server."""
    servers = ", ".join(rpc_servers)
    cause = f"waiting on the RPC server at {servers}?" if servers else "a call in llama.cpp"
    return (
        f"the engine did not stop {activity} within {stop_timeout_s:g} s of being asked:"
        f" it is stuck ({cause})"
    )


def process_state(pid: int) -> str | None:
    """A process's state letter from ``/proc/PID/stat`` (``T`` stopped, ``D`` in the kernel),
    or None where there is no /proc or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode("ascii", "replace") if fields else None
