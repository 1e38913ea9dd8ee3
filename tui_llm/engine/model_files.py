"""Paths llama.cpp can open: a model whose file name is not valid UTF-8 still loads.

llama-cpp-python encodes ``model_path`` as UTF-8 before llama.cpp opens it, so a path that came
from the file system as undecodable bytes (Python's ``surrogateescape``: a name written in Latin-1
on an older system, say) raises ``UnicodeEncodeError`` although the file is fine. For such a path
the engine loads through a symbolic link with an ASCII name in a private temporary folder, one
link per shard of a split model (named as llama.cpp looks for the other shards:
``STEM-00002-of-00003.gguf`` beside the first). The links live only for the load (llama.cpp maps
the files by then); a folder left by an engine that was killed mid-load is removed by the next
engine that needs one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SPLIT = re.compile(rb"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
_PREFIX = "tui-llm-model-"


def needs_alias(path: str) -> bool:
    """Whether llama-cpp-python cannot pass ``path`` to llama.cpp as it is (not UTF-8)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@contextmanager
def openable_path(path: str) -> Iterator[str]:
    """``path`` itself, or (not UTF-8) a link to it llama.cpp can open, for the ``with`` block.

    Raises ``OSError`` when the links cannot be made.
    """
    if not needs_alias(path):
        yield path
        return
    _remove_stale_folders()
    folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    try:
        yield str(_link_model(os.fsencode(path), folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _link_model(raw: bytes, folder: Path) -> Path:
    parent, name = os.path.split(os.path.abspath(raw))
    split = _SPLIT.match(name)
    if split is None:
        link = folder / "model.gguf"
        os.symlink(os.path.join(parent, name), link)
        return link
    count = split["count"]
    first = folder / f"model-{split['index'].decode()}-of-{count.decode()}.gguf"
    for index in range(1, int(count) + 1):
        shard = b"%s-%05d-of-%s.gguf" % (split["stem"], index, count)
        os.symlink(
            os.path.join(parent, shard), folder / f"model-{index:05d}-of-{count.decode()}.gguf"
        )
    return first


def _remove_stale_folders() -> None:
    """Remove the link folders of engines that are gone (killed mid-load)."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{_PREFIX}*"):
        pid_text = folder.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
