"""A Hugging Face Hub on 127.0.0.1 for tests: the endpoints tui-llm uses, serving generated GGUFs.

It answers the model search (`/api/models`), the model info with file sizes
(`/api/models/REPO[/revision/REV]?blobs=true`), the file tree (`/api/models/REPO/tree/REV`) and
file resolve (`/REPO/resolve/REV/FILE`, HEAD and GET with Range) with the headers
`hf_hub_download` reads (X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size, Content-Length,
Accept-Ranges, X-Error-Code). Faults are switched on by tests through attributes: a status for
the search, a stall before answering, a throttle, a cut after some bytes, a stall mid-body.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GRANTED_TOKEN = "hf_test_granted_0123456789"
INVALID_TOKEN = "hf_test_invalid_9876543210"
_SEND_CHUNK = 16 * 1024


@dataclass
class FakeRepo:
    """A model repository; `fault_status` makes every request about it answer that status."""

    repo_id: str
    files: dict[str, bytes]
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2025-01-15T10:00:00.000Z"
    gguf: dict[str, object] | None = None
    tags: tuple[str, ...] = ("gguf",)
    gated: bool = False
    private: bool = False
    fault_status: int | None = None
    fault_message: str = "Internal Error"
    cdn_redirect: bool = False

    @property
    def commit(self) -> str:
        return hashlib.sha1(self.repo_id.encode()).hexdigest()

    @staticmethod
    def etag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


@dataclass
class LoggedRequest:
    """One request as received; `headers` keys in canonical case (``X-Hf-...``, ``Range``)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Transfer:
    """One file body the server started to send."""

    path: str
    start: int
    total: int
    sent: int = 0
    finished: bool = False
    aborted: bool = False
    cut: bool = False


@dataclass
class FakeHub:
    """The server's repositories, its request log and the faults tests switch on."""

    repos: dict[str, FakeRepo]
    url: str = ""
    requests: list[LoggedRequest] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    search_status: int | None = None
    stall_s: float = 0.0
    throttle_bytes_per_s: int | None = None
    cut_after_bytes: int | None = None
    cuts_remaining: int = 0
    stall_body_after_bytes: int | None = None
    stall_body_s: float = 0.0
    _end_stall: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Clear the logs and every fault (the fixture does this before each test)."""
        with self._lock:
            self.requests.clear()
            self.transfers.clear()
        self.search_status = None
        self.stall_s = 0.0
        self.throttle_bytes_per_s = None
        self.cut_after_bytes = None
        self.cuts_remaining = 0
        self.stall_body_after_bytes = None
        self.stall_body_s = 0.0
        self._end_stall.clear()

    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"hub": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True).start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.url

    def end_stall(self) -> None:
        """Let a transfer held by `stall_body_after_bytes` go on before `stall_body_s` is up."""
        self._end_stall.set()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def paths(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, predicate: object, timeout_s: float = 10.0) -> bool:
        """Poll `predicate()` until true or the timeout; the server works in other threads."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return bool(predicate())


