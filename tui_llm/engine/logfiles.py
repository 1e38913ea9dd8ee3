"""The engine's log files: one per engine process in the log directory, the last few kept."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

from tui_llm import paths

_LOGS_KEPT = 10


def new_log_path() -> Path:
    """A fresh log file for one engine process; old ones beyond the last few are removed."""
    folder = paths.log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"engine-{stamp}-{os.getpid()}-{next(_log_counter)}.log"
    old = sorted(folder.glob("engine-*.log"), key=lambda p: p.stat().st_mtime)
    for stale in old[: max(0, len(old) - _LOGS_KEPT + 1)]:
        with contextlib.suppress(OSError):
            stale.unlink()
    return path


_log_counter = itertools.count(1)


def read_log_tail(path: Path, lines: int = 12) -> list[str]:
    """The last ``lines`` lines of a log (read from its last 16 KiB); ``[]`` if unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
