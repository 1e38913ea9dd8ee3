"""Downloads from the Hub into the shared Hugging Face cache, with progress, cancel and resume.

The files land where `hf_hub_download` puts them (``models--ORG--NAME/blobs/ETAG``, a snapshot
symlink per file, ``refs/REVISION``, under huggingface_hub's own lock file), so every other tool
on the machine shares them. A model already in the cache at the listed commit is found with
`try_to_load_from_cache` and costs no request; otherwise `get_hf_file_metadata` (a HEAD of each
file's resolve URL) gives the commit, the blob name, the size and where the bytes are. The bytes
come through huggingface_hub's HTTP client (the one `hub_session` installs) in a transfer loop
of our own (`hub_transfer`), not `hf_hub_download` in a child process, for what was measured
on the fake Hub: huggingface_hub 2.4.0, a 34.2 MiB file sent at 8 MB/s, medians of 3 rounds
(``python -m benchmarks.bench_hub_download``; the table is in docs/benchmarks.md):

- Resume, the deciding reason. `hf_hub_download` writes to a temporary file of its own per call
  and deletes it when the call fails; a killed child leaves it behind (10 MiB here, never used
  again, still there after the next download) and the next run starts from byte 0. Our loop
  kept what had arrived (12 MiB, after a cut or a kill of ``tui-llm pull``) and the next try
  asked for the rest with a Range request. Within one call
  the library resumes a cut connection itself, but only from its last whole 10 MiB chunk, after
  a 1 s pause, up to five times, and without telling the caller (6.2 s in all, against 4.6 s
  for our error and the user's retry).
- Progress: our loop reports 10 updates/s, the first 0.05 s after the start; the child 0.95/s,
  the first after 1.7 s: the library reports (and writes) in 10 MiB chunks, so a model under
  10 MiB shows no progress until it is done and a slow link shows a bar that jumps.
- Start: the child needs 0.41 s (a Python process, the library's import) before its first byte;
  our loop 0.05 s.
- Cancel: no reason either way. Our cancel returns in 1 ms (the token shuts the socket) and the
  server sees the connection closed after 4 ms; killing the child takes 5 ms and 7 ms.
- Xet: not measurable on the fake Hub. `hf_hub_download` takes the Xet path for Xet-backed
  files (hf_xet's native threads, which only a kill stops); our loop always fetches the plain
  HTTP location the Hub's resolve answer gives, so it forgoes Xet's chunk deduplication.

A partial file is kept as ``ETAG.incomplete`` (never linked into a snapshot, so never listed as
a model) and resumed with a Range request on the next try; a cancel removes it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from tui_llm.catalog.gguf_reader import GGUFError
from tui_llm.catalog.hub import QuantOption, check_repo_id
from tui_llm.catalog.hub_cache import is_commit_hash, link_snapshot, repo_folder_name, write_ref
from tui_llm.catalog.hub_client import HubError, HubSettings
from tui_llm.catalog.hub_transfer import CancelToken, RemoteFile, remote_file, transfer
from tui_llm.catalog.metadata import ModelInfo, human_bytes, read_model_info

__all__ = ["CancelToken", "DownloadProgress", "DownloadRequest", "DownloadResult", "download"]

_PROGRESS_INTERVAL_S = 0.1
_SPEED_WINDOW_S = 3.0
_LOCK_POLL_S = 0.2


@dataclass(frozen=True)
class DownloadRequest:
    """What to download: one model (all its shards) from a repository at a revision.

    With `commit` set the files come from that commit (the one the listing showed) and
    `revision` names the ref to record for it in the cache, as `hf_hub_download` does.
    """

    repo_id: str
    filenames: tuple[str, ...]
    revision: str = "main"
    commit: str | None = None
    size_bytes: int | None = None

    @classmethod
    def for_option(cls, option: QuantOption) -> DownloadRequest:
        return cls(
            option.repo_id, option.filenames, option.revision, option.commit, option.size_bytes
        )

    @property
    def label(self) -> str:
        return f"{self.repo_id}:{self.filenames[0].rsplit('/', 1)[-1]}"


@dataclass(frozen=True)
class DownloadResult:
    """A downloaded, validated model: the path to load (the first shard) and its header facts."""

    request: DownloadRequest
    commit: str
    model_path: Path
    shard_paths: tuple[Path, ...]
    info: ModelInfo


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes done of all the request's files; speed and time left are None until measurable."""

    job_id: int
    request: DownloadRequest
    filename: str
    done_bytes: int
    total_bytes: int | None
    bytes_per_s: float | None
    eta_s: float | None