def _canonical(header: str) -> str:
    """One spelling per header name (``authorization`` -> ``Authorization``): names are
    case-insensitive, and httpx2 sends the ones huggingface_hub sets in lower case."""
    return "-".join(part.capitalize() for part in header.split("-"))


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read `hub.requests` instead."""

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    # -- routing ---------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        headers = {_canonical(name): value for name, value in self.headers.items()}
        self.hub.log(LoggedRequest(method, path, query, headers))
        if self.hub.stall_s:
            time.sleep(self.hub.stall_s)
        try:
            if self._token() == INVALID_TOKEN:
                self._error(401, "", "Invalid credentials in Authorization header")
                return
            if path == "/api/models":
                self._search(query)
            elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path):
                self._tree(match[1], match[2])
            elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                self._info(match[1], match[2] or "main", "blobs" in query)
            elif match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                self._resolve(method, match[1], match[2], match[3])
            elif match := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
                self._cdn(method, match[1])
            else:
                self._error(404, "", "Not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- answers ---------------------------------------------------------------------------

    def _json(
        self,
        status: int,
        body: object,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(
        self, status: int, code: str, message: str, reason: bool = False, **headers: str
    ) -> None:
        """An error answer; with ``reason``, the message is the status line's phrase too."""
        # Header values go out as Latin-1: UTF-8 bytes sent as they are, as a real server would.
        extra = {"X-Error-Message": message.encode().decode("latin-1"), **headers}
        if code:
            extra["X-Error-Code"] = code
        phrase = extra["X-Error-Message"] if reason else None
        self._json(status, {"error": message}, extra, phrase)

    def _token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None

    def _repo_or_error(self, repo_id: str, revision: str, *, files: bool) -> FakeRepo | None:
        """The repository if this request may see it at ``revision``; else answers the error."""
        repo = self.hub.repos.get(repo_id)
        token = self._token()
        if repo is None or (repo.private and token != GRANTED_TOKEN):
            status = 401 if token is None else 404
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        if repo.fault_status == 429:
            self._error(429, "", "Too many requests", **{"Retry-After": "7"})
            return None
        if repo.fault_status is not None:
            # The message is the status line's reason phrase too (UTF-8 bytes as Latin-1).
            self._error(repo.fault_status, "", repo.fault_message, reason=True)
            return None
        if files and repo.gated and token != GRANTED_TOKEN:
            status = 401 if token is None else 403
            message = (
                f"Access to model {repo_id} is restricted and you are not in the authorized list."
            )
            self._error(status, "GatedRepo", message)
            return None
        if revision not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    def _search(self, query: dict[str, list[str]]) -> None:
        if self.hub.search_status is not None:
            status = self.hub.search_status
            headers = {"Retry-After": "7"} if status == 429 else {}
            self._error(status, "", "search failed", **headers)
            return
        words = (query.get("search") or [""])[0].lower().split()
        filters = query.get("filter", [])
        repos = [
            repo
            for repo in self.hub.repos.values()
            if not repo.private
            and all(word in repo.repo_id.lower() for word in words)
            and all(tag in repo.tags for tag in filters)
        ]
        if (query.get("sort") or [""])[0] == "downloads":
            repos.sort(key=lambda repo: repo.downloads, reverse=True)
        limit = int((query.get("limit") or ["1000"])[0])
        expand = query.get("expand") or ["downloads", "likes", "lastModified", "tags"]
        self._json(200, [self._fields(repo, expand) for repo in repos[:limit]])

    def _fields(self, repo: FakeRepo, expand: list[str]) -> dict[str, object]:
        values: dict[str, object] = {
            "downloads": repo.downloads,
            "likes": repo.likes,
            "lastModified": repo.last_modified,
            "gated": "manual" if repo.gated else False,
            "tags": list(repo.tags),
        }
        if repo.gguf is not None:
            values["gguf"] = repo.gguf
        item: dict[str, object] = {"_id": repo.commit[:24], "id": repo.repo_id}
        item.update({name: values[name] for name in expand if name in values})
        return item

    def _info(self, repo_id: str, revision: str, blobs: bool) -> None:
        repo = self._repo_or_error(repo_id, revision, files=False)
        if repo is None:
            return
        siblings = []
        for name, data in repo.files.items():
            sibling: dict[str, object] = {"rfilename": name}
            if blobs:
                sibling.update(
                    size=len(data),
                    blobId=hashlib.sha1(data).hexdigest(),
                    lfs={"sha256": repo.etag(data), "size": len(data), "pointerSize": 134},
                )
            siblings.append(sibling)
        body = {
            **self._fields(repo, ["downloads", "likes", "lastModified", "gated", "tags"]),
            "modelId": repo.repo_id,
            "sha": repo.commit,
            "private": repo.private,
            "siblings": siblings,
        }
        if repo.gguf is not None:
            body["gguf"] = repo.gguf
        self._json(200, body)

    def _tree(self, repo_id: str, revision: str) -> None:
        repo = self._repo_or_error(repo_id, revision, files=False)
        if repo is None:
            return
        entries = [
            {
                "type": "file",
                "path": name,
                "size": len(data),
                "oid": hashlib.sha1(data).hexdigest(),
                "lfs": {"oid": repo.etag(data), "size": len(data), "pointerSize": 134},
            }
            for name, data in repo.files.items()
        ]
        self._json(200, entries)

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        repo = self._repo_or_error(repo_id, revision, files=True)
        if repo is None:
            return
        commit_header = {"X-Repo-Commit": repo.commit}
        data = repo.files.get(filename)
        if data is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist", **commit_header)
            return
        etag = repo.etag(data)
        linked = {
            **commit_header,
            "X-Linked-Etag": f'"{etag}"',
            "X-Linked-Size": str(len(data)),
            "ETag": f'"{etag}"',
        }
        if repo.cdn_redirect:
            # Like the Hub's LFS files: the file's metadata on a redirect to another host.
            port = urllib.parse.urlsplit(self.hub.url).port
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/cdn/{etag}")
            for name, value in linked.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(method, data, linked)

    def _cdn(self, method: str, etag: str) -> None:
        for repo in self.hub.repos.values():
            for data in repo.files.values():
                if repo.etag(data) == etag:
                    self._send_file(method, data, {"ETag": f'"{etag}"'})
                    return
        self._error(404, "", "no such object")

    def _send_file(self, method: str, data: bytes, headers: dict[str, str]) -> None:
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match and method == "GET":
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = int(match[2]) + 1 if match[2] else len(data)
            data, status = data[start:end], 206
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        if status == 206:
            total = int(headers.get("X-Linked-Size", start + len(data)))
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{total}")
        self.end_headers()
        if method == "GET":
            self._stream(data, start)

    def _stream(self, data: bytes, start: int) -> None:
        hub = self.hub
        transfer = Transfer(self.path, start, len(data))
        with hub._lock:
            hub.transfers.append(transfer)
        began = time.monotonic()
        try:
            while transfer.sent < len(data):
                cut_after = hub.cut_after_bytes
                if cut_after is not None and hub.cuts_remaining > 0 and transfer.sent >= cut_after:
                    hub.cuts_remaining -= 1
                    transfer.cut = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                after = hub.stall_body_after_bytes
                if after is not None and transfer.sent >= after and hub.stall_body_s:
                    hub.stall_body_after_bytes = None  # once: the retry goes through
                    hub._end_stall.wait(hub.stall_body_s)
                chunk = data[transfer.sent : transfer.sent + _SEND_CHUNK]
                self.wfile.write(chunk)
                transfer.sent += len(chunk)
                rate = hub.throttle_bytes_per_s
                if rate:
                    ahead = transfer.sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            self.wfile.flush()
            transfer.finished = True
        except OSError:
            transfer.aborted = True
            self.close_connection = True


