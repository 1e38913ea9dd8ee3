"""One file's bytes from the Hub: its metadata (`get_hf_file_metadata`), then a resumable GET.

The GET goes through huggingface_hub's HTTP client (`get_session`, the client `hub_session`
installs) with a loop of our own: it appends to a partial file from where the last try
stopped (a Range request), reports every chunk as it arrives, and stops at once on cancel by
shutting the response's socket. `hub_download` explains, with measured figures, why this loop
and not `hf_hub_download`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tui_llm.catalog.hub_cache import is_commit_hash
from tui_llm.catalog.hub_client import (
    LIBRARY_NAME,
    LIBRARY_VERSION,
    HubError,
    HubSettings,
    network_error,
)
from tui_llm.catalog.metadata import human_bytes

__all__ = ["ByteCounter", "CancelToken", "RemoteFile", "remote_file", "transfer"]

_SAFE_ETAG = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z._-]*$")


class CancelToken:
    """A cancel flag that also shuts the socket in use, so a blocked read returns at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        """Safe from any thread; the operation using this token raises HubError("cancelled")."""
        self._event.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise HubError("cancelled", "download cancelled")

    def attach(self, sock: socket.socket | None) -> None:
        """Register the socket that `cancel` shuts (None to forget it)."""
        with self._lock:
            self._sock = sock
        if sock is not None and self._event.is_set():
            self.cancel()


class ByteCounter(Protocol):
    """Where `transfer` reports bytes: `skip` for bytes already on disk, `add` for new ones."""

    def skip(self, n_bytes: int) -> None: ...

    def add(self, n_bytes: int) -> None: ...


@dataclass(frozen=True)
class RemoteFile:
    """A file on the Hub at a commit: its blob name (ETag), size in bytes and download URL."""

    filename: str
    url: str
    etag: str
    commit: str
    size: int | None


def remote_file(settings: HubSettings, repo_id: str, revision: str, filename: str) -> RemoteFile:
    """The file's commit, blob name, size and download URL: `get_hf_file_metadata` (a HEAD).

    The HEAD follows redirects on the Hub's origin only; a redirect to a CDN carries the file's
    metadata itself, and its location is where the bytes are fetched from, without the token.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    from tui_llm.catalog.hub_session import hub_call

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=settings.endpoint)
    what = f"{repo_id}/{filename}"
    with hub_call(settings, what=what, repo_id=repo_id):
        metadata = get_hf_file_metadata(
            url,
            token=settings.token_or_none,
            timeout=settings.timeout_s,
            library_name=LIBRARY_NAME,
            library_version=LIBRARY_VERSION,
            endpoint=settings.endpoint,
        )
    commit, etag = metadata.commit_hash, metadata.etag
    if not commit or not etag:
        raise HubError(
            "protocol",
            f"{what}: the answer has no commit or ETag header (is HF_ENDPOINT a Hugging Face Hub?)",
        )
    if not is_commit_hash(commit) or not _SAFE_ETAG.match(etag):
        raise HubError("protocol", f"{what}: the Hub sent a malformed commit or ETag header")
    return RemoteFile(
        filename=filename,
        url=urllib.parse.urljoin(url, metadata.location),
        etag=etag,
        commit=commit,
        size=metadata.size,
    )


def _content_range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes "):
        return None
    start, _, _ = value[len("bytes ") :].partition("-")
    return int(start) if start.isdigit() else None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme, parts.hostname, parts.port)


def _request_headers(settings: HubSettings, url: str, have: int) -> dict[str, str]:
    """User agent, the token (only to the Hub's own origin, never to a CDN), Range to resume."""
    headers = {"User-Agent": f"{LIBRARY_NAME}/{LIBRARY_VERSION}", "Accept-Encoding": "identity"}
    if settings.token and _origin(url) == _origin(settings.endpoint):
        headers["Authorization"] = f"Bearer {settings.token}"
    if have:
        headers["Range"] = f"bytes={have}-"
    return headers


def _socket_of(response: Any) -> Any:
    """The response's socket (httpcore's "network_stream" extension), for `CancelToken`."""
    stream = response.extensions.get("network_stream")
    return stream.get_extra_info("socket") if stream is not None else None


def transfer(
    remote: RemoteFile,
    partial: Path,
    settings: HubSettings,
    cancel: CancelToken,
    counter: ByteCounter,
) -> None:
    """Fetch the file into `partial`, resuming from the bytes already there.

    Raises HubError: "cancelled" (the caller removes `partial`), "interrupted" or "timeout"
    (`partial` keeps what arrived, for the next try), or the Hub's answer as the error.
    """
    import httpx2
    from huggingface_hub import get_session, hf_raise_for_status

    from tui_llm.catalog.hub_session import hub_call

    have = partial.stat().st_size if partial.exists() else 0
    if remote.size is not None and have > remote.size:
        partial.unlink()
        have = 0
    if remote.size is not None and have == remote.size:
        counter.skip(have)
        return
    headers = _request_headers(settings, remote.url, have)
    cut_short = False
    with (
        hub_call(settings, what=remote.filename),
        get_session().stream("GET", remote.url, headers=headers) as response,
    ):
        cancel.attach(_socket_of(response))
        try:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            resumed = response.status_code == 206 and (
                _content_range_start(response.headers.get("Content-Range")) == have
            )
            if not resumed:
                have = 0
            counter.skip(have)
            with partial.open("ab" if resumed else "wb") as out:
                for chunk in response.iter_bytes():
                    cancel.raise_if_cancelled()
                    out.write(chunk)
                    have += len(chunk)
                    counter.add(len(chunk))
                cancel.raise_if_cancelled()
        except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError):
            cancel.raise_if_cancelled()
            cut_short = True
        except httpx2.TransportError as exc:
            cancel.raise_if_cancelled()
            raise network_error(
                exc, remote.url, settings, during=f"downloading {remote.filename}"
            ) from None
        finally:
            cancel.attach(None)
    if cut_short or (remote.size is not None and have != remote.size):
        host = urllib.parse.urlsplit(remote.url).netloc
        raise HubError(
            "interrupted",
            f"the connection to {host} was cut after {human_bytes(have)}"
            f"{f' of {human_bytes(remote.size)}' if remote.size is not None else ''} "
            f"of {remote.filename}: try again to resume",
        )