class _Meter:
    """Turns byte counts into throttled progress events with speed and time left."""

    def __init__(
        self,
        request: DownloadRequest,
        job_id: int,
        total: int | None,
        on_progress: Callable[[DownloadProgress], None] | None,
    ) -> None:
        self.request, self.job_id, self.total = request, job_id, total
        self.on_progress = on_progress
        self.done = 0
        self.filename = request.filenames[0]
        self._samples: deque[tuple[float, int]] = deque()
        self._transferred = 0
        self._last_emit = 0.0

    def skip(self, n_bytes: int) -> None:
        """Count bytes already on disk (not transferred now, so not in the speed)."""
        self.done += n_bytes

    def add(self, n_bytes: int) -> None:
        self.done += n_bytes
        self._transferred += n_bytes
        now = time.monotonic()
        self._samples.append((now, self._transferred))
        while len(self._samples) > 2 and now - self._samples[0][0] > _SPEED_WINDOW_S:
            self._samples.popleft()
        if now - self._last_emit >= _PROGRESS_INTERVAL_S:
            self.emit()

    def emit(self) -> None:
        self._last_emit = time.monotonic()
        if self.on_progress is None:
            return
        speed = None
        if len(self._samples) >= 2:
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
            speed = (b1 - b0) / (t1 - t0) if t1 > t0 else None
        eta = None
        if speed and self.total is not None:
            eta = max(0.0, (self.total - self.done) / speed)
        self.on_progress(
            DownloadProgress(
                self.job_id, self.request, self.filename, self.done, self.total, speed, eta
            )
        )


def _check_filename(filename: str) -> None:
    """Refuse names that would land outside the snapshot folder (as hf_hub_download does)."""
    parts = filename.split("/")
    if "\\" in filename or filename.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise HubError("protocol", f"refusing the unsafe file name {filename!r}")


def _acquire(lock: FileLock, cancel: CancelToken) -> None:
    """Take huggingface_hub's per-blob lock, waiting for another downloader but not past cancel."""
    while True:
        cancel.raise_if_cancelled()
        try:
            lock.acquire(timeout=_LOCK_POLL_S)
            return
        except LockTimeout:
            continue


