"""llama.cpp's log in the engine process: written to the log file, the tail kept for errors."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO


class LogSink:
    """Receives llama.cpp's log, writes it to the log file and keeps what the engine needs."""

    def __init__(self, log_file: IO[str]) -> None:
        self._file = log_file
        self._lock = threading.Lock()
        self._partial = ""
        self.tail: deque[str] = deque(maxlen=40)
        self._capture: list[str] | None = None

    def write(self, text: str) -> None:
        with self._lock:
            self._file.write(text)
            self._file.flush()
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self.tail.append(line)
                if self._capture is not None:
                    self._capture.append(line)

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect the complete log lines written inside the block."""
        lines: list[str] = []
        with self._lock:
            self._capture = lines
        try:
            yield lines
        finally:
            with self._lock:
                if self._partial:
                    lines.append(self._partial)
                self._capture = None

    def last_error(self) -> str | None:
        """The most recent line that reads like an error."""
        return last_error_line(self.tail)


def last_error_line(lines: Iterable[str]) -> str | None:
    """The last of ``lines`` that reads like an error (llama.cpp's log is mostly chatter).

    llama.cpp ends a refused load with a bare "failed to load model"; the cause it logged just
    before ("device RPC0 does not support split buffers") is the line returned when there is one.
    """
    generic: str | None = None
    for line in reversed(list(lines)):
        low = line.lower()
        if any(benign in low for benign in _BENIGN):
            continue
        if any(w in low for w in ("error", "failed", "invalid", "cannot", "unable", "abort")):
            if not low.rstrip().endswith("failed to load model"):
                return line.strip()
            generic = generic or line.strip()
    return generic


# Lines that read like errors and never are: a warning with a fallback ("cannot be used with
# preferred buffer type CPU_REPACK, using CPU instead", llama-model.cpp), the debug line of each
# ``llama_set_abort_callback`` (src/llama-context.cpp), which every reply calls twice, and a
# decode stopped on request (a reply stopped while its prompt was processed): ggml's status 1,
# GGML_STATUS_ABORTED, and llama_decode's 2, in the three lines llama-context.cpp logs for it.
_BENIGN = (
    "using cpu instead",
    "set_abort_callback: call",
    "compute_async failed with error 1",
    "failed to compute graph, compute status: 1",
    "failed to decode, ret = 2",
)

# GGML_ABORT and GGML_ASSERT print "FILE:LINE: MESSAGE" (ggml/src/ggml.c, ggml_abort) before the
# backtrace, which gdb may make hundreds of lines long.
_ABORT = re.compile(r"^\S+\.(?:c|cc|cpp|cu|h|m|mm):\d+: (.+)$")

RPC_SERVER_GONE = "Remote RPC server crashed or returned malformed response"
"""llama.cpp's abort when an RPC server's connection drops (ggml/src/ggml-rpc/ggml-rpc.cpp)."""


def abort_message(lines: Iterable[str]) -> str | None:
    """The message of the last GGML_ABORT or GGML_ASSERT in ``lines`` (a log's tail): what made
    llama.cpp abort the process, without the file and line; None when it did not abort."""
    for line in reversed(list(lines)):
        match = _ABORT.match(line.strip())
        if match:
            return match.group(1).strip()
    return None
