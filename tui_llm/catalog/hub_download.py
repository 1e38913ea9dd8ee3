"""Downloads from the Hub into the shared Hugging Face cache, with progress, cancel and resume.

The files land where `hf_hub_download` puts them (``models--ORG--NAME/blobs/ETAG``, a snapshot
symlink per file, ``refs/REVISION``, under huggingface_hub's own lock file), so every other tool
on the machine shares them; we transfer the bytes ourselves over plain HTTP, never through Xet,
because a Xet transfer runs in native threads that do not stop when asked, and cancel must
really close the connection. A partial file is kept as ``ETAG.incomplete`` (never linked into a
snapshot, so never listed as a model) and resumed with a Range request on the next try.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as LockTimeout

from tui_llm.catalog.gguf_reader import GGUFError
from tui_llm.catalog.hub import QuantOption, check_repo_id
from tui_llm.catalog.hub_cache import is_commit_hash, link_snapshot, repo_folder_name, write_ref
from tui_llm.catalog.hub_http import (
    CancelToken,
    HubError,
    HubSettings,
    network_error,
    open_url,
)
from tui_llm.catalog.metadata import ModelInfo, human_bytes, read_model_info

__all__ = ["CancelToken", "DownloadProgress", "DownloadRequest", "DownloadResult", "download"]

_CHUNK_BYTES = 256 * 1024
_PROGRESS_INTERVAL_S = 0.1
_SPEED_WINDOW_S = 3.0
_LOCK_POLL_S = 0.2
_SAFE_ETAG = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z._-]*$")


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


@dataclass(frozen=True)
class _RemoteFile:
    filename: str
    url: str
    etag: str
    commit: str
    size: int | None


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


def _normalize_etag(etag: str | None) -> str | None:
    """huggingface_hub's rule: drop a weak-validator prefix and the quotes."""
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"') or None


def _resolve_url(settings: HubSettings, repo_id: str, revision: str, filename: str) -> str:
    return (
        f"{settings.endpoint}/{urllib.parse.quote(repo_id, safe='/')}/resolve/"
        f"{urllib.parse.quote(revision, safe='')}/{urllib.parse.quote(filename)}"
    )