def build_fake_hub(folder: Path) -> FakeHub:
    """Generate the repositories' GGUF files in `folder` (once per session) and describe them."""
    from tui_llm.catalog.generate import write_llama_gguf

    def model(name: str, **kwargs: object) -> bytes:
        return write_llama_gguf(folder / name, n_layer=2, seed=1, **kwargs).read_bytes()  # type: ignore[arg-type]

    tiny = {
        f"TinyLlama-{quant}.gguf": model(f"tiny-{quant}.gguf", n_embd=64, tensor_type=kind)
        for quant, kind in (("Q8_0", "q8_0"), ("F16", "f16"), ("F32", "f32"))
    }
    tiny_meta = {"total": 400_000, "architecture": "llama", "context_length": 2048}
    first_shard = write_llama_gguf(
        folder / "Split-Q8_0.gguf", n_layer=2, n_embd=64, seed=1, tensor_type="q8_0", n_shards=3
    )
    shards = sorted(folder.glob("Split-Q8_0-*-of-00003.gguf"))
    assert shards[0] == first_shard and len(shards) == 3, shards
    big = model("big-F32.gguf", n_embd=256, tensor_type="f32")
    repos = [
        FakeRepo(
            "acme/TinyLlama-GGUF", {**tiny, "README.md": b"# TinyLlama\n"}, 5000, 42, gguf=tiny_meta
        ),
        FakeRepo(
            "acme/Split-GGUF",
            {
                **{path.name: path.read_bytes() for path in shards},
                "Split-F16.gguf": tiny["TinyLlama-F16.gguf"],
                "mmproj-Split-F16.gguf": tiny["TinyLlama-Q8_0.gguf"],
            },
            900,
            7,
            gguf=tiny_meta,  # the same shape as TinyLlama, cut in three
        ),
        FakeRepo("acme/Big-GGUF", {"Big-F32.gguf": big}, 300, 3, gguf=tiny_meta),
        FakeRepo(
            "acme/Gated-GGUF", {"Gated-Q8_0.gguf": tiny["TinyLlama-Q8_0.gguf"]}, 800, 9, gated=True
        ),
        FakeRepo(
            "acme/Private-GGUF", {"Private-Q8_0.gguf": tiny["TinyLlama-Q8_0.gguf"]}, 1, private=True
        ),
        FakeRepo(
            "acme/Busy-GGUF", {"Busy-Q8_0.gguf": tiny["TinyLlama-Q8_0.gguf"]}, 50, fault_status=429
        ),
        FakeRepo(
            "acme/Broken-GGUF",
            {"Broken-Q8_0.gguf": tiny["TinyLlama-Q8_0.gguf"]},
            40,
            fault_status=500,
        ),
        FakeRepo("acme/Bad-GGUF", {"Bad-Q4_K_M.gguf": b"<html>rate limited</html>\n" * 400}, 30),
        FakeRepo(
            "acme/Cdn-GGUF", {"Cdn-Q8_0.gguf": tiny["TinyLlama-Q8_0.gguf"]}, 20, cdn_redirect=True
        ),
        FakeRepo(
            "acme/tinyllama-safetensors",
            {"model.safetensors": b"\0" * 64},
            99_999,
            tags=("safetensors",),
        ),
    ]
    return FakeHub({repo.repo_id: repo for repo in repos})
