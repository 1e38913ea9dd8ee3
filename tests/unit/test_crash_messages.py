"""The one line said for an engine that died, went silent or got stuck (``engine.crash``)."""

from __future__ import annotations

import os
import signal

from tui_llm.engine.crash import (
    CRASH_TAIL_LINES,
    exit_message,
    process_state,
    stall_message,
    stuck_message,
)
from tui_llm.engine.logsink import RPC_SERVER_GONE

CHATTER = [f"llama_context: line {n}" for n in range(30)]


def test_a_kill_with_nothing_in_the_log_names_the_oom_killer() -> None:
    message, tail = exit_message(-signal.SIGKILL, CHATTER, "writing a reply", ())
    assert message == (
        "the engine process killed by SIGKILL while writing a reply"
        " (out of memory? the kernel's OOM killer sends SIGKILL)"
    )
    assert tail == tuple(CHATTER[-CRASH_TAIL_LINES:])


def test_the_last_error_line_is_the_hint_and_benign_lines_are_not() -> None:
    log = ["llama_model_load: error loading model: bad tensor", *CHATTER[:3]]
    log += ["set_abort_callback: call", "x cannot be used with CPU_REPACK, using CPU instead"]
    message, _ = exit_message(1, log, None, ())
    assert message == (
        "the engine process exited with status 1"
        " (llama_model_load: error loading model: bad tensor)"
    )
    assert exit_message(-99, CHATTER, None, ())[0] == "the engine process killed by signal 99"


def test_an_abort_far_above_its_backtrace_names_the_rpc_server() -> None:
    log = [f"/src/ggml-rpc.cpp:566: {RPC_SERVER_GONE}"] + [f"#{n} 0x0 in f ()" for n in range(60)]
    message, tail = exit_message(-signal.SIGABRT, log, "loading m.gguf", ("10.0.0.2:50052",))
    assert message == (
        "the engine process killed by SIGABRT while loading m.gguf (the connection to the RPC"
        " server at 10.0.0.2:50052 dropped: it stopped or crashed)"
    )
    assert len(tail) == CRASH_TAIL_LINES


def test_silent_and_stuck_engines_say_what_is_known() -> None:
    assert stall_message(5, "T") == (
        "the engine stopped answering: no word from it for 5 s (it is stopped (SIGSTOP?))"
    )
    assert stall_message(2.5, "R") == "the engine stopped answering: no word from it for 2.5 s"
    assert stuck_message("writing a reply", 10, ("h:1", "h:2")) == (
        "the engine did not stop writing a reply within 10 s of being asked: it is stuck"
        " (waiting on the RPC server at h:1, h:2?)"
    )
    assert stuck_message("loading m.gguf", 10, ()).endswith("it is stuck (a call in llama.cpp)")


def test_process_state_reads_proc() -> None:
    assert process_state(os.getpid()) in ("R", "S")
    assert process_state(2**22 + 12345) is None
