"""The Hub through huggingface_hub: settings read per call, and one error type.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE, the cache path and the token file once, at
import. tui-llm reads them when each operation starts (`HubSettings.from_env`) and hands the
endpoint and the token to `HfApi` and `get_hf_file_metadata` on each call, so a change applies
without a restart. Every library call runs inside `hub_session.hub_call`, which installs
tui-llm's HTTP client into the library (a timeout on every request, no hidden retries) and turns
the library's typed errors (gated, repository, revision or file not found, HTTP status,
transport) into one `HubError` whose text is one line for the user.

huggingface_hub itself is imported on first use, not when the app starts.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tui_llm import __version__

if TYPE_CHECKING:
    import httpx2
    from huggingface_hub import HfApi

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_TIMEOUT_S",
    "LIBRARY_NAME",
    "HubCall",
    "HubError",
    "HubErrorKind",
    "HubSettings",
    "current_call",
    "hub_api",
    "hub_cache_dir",
    "network_error",
    "timeout_from_env",
]

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT_S = 10.0
LIBRARY_NAME = "tui-llm"
LIBRARY_VERSION = __version__
_TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})

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


def timeout_from_env() -> float:
    """HF_HUB_DOWNLOAD_TIMEOUT in seconds (10 when unset or not a positive number), read now."""
    return _env_seconds(os.environ, "HF_HUB_DOWNLOAD_TIMEOUT")


def _hf_home(environ: Mapping[str, str]) -> Path:
    """HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (as huggingface_hub)."""
    if environ.get("HF_HOME"):
        return _env_path(environ["HF_HOME"])
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return _env_path(os.path.join(xdg, "huggingface"))


def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else HF_HOME/hub."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return _env_path(env[name])
    return _hf_home(env) / "hub"


def _user_token(environ: Mapping[str, str]) -> str | None:
    """HF_TOKEN, else the token `hf auth login` saved; read, never written or logged.

    Read here on each call: the library's own lookup uses the token path it computed at import.
    """
    if _env_flag(environ, "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        return None
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        token = environ.get(name, "").strip()
        if token:
            return token
    token_path = (
        _env_path(environ["HF_TOKEN_PATH"])
        if environ.get("HF_TOKEN_PATH")
        else _hf_home(environ) / "token"
    )
    try:
        token = token_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


@dataclass(frozen=True)
class HubSettings:
    """Where the Hub and the cache are, read from the environment when an operation starts.

    `timeout_s` bounds connecting and each wait for data, in seconds. The token is left out of
    `repr` so that it never reaches a log or a traceback.
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

    @property
    def token_or_none(self) -> str | bool:
        """The token for huggingface_hub calls: False (never its import-time lookup) when none."""
        return self.token or False


def hub_api(settings: HubSettings) -> HfApi:
    """An `HfApi` for these settings' endpoint and token (cheap: build one per operation)."""
    from huggingface_hub import HfApi

    return HfApi(
        endpoint=settings.endpoint,
        token=settings.token_or_none,
        library_name=LIBRARY_NAME,
        library_version=LIBRARY_VERSION,
    )


@dataclass(frozen=True)
class HubCall:
    """The operation in progress in this thread: its settings, and what it is about."""

    settings: HubSettings
    what: str
    repo_id: str | None


_CURRENT_CALL: ContextVar[HubCall | None] = ContextVar("tui_llm_hub_call", default=None)


def current_call() -> HubCall | None:
    """The `hub_call` this thread is in, if any (the HTTP client reads its timeout here)."""
    return _CURRENT_CALL.get()


def enter_call(call: HubCall) -> Token[HubCall | None]:
    """Make ``call`` the current one (``hub_session.hub_call``); returns what ``leave_call``
    takes."""
    return _CURRENT_CALL.set(call)


def leave_call(token: Token[HubCall | None]) -> None:
    _CURRENT_CALL.reset(token)


def _host(url: str | None, settings: HubSettings) -> str:
    return urllib.parse.urlsplit(url or settings.endpoint).netloc


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def network_error(
    exc: BaseException, url: str | None, settings: HubSettings, *, during: str
) -> HubError:
    """The HubError for a transport failure (an httpx error) while `during` ("requesting x")."""
    import httpx2

    host = _host(url, settings)
    causes = list(_causes(exc))
    if isinstance(exc, httpx2.TimeoutException) or any(isinstance(c, TimeoutError) for c in causes):
        return HubError(
            "timeout", f"{host} did not answer within {settings.timeout_s:g} s while {during}"
        )
    if any(isinstance(c, socket.gaierror) for c in causes):
        return HubError("connection", f"cannot resolve {host}: check the address and the network")
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return HubError("connection", f"cannot connect to {host}: connection refused")
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        return HubError("connection", f"TLS error talking to {host}: {tls.reason or tls}")
    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError)):
        return HubError("interrupted", f"the connection to {host} was cut while {during}")
    detail = next((c.strerror for c in causes if isinstance(c, OSError) and c.strerror), None)
    return HubError(
        "connection", f"cannot reach {host} while {during}: {detail or exc.__class__.__name__}"
    )


def library_error(
    exc: Exception, settings: HubSettings, *, what: str, repo_id: str | None
) -> HubError | None:
    """The HubError for one of huggingface_hub's errors, or None for anything else."""
    import httpx2
    from huggingface_hub import errors

    repo_url = f"{settings.endpoint}/{repo_id}" if repo_id else settings.endpoint
    login_hint = (
        "the token in use has no access"
        if settings.token
        else "log in with `hf auth login` or set HF_TOKEN"
    )
    if isinstance(exc, errors.GatedRepoError):
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
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(
            "not_found",
            f"no repository {repo_id or what} on {settings.endpoint} "
            f"(if it is private: {login_hint})",
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError("not_found", f"{what}: no such revision on {settings.endpoint}")
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return HubError("not_found", f"{what}: not found on {settings.endpoint}")
    if isinstance(exc, errors.HfHubHTTPError):
        return _status_error(exc.response, settings, what=what, login_hint=login_hint)
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubError("offline", f"offline mode (HF_HUB_OFFLINE is set): cannot reach {what}")
    if isinstance(exc, httpx2.TransportError):
        try:
            url: str | None = str(exc.request.url)
        except RuntimeError:  # raised before a request was built
            url = None
        return network_error(exc, url, settings, during=f"requesting {what}")
    if isinstance(exc, (json.JSONDecodeError, KeyError)):
        # Not JSON, or JSON without the fields every Hub answer has (a captive portal, a wrong
        # HF_ENDPOINT): the library's own parsing fails in one of these two ways.
        return HubError(
            "protocol",
            f"{what}: {_host(None, settings)} did not answer as a Hugging Face Hub does "
            "(is HF_ENDPOINT a Hugging Face Hub?)",
        )
    return None


def _status_error(
    response: httpx2.Response, settings: HubSettings, *, what: str, login_hint: str
) -> HubError:
    """The HubError for an HTTP error status the library did not give a type of its own."""
    status = response.status_code
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
    if status == 404:
        return HubError("not_found", f"{what}: not found on {settings.endpoint}")
    if status == 429:
        retry_after = response.headers.get("Retry-After")
        wait = f"in {retry_after} s" if retry_after and retry_after.isdigit() else "later"
        return HubError("rate_limited", f"the Hub is limiting requests (429): try again {wait}")
    if status >= 500:
        return HubError(
            "server",
            f"{response.url.netloc.decode()} had a server error "
            f"({status} {response.reason_phrase}): try again later",
        )
    return HubError("http", f"{what}: HTTP {status} {response.reason_phrase}")
