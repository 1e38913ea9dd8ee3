"""The Hugging Face cache layout: where a repository's files live, and which are complete models.

``HUB_CACHE/models--ORG--NAME/`` holds ``blobs/ETAG`` (file contents), ``snapshots/COMMIT/FILE``
(a relative symlink to the blob per file) and ``refs/BRANCH`` (the commit a branch pointed at),
as huggingface_hub reads and writes it. The listing is huggingface_hub's `scan_cache_dir`;
writing the two small pieces of the layout a download adds (a snapshot link, a ref) is here,
because the library's own helpers for them are private.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tui_llm.catalog.hub import group_gguf_files
from tui_llm.catalog.hub_client import HubSettings

__all__ = [
    "CachedGGUF",
    "is_commit_hash",
    "link_snapshot",
    "list_cached_ggufs",
    "repo_folder_name",
    "write_ref",
]

logger = logging.getLogger(__name__)

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
    from huggingface_hub.file_download import repo_folder_name as library_folder_name

    return library_folder_name(repo_id=repo_id, repo_type="model")


def list_cached_ggufs(settings: HubSettings | None = None) -> list[CachedGGUF]:
    """Complete GGUF models in the Hugging Face cache, by repository; works offline.

    huggingface_hub's `scan_cache_dir` lists the snapshot entries, so a download in progress
    (``blobs/*.incomplete``, no snapshot entry yet) is not there; a split model is listed once,
    by its first shard, only when every shard is there; vision projectors (mmproj) are not
    models. A repository the scan finds broken (a snapshot link to a missing blob) is left out
    whole, as `hf cache scan` reports it; the reason goes to the log.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir = (settings or HubSettings.from_env()).cache_dir
    try:
        scan = scan_cache_dir(cache_dir)
    except (CacheNotFound, ValueError, OSError):
        return []
    for warning in scan.warnings:
        logger.info("left out of the cache listing: %s", warning)
    scanned_root = scan.cache_dir or cache_dir
    found: list[CachedGGUF] = []
    seen_blobs: set[Path] = set()  # one blob in two snapshots counts once
    for repo in sorted(scan.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.commit_hash):
            files = {
                entry.file_path.relative_to(revision.snapshot_path).as_posix(): entry
                for entry in revision.files
                if entry.file_name.lower().endswith(".gguf")
            }
            sizes: dict[str, int | None] = {name: f.size_on_disk for name, f in files.items()}
            for option in group_gguf_files(
                repo.repo_id, revision.commit_hash, revision.commit_hash, sizes
            ):
                entries = [files[name] for name in option.filenames]
                if entries[0].blob_path in seen_blobs:
                    continue
                seen_blobs.add(entries[0].blob_path)
                # Paths under the cache folder as configured (the scan resolves symlinks in it).
                paths = tuple(
                    cache_dir / entry.file_path.relative_to(scanned_root) for entry in entries
                )
                found.append(
                    CachedGGUF(
                        repo_id=repo.repo_id,
                        commit=revision.commit_hash,
                        filename=option.filenames[0],
                        path=paths[0],
                        shard_paths=paths,
                        size_bytes=sum(entry.size_on_disk for entry in entries),
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
    """Record the commit a branch or tag pointed at (nothing to record for a commit hash).

    Raises ``ValueError`` for a revision that would name a file outside ``refs/`` (``..``, an
    absolute path); branch names with ``/`` (``feature/x``) stay in ``refs/feature/x``."""
    if is_commit_hash(revision) or revision == commit:
        return
    parts = revision.split("/")
    if "\\" in revision or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"refusing the unsafe revision {revision!r}")  # it names a file in refs/
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not ref.exists() or ref.read_text() != commit:
        ref.write_text(commit)
