"""HTTP to the Hugging Face Hub with the standard library: settings read per call, one error type.

We speak the Hub's few endpoints ourselves instead of going through huggingface_hub's client,
because its behaviour is wrong for an interactive app: `HfApi.list_models` retries connection
errors, 429 and 5xx five times with backoff (about 23 s before a search box could say
"connection refused"), `hf_hub_download` reads 10 MiB chunks (so progress and cancel act every
10 MiB) and may take the Xet path, which does not honour cancellation, and the library reads
HF_ENDPOINT, HF_HUB_OFFLINE and the cache path once, at import. Downloads still land in the
shared Hugging Face cache layout (see hub_download), so every other tool finds them.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tui_llm import __version__

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT_S = 10.0
_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})
_MAX_REDIRECTS = 5
_MAX_JSON_BYTES = 64 * 1024 * 1024
_USER_AGENT = f"tui-llm/{__version__}"

HubErrorKind = Literal[
    "offline",
    "connection",
    "timeout",
    "interrupted",
    "not_found",
    "unauthorized",
    "gated",
    "forbidden",
    "rate_limited",
    "server",
    "http",
    "protocol",
    "invalid",
    "disk",
    "cancelled",
]


class HubError(Exception):
    """A Hub operation that failed; `kind` says which way, `str()` is one line for the user."""

    def __init__(self, kind: HubErrorKind, message: str) -> None:
        self.kind: HubErrorKind = kind
        self.message = " ".join(message.split())
        super().__init__(self.message)

    def __reduce__(self) -> tuple[type[HubError], tuple[HubErrorKind, str]]:
        return (HubError, (self.kind, self.message))


def _env_flag(environ: Mapping[str, str], *names: str) -> bool:
    return any(environ.get(name, "").strip().upper() in _TRUE_VALUES for name in names)


def _env_path(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def _env_seconds(environ: Mapping[str, str], name: str) -> float:
    try:
        seconds = float(environ.get(name, ""))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return seconds if seconds > 0 else DEFAULT_TIMEOUT_S


def hf_home(environ: Mapping[str, str] | None = None) -> Path:
    """HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (as huggingface_hub)."""
    env = os.environ if environ is None else environ
    if env.get("HF_HOME"):
        return _env_path(env["HF_HOME"])
    xdg = env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return _env_path(os.path.join(xdg, "huggingface"))


def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else HF_HOME/hub."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return _env_path(env[name])
    return hf_home(env) / "hub"


def _user_token(environ: Mapping[str, str]) -> str | None:
    """HF_TOKEN, else the token `hf auth login` saved; read, never written or logged."""
    if _env_flag(environ, "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        return None
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        token = environ.get(name, "").strip()
        if token:
            return token
    token_path = (
        _env_path(environ["HF_TOKEN_PATH"])
        if environ.get("HF_TOKEN_PATH")
        else hf_home(environ) / "token"
    )
    try:
        token = token_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


@dataclass(frozen=True)
class HubSettings:
    """Where the Hub and the cache are, read from the environment when an operation starts.

    The token is left out of `repr` so that it never reaches a log or a traceback.
    """

    endpoint: str
    cache_dir: Path
    offline: bool
    timeout_s: float
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        """HF_ENDPOINT, HF_HUB_CACHE/HF_HOME, HF_HUB_OFFLINE, HF_HUB_DOWNLOAD_TIMEOUT, HF_TOKEN."""
        env = os.environ if environ is None else environ
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=hub_cache_dir(env),
            offline=_env_flag(env, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
            timeout_s=_env_seconds(env, "HF_HUB_DOWNLOAD_TIMEOUT"),
            token=_user_token(env),
        )

    def require_online(self, what: str) -> None:
        """Raise the offline HubError before any network use when HF_HUB_OFFLINE is set."""
        if self.offline:
            raise HubError(
                "offline",
                f"offline mode (HF_HUB_OFFLINE is set): cannot {what}; local models still work",
            )


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


@dataclass
class HubResponse:
    """An open response; the caller reads `body` and must `close()` it."""

    status: int
    reason: str
    headers: http.client.HTTPMessage
    url: str
    body: http.client.HTTPResponse
    connection: http.client.HTTPConnection

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def close(self) -> None:
        self.body.close()
        self.connection.close()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme, parts.hostname or "", parts.port)


def _tls_context() -> ssl.SSLContext:
    """The OS trust store through truststore where installed (as huggingface_hub's client)."""
    try:
        import truststore
    except ImportError:
        return ssl.create_default_context()
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _connection(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for `url` (through the environment's proxy, if any) and the request target."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(host):
        proxy = None
    context = _tls_context()
    if not proxy:
        if parts.scheme == "https":
            secure = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
            return secure, target
        return http.client.HTTPConnection(host, port, timeout=timeout_s), target
    proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    proxy_headers: dict[str, str] = {}
    if proxy_parts.username:
        user = urllib.parse.unquote(proxy_parts.username)
        secret = urllib.parse.unquote(proxy_parts.password or "")
        credentials = base64.b64encode(f"{user}:{secret}".encode()).decode()
        proxy_headers["Proxy-Authorization"] = f"Basic {credentials}"
    proxy_host, proxy_port = proxy_parts.hostname or "", proxy_parts.port or 8080
    if parts.scheme == "https":
        tunnel = http.client.HTTPSConnection(
            proxy_host, proxy_port, timeout=timeout_s, context=context
        )
        tunnel.set_tunnel(host, port, headers=proxy_headers)
        return tunnel, target
    plain = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout_s)
    return plain, url


def network_error(exc: BaseException, url: str, settings: HubSettings, *, during: str) -> HubError:
    """The HubError for a socket-level failure while `during` ("connect", "download", ...)."""
    host = urllib.parse.urlsplit(url).netloc
    if isinstance(exc, TimeoutError):
        return HubError(
            "timeout", f"{host} did not answer within {settings.timeout_s:g} s while {during}"
        )
    if isinstance(exc, socket.gaierror):
        return HubError("connection", f"cannot resolve {host}: check the address and the network")
    if isinstance(exc, ConnectionRefusedError):
        return HubError("connection", f"cannot connect to {host}: connection refused")
    if isinstance(exc, ssl.SSLError):
        return HubError("connection", f"TLS error talking to {host}: {exc.reason or exc}")
    if isinstance(exc, (http.client.IncompleteRead, ConnectionError, http.client.HTTPException)):
        return HubError("interrupted", f"the connection to {host} was cut while {during}")
    detail = getattr(exc, "strerror", None) or exc.__class__.__name__
    return HubError("connection", f"cannot reach {host} while {during}: {detail}")


def status_error(
    response: HubResponse, settings: HubSettings, *, what: str, repo_id: str | None = None
) -> HubError:
    """The HubError for an HTTP error status, using the Hub's X-Error-Code header."""
    status, code = response.status, response.header("X-Error-Code") or ""
    repo_url = f"{settings.endpoint}/{repo_id}" if repo_id else settings.endpoint
    login_hint = (
        "the token in use has no access"
        if settings.token
        else "log in with `hf auth login` or set HF_TOKEN"
    )
    if code == "GatedRepo":
        if settings.token:
            return HubError(
                "gated",
                f"{repo_id or what} is gated: accept its license at {repo_url} with the account "
                "of your token, then try again",
            )
        return HubError(
            "gated",
            f"{repo_id or what} is gated: log in (`hf auth login` or HF_TOKEN) and accept its "
            f"license at {repo_url}",
        )
    if code == "RepoNotFound":
        return HubError(
            "not_found",
            f"no repository {repo_id or what} on {settings.endpoint} "
            f"(if it is private: {login_hint})",
        )
    if code == "RevisionNotFound":
        return HubError("not_found", f"{what}: no such revision on {settings.endpoint}")
    if code == "EntryNotFound" or status == 404:
        return HubError("not_found", f"{what}: not found on {settings.endpoint}")
    if status == 401 and settings.token:
        return HubError(
            "unauthorized",
            f"{what}: the Hub refused the token in use (401): check HF_TOKEN or log in again "
            "with `hf auth login`",
        )
    if status == 401:
        return HubError("unauthorized", f"{what}: the Hub needs a login (401): {login_hint}")
    if status == 403:
        return HubError("forbidden", f"{what}: access denied (403): {login_hint}")
    if status == 429:
        retry_after = response.header("Retry-After")
        wait = f"in {retry_after} s" if retry_after and retry_after.isdigit() else "later"
        return HubError("rate_limited", f"the Hub is limiting requests (429): try again {wait}")
    if status >= 500:
        return HubError(
            "server",
            f"{urllib.parse.urlsplit(response.url).netloc} had a server error "
            f"({status} {response.reason}): try again later",
        )
    return HubError("http", f"{what}: HTTP {status} {response.reason}")


def open_url(
    method: str,
    url: str,
    settings: HubSettings,
    *,
    what: str,
    repo_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    cross_host_redirects: bool = True,
    cancel: CancelToken | None = None,
    ok_statuses: tuple[int, ...] = (200, 206),
) -> HubResponse:
    """Send one request, following redirects, and return the open response or raise HubError.

    The token goes only to the endpoint's own origin: a redirect to a CDN drops it. With
    `cross_host_redirects=False` a redirect off the endpoint's origin is returned as is (the Hub
    puts a file's metadata on that redirect). Nothing is retried: a retry is the user's choice.
    """
    endpoint_origin = _origin(settings.endpoint)
    for _ in range(_MAX_REDIRECTS + 1):
        request_headers = {
            "User-Agent": _USER_AGENT,
            "Accept-Encoding": "identity",
            **(headers or {}),
        }
        if settings.token and _origin(url) == endpoint_origin:
            request_headers["Authorization"] = f"Bearer {settings.token}"
        connection, target = _connection(url, settings.timeout_s)
        try:
            connection.connect()
            if cancel is not None:
                cancel.attach(connection.sock)
                cancel.raise_if_cancelled()
            connection.request(method, target, headers=request_headers)
            body = connection.getresponse()
        except HubError:
            connection.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            if cancel is not None:
                cancel.raise_if_cancelled()
            raise network_error(exc, url, settings, during=f"requesting {what}") from None
        response = HubResponse(body.status, body.reason, body.headers, url, body, connection)
        location = response.header("Location")
        if 300 <= response.status < 400 and location:
            next_url = urllib.parse.urljoin(url, location)
            if not cross_host_redirects and _origin(next_url) != endpoint_origin:
                return response
            response.close()
            url = next_url
            continue
        if response.status in ok_statuses:
            return response
        response.close()
        raise status_error(response, settings, what=what, repo_id=repo_id)
    raise HubError("protocol", f"{what}: more than {_MAX_REDIRECTS} redirects")


def get_json(url: str, settings: HubSettings, *, what: str, repo_id: str | None = None) -> object:
    """GET a Hub API URL and decode its JSON body."""
    response = open_url("GET", url, settings, what=what, repo_id=repo_id, ok_statuses=(200,))
    try:
        raw = response.body.read(_MAX_JSON_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise network_error(exc, url, settings, during=f"reading {what}") from None
    finally:
        response.close()
    if len(raw) > _MAX_JSON_BYTES:
        raise HubError("protocol", f"{what}: the answer is larger than {_MAX_JSON_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise HubError(
            "protocol",
            f"{what}: {urllib.parse.urlsplit(url).netloc} did not answer with JSON "
            "(is HF_ENDPOINT a Hugging Face Hub?)",
        ) from None
