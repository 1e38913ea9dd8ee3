"""Small helpers shared by the tests."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import ChatMessage, LoadSettings


def settings(model: Path, **overrides: object) -> LoadSettings:
    """Load settings sized for tests (small context, one thread: predictable on 2 cores)."""
    values: dict[str, object] = {"model_path": str(model), "n_ctx": 512, "n_threads": 1}
    values.update(overrides)
    return LoadSettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def engine() -> AsyncIterator[EngineClient]:
    client = EngineClient()
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def put_in_hf_cache(cache: Path, repo_id: str, files: Sequence[Path]) -> list[Path]:
    """Copy `files` into `cache` as huggingface_hub lays a download out; the snapshot paths.

    ``models--ORG--NAME/blobs/SHA256`` holds each file's bytes, and
    ``models--ORG--NAME/snapshots/COMMIT/NAME`` is a relative symlink to its blob, so the path
    that symlinks resolve to is a hash with no file name in it.
    """
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / hashlib.sha1(repo_id.encode()).hexdigest()
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    entries = []
    for file in files:
        blob = storage / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        entry = snapshot / file.name
        entry.symlink_to(os.path.relpath(blob, snapshot))
        entries.append(entry)
    return entries