def _check_disk(folder: Path, needed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise HubError(
            "disk",
            f"not enough disk space in {folder}: {human_bytes(needed)} needed, "
            f"{human_bytes(free)} free",
        )


def _fetch_one(
    remote: RemoteFile,
    storage: Path,
    settings: HubSettings,
    cancel: CancelToken,
    meter: _Meter,
) -> Path:
    """Put one file in the cache (unless it is there) and return its snapshot path."""
    pointer = storage / "snapshots" / remote.commit / remote.filename
    blob = storage / "blobs" / remote.etag
    meter.filename = remote.filename
    if pointer.is_file():
        meter.skip(pointer.stat().st_size)
        return pointer
    lock_path = settings.cache_dir / ".locks" / storage.name / f"{remote.etag}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    _acquire(lock, cancel)
    partial = blob.with_name(f"{blob.name}.incomplete")
    try:
        if not blob.is_file():
            try:
                transfer(remote, partial, settings, cancel, meter)
            except HubError as error:
                if error.kind == "cancelled":
                    partial.unlink(missing_ok=True)
                raise
            os.replace(partial, blob)
        else:
            meter.skip(blob.stat().st_size)
        link_snapshot(pointer, blob)
    except OSError as exc:
        raise HubError("disk", f"cannot write {remote.filename} to the cache: {exc}") from None
    finally:
        lock.release()
    return pointer


def _discard(pointers: list[Path], storage: Path) -> None:
    """Remove files that are not a valid model, so they are neither listed nor loaded."""
    blobs = [pointer.resolve() for pointer in pointers]
    for pointer in pointers:
        pointer.unlink(missing_ok=True)
    for blob in blobs:
        if blob.parent == (storage / "blobs").resolve():
            blob.unlink(missing_ok=True)


def _cached_pointers(request: DownloadRequest, settings: HubSettings) -> list[Path] | None:
    """Every file's snapshot path when the cache has them all at the request's commit, else None.

    Only for a commit hash: a branch may have moved since, which only the Hub can tell.
    """
    from huggingface_hub import try_to_load_from_cache

    if request.commit is None or not is_commit_hash(request.commit):
        return None
    found: list[Path] = []
    for filename in request.filenames:
        path = try_to_load_from_cache(
            request.repo_id, filename, cache_dir=settings.cache_dir, revision=request.commit
        )
        if not isinstance(path, str):
            return None
        found.append(Path(path))
    return found


def _fetch_all(
    request: DownloadRequest,
    storage: Path,
    settings: HubSettings,
    cancel: CancelToken,
    meter_for: Callable[[int | None], _Meter],
) -> tuple[str, list[Path], _Meter]:
    """Fetch every file of the request that the cache lacks; (commit, snapshot paths, meter)."""
    remotes: list[RemoteFile] = []
    for name in request.filenames:
        cancel.raise_if_cancelled()
        revision = request.commit or request.revision
        remotes.append(remote_file(settings, request.repo_id, revision, name))
    sizes = [r.size for r in remotes]
    meter = meter_for(None if None in sizes else sum(s or 0 for s in sizes))
    missing = sum(
        (r.size or 0)
        for r in remotes
        if not (storage / "blobs" / r.etag).is_file()
        and not (storage / "snapshots" / r.commit / r.filename).is_file()
    )
    _check_disk(storage / "blobs", missing)
    pointers = [_fetch_one(remote, storage, settings, cancel, meter) for remote in remotes]
    return remotes[0].commit, pointers, meter


def download(
    request: DownloadRequest,
    *,
    settings: HubSettings | None = None,
    cancel: CancelToken | None = None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    job_id: int = 0,
) -> DownloadResult:
    """Download a model's files into the Hugging Face cache and check it is a valid GGUF model.

    Raises HubError; kind "invalid" when the bytes are not a GGUF model (the files are removed
    from the cache), "cancelled" after `cancel.cancel()` (the partial file is removed). After
    any other error the partial file is kept and the next call resumes it. A model the cache
    already has at `request.commit` is returned without any request, offline too.
    """
    hub = settings or HubSettings.from_env()
    token = cancel or CancelToken()
    check_repo_id(request.repo_id)
    if not request.filenames:
        raise HubError("not_found", f"{request.repo_id}: no file to download")
    for filename in request.filenames:
        _check_filename(filename)
    if any(part in ("", ".", "..") for part in request.revision.split("/")) or (
        "\\" in request.revision
    ):
        raise HubError("protocol", f"refusing the unsafe revision {request.revision!r}")
    storage = hub.cache_dir / repo_folder_name(request.repo_id)

    def meter_for(total: int | None) -> _Meter:
        return _Meter(request, job_id, total, on_progress)

    try:
        cached = _cached_pointers(request, hub)
        if cached is not None and request.commit is not None:
            commit, pointers = request.commit, cached
            meter = meter_for(sum(p.stat().st_size for p in pointers))
            meter.skip(meter.total or 0)
        else:
            hub.require_online(f"download {request.label}")
            commit, pointers, meter = _fetch_all(request, storage, hub, token, meter_for)
        write_ref(storage, request.revision, commit)
    except OSError as exc:
        raise HubError(
            "disk", f"cannot write to the cache {hub.cache_dir}: {exc.strerror or exc}"
        ) from None
    meter.emit()
    try:
        info = read_model_info(pointers[0])
    except (GGUFError, OSError) as exc:
        _discard(pointers, storage)
        raise HubError(
            "invalid",
            f"{request.label} is not a valid GGUF model "
            f"({exc.problem if isinstance(exc, GGUFError) else exc.strerror or exc}); "
            "it was removed from the cache",
        ) from None
    return DownloadResult(request, commit, pointers[0], tuple(pointers), info)
