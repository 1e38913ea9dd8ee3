"""The Hugging Face cache layout: where a repository's files live, and which are complete models.

``HUB_CACHE/models--ORG--NAME/`` holds ``blobs/ETAG`` (file contents), ``snapshots/COMMIT/FILE``
(a relative symlink to the blob per file) and ``refs/BRANCH`` (the commit a branch pointed at),
as huggingface_hub reads and writes it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tui_llm.catalog.hub import group_gguf_files
from tui_llm.catalog.hub_http import HubSettings

__all__ = [
    "CachedGGUF",
    "is_commit_hash",
    "link_snapshot",
    "list_cached_ggufs",
    "repo_folder_name",
    "write_ref",
]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class CachedGGUF:
    """A complete GGUF model in the Hugging Face cache (the first shard's path for split ones)."""

    repo_id: str
    commit: str
    filename: str
    path: Path
    shard_paths: tuple[Path, ...]
    size_bytes: int


def repo_folder_name(repo_id: str) -> str:
    """The cache folder of a model repository: models--ORG--NAME (huggingface_hub's layout)."""
    return "--".join(("models", *repo_id.split("/")))


def _repo_id_from_folder(folder_name: str) -> str | None:
    kind, _, rest = folder_name.partition("--")
    return rest.replace("--", "/") if kind == "models" and rest else None


def list_cached_ggufs(settings: HubSettings | None = None) -> list[CachedGGUF]:
    """Complete GGUF models in the Hugging Face cache; works offline.

    Only snapshot entries that resolve to a complete blob count: a download in progress lives in
    `blobs/*.incomplete` and has no snapshot entry yet, and a split model is listed (once, by its
    first shard) only when every shard is there. Vision projectors (mmproj) are not models.
    """
    cache_dir = (settings or HubSettings.from_env()).cache_dir
    found: list[CachedGGUF] = []
    seen: set[tuple[int, int]] = set()  # (device, inode): one blob in two snapshots counts once
    try:
        repo_dirs = sorted(cache_dir.iterdir())
    except OSError:
        return []
    for repo_dir in repo_dirs:
        repo_id = _repo_id_from_folder(repo_dir.name)
        snapshots = repo_dir / "snapshots"
        if repo_id is None or not snapshots.is_dir():
            continue
        for snapshot in sorted(p for p in snapshots.iterdir() if p.is_dir()):
            entries = {
                path.relative_to(snapshot).as_posix(): path
                for path in snapshot.rglob("*")
                if path.name.lower().endswith(".gguf") and path.is_file()
            }
            for option in group_gguf_files(
                repo_id, snapshot.name, snapshot.name, dict.fromkeys(entries)
            ):
                paths = tuple(entries[name] for name in option.filenames)
                first = paths[0].stat()
                if (first.st_dev, first.st_ino) in seen:
                    continue
                seen.add((first.st_dev, first.st_ino))
                found.append(
                    CachedGGUF(
                        repo_id=repo_id,
                        commit=snapshot.name,
                        filename=option.filenames[0],
                        path=paths[0],
                        shard_paths=paths,
                        size_bytes=sum(p.stat().st_size for p in paths),
                    )
                )
    return found


def is_commit_hash(revision: str) -> bool:
    return bool(_COMMIT.match(revision))


def link_snapshot(pointer: Path, blob: Path) -> None:
    """Point the snapshot entry at the blob: a relative symlink, or a copy where links fail."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:
        shutil.copyfile(blob, pointer)


def write_ref(storage: Path, revision: str, commit: str) -> None:
    """Record the commit a branch or tag pointed at (nothing to record for a commit hash)."""
    if is_commit_hash(revision) or revision == commit:
        return
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not ref.exists() or ref.read_text() != commit:
        ref.write_text(commit)