def _remote_file(
    settings: HubSettings, request: DownloadRequest, filename: str, cancel: CancelToken
) -> _RemoteFile:
    """HEAD the file's resolve URL for its commit, blob name (ETag), size and download URL."""
    url = _resolve_url(settings, request.repo_id, request.commit or request.revision, filename)
    what = f"{request.repo_id}/{filename}"
    response = open_url(
        "HEAD",
        url,
        settings,
        what=what,
        repo_id=request.repo_id,
        cross_host_redirects=False,
        cancel=cancel,
        ok_statuses=(200,),
    )
    response.close()
    cancel.attach(None)
    commit = response.header("X-Repo-Commit")
    etag = _normalize_etag(response.header("X-Linked-Etag") or response.header("ETag"))
    if not commit or not etag:
        raise HubError(
            "protocol",
            f"{what}: the answer has no commit or ETag header (is HF_ENDPOINT a Hugging Face Hub?)",
        )
    if not is_commit_hash(commit) or not _SAFE_ETAG.match(etag):
        raise HubError("protocol", f"{what}: the Hub sent a malformed commit or ETag header")
    size_text = response.header("X-Linked-Size") or (
        None if response.status != 200 else response.header("Content-Length")
    )
    location = response.header("Location")
    return _RemoteFile(
        filename=filename,
        url=urllib.parse.urljoin(response.url, location) if location else response.url,
        etag=etag,
        commit=commit,
        size=int(size_text) if size_text and size_text.isdigit() else None,
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


def _content_range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes "):
        return None
    start, _, _ = value[len("bytes ") :].partition("-")
    return int(start) if start.isdigit() else None


def _transfer(
    remote: _RemoteFile,
    partial: Path,
    settings: HubSettings,
    cancel: CancelToken,
    meter: _Meter,
) -> None:
    """Fetch the file into `partial`, resuming from the bytes already there."""
    have = partial.stat().st_size if partial.exists() else 0
    if remote.size is not None and have > remote.size:
        partial.unlink()
        have = 0
    what = f"{remote.filename}"
    if remote.size is not None and have == remote.size:
        meter.skip(have)
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    response = open_url(
        "GET",
        remote.url,
        settings,
        what=what,
        headers=headers,
        cancel=cancel,
        ok_statuses=(200, 206),
    )
    try:
        if (
            response.status == 206
            and _content_range_start(response.header("Content-Range")) == have
        ):
            mode = "ab"
        else:
            have, mode = 0, "wb"
        meter.skip(have)
        with partial.open(mode) as out:
            while True:
                try:
                    chunk = response.body.read1(_CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    cancel.raise_if_cancelled()
                    raise network_error(
                        exc, remote.url, settings, during=f"downloading {remote.filename}"
                    ) from None
                cancel.raise_if_cancelled()
                if not chunk:
                    break
                out.write(chunk)
                have += len(chunk)
                meter.add(len(chunk))
        cut_short = bool(response.body.length)
    finally:
        cancel.attach(None)
        response.close()
    if cut_short or (remote.size is not None and have != remote.size):
        host = urllib.parse.urlsplit(remote.url).netloc
        raise HubError(
            "interrupted",
            f"the connection to {host} was cut after {human_bytes(have)}"
            f"{f' of {human_bytes(remote.size)}' if remote.size is not None else ''} "
            f"of {remote.filename}: try again to resume",
        )


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
    remote: _RemoteFile,
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
                _transfer(remote, partial, settings, cancel, meter)
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


def _discard(pointers: list[Path], remotes: list[_RemoteFile], storage: Path) -> None:
    """Remove files that are not a valid model, so they are neither listed nor loaded."""
    for pointer in pointers:
        pointer.unlink(missing_ok=True)
    for remote in remotes:
        (storage / "blobs" / remote.etag).unlink(missing_ok=True)


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
    any other error the partial file is kept and the next call resumes it.
    """
    hub = settings or HubSettings.from_env()
    token = cancel or CancelToken()
    hub.require_online(f"download {request.label}")
    check_repo_id(request.repo_id)
    if not request.filenames:
        raise HubError("not_found", f"{request.repo_id}: no file to download")
    for filename in request.filenames:
        _check_filename(filename)
    storage = hub.cache_dir / repo_folder_name(request.repo_id)
    remotes = [_remote_file(hub, request, name, token) for name in request.filenames]
    commit = remotes[0].commit
    sizes = [r.size for r in remotes]
    total = None if None in sizes else sum(s or 0 for s in sizes)
    missing = sum(
        (r.size or 0)
        for r in remotes
        if not (storage / "blobs" / r.etag).is_file()
        and not (storage / "snapshots" / r.commit / r.filename).is_file()
    )
    meter = _Meter(request, job_id, total, on_progress)
    try:
        _check_disk(storage / "blobs", missing)
        pointers = [_fetch_one(remote, storage, hub, token, meter) for remote in remotes]
        write_ref(storage, request.revision, commit)
    except OSError as exc:
        raise HubError(
            "disk", f"cannot write to the cache {hub.cache_dir}: {exc.strerror or exc}"
        ) from None
    meter.emit()
    try:
        info = read_model_info(pointers[0])
    except (GGUFError, OSError) as exc:
        _discard(pointers, remotes, storage)
        raise HubError(
            "invalid",
            f"{request.label} is not a valid GGUF model "
            f"({exc.problem if isinstance(exc, GGUFError) else exc.strerror or exc}); "
            "it was removed from the cache",
        ) from None
    return DownloadResult(request, commit, pointers[0], tuple(pointers), info)
