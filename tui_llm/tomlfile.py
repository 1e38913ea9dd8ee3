"""A TOML file a person edits and a program writes: values merged into the document so comments,
key order and unknown keys survive, written atomically. Shared by the settings file; no
knowledge of what the keys mean.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import tomlkit


def merge_values(
    container: MutableMapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """Write into `container` each value of `new` that differs from what the file meant (`old`)."""
    for key in [*new, *(k for k in old if k not in new)]:
        value, previous = new.get(key), old.get(key)
        if isinstance(value, dict):
            table = container.get(key)
            if not isinstance(table, MutableMapping):
                if value == previous:
                    continue
                table = tomlkit.table(is_super_table=key == "profiles")
                container[key] = table
                previous = {}
            merge_values(table, previous if isinstance(previous, dict) else {}, value)
        elif value is None:
            if previous is not None and key in container:
                del container[key]
        elif value != previous:
            container[key] = toml_item(value)


def toml_item(value: Any) -> Any:
    """A TOML item; lists of more than one string go one per line."""
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(value)
        return array.multiline(len(value) > 1)
    return value


STALE_TEMP_S = 60.0
"""A temp file of ``atomic_write`` this old was left by a writer that was killed."""


def atomic_write(path: Path, text: str) -> None:
    """Write text to a temp file beside `path`, fsync it, then os.replace it into place.

    Temp files left beside `path` by a writer killed mid-write (older than ``STALE_TEMP_S``, so a
    concurrent writer's own is never touched) are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp_name, stat.S_IMODE(path.stat().st_mode))
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def remove_stale_temps(path: Path, older_than_s: float = STALE_TEMP_S) -> int:
    """Remove ``atomic_write``'s temp files beside `path` older than `older_than_s` seconds;
    how many were removed."""
    removed = 0
    now = time.time()
    for temp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > older_than_s:
                temp.unlink()
                removed += 1
    return removed
