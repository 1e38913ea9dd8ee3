"""The HTTP client tui-llm gives huggingface_hub (its client-factory hook): timeouts, no retries.

The library's default client has no timeout (`timeout=None`), and `HfApi.list_models` (through
its pagination) retries connection errors, timeouts, 408, 429 and 5xx five times with a backoff
of 1, 2, 4, 8 and 8 s: about 23 s before a search box could say "connection refused". The client
set here with `set_client_factory`:

- gives every request the timeout of the `hub_call` in progress (`HubSettings.timeout_s`, read
  per operation), or HF_HUB_DOWNLOAD_TIMEOUT as it is now (10 s by default) outside one, also
  where the library passes `timeout=None` explicitly (`model_info`, `list_models`);
- inside a `hub_call`, raises at the first failure: a transport error becomes the HubError at
  once, and a status the library would retry raises the library's typed error at once, neither
  of which its retry loop catches. A retry is the user's choice (Ctrl+R, the next pull).

It keeps the library's client otherwise: redirects followed, proxies from the environment, the
operating system's trust store (httpx2's default). Importing this module imports the library.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
from huggingface_hub import hf_raise_for_status, set_client_factory

from tui_llm.catalog.hub_client import (
    HubCall,
    HubError,
    HubSettings,
    current_call,
    enter_call,
    leave_call,
    library_error,
    network_error,
    timeout_from_env,
)

__all__ = ["RETRIED_STATUSES", "HubClient", "hub_call", "install_client"]

# The statuses huggingface_hub's http_backoff retries by default.
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_ERROR_BODY = 1_000_000

_install_lock = threading.Lock()
_installed = False  # the library's factory is process-wide, so installing it is too


class HubClient(httpx2.Client):
    """An httpx2 client that applies the current `hub_call`'s timeout and fails fast in it.

    Outside a `hub_call` (huggingface_hub used directly) a request keeps the timeout the
    library gave it and gets HF_HUB_DOWNLOAD_TIMEOUT where it gave none.
    """

    def send(self, request: httpx2.Request, *args: Any, **kwargs: Any) -> httpx2.Response:
        call = current_call()
        timeouts: dict[str, float | None] = dict(request.extensions.get("timeout") or {})
        if call is not None:
            timeouts = httpx2.Timeout(call.settings.timeout_s).as_dict()
        else:
            default = timeout_from_env()
            timeouts = {
                name: default if timeouts.get(name) is None else timeouts[name]
                for name in ("connect", "read", "write", "pool")
            }
        request.extensions["timeout"] = timeouts
        try:
            response = super().send(request, *args, **kwargs)
        except httpx2.TransportError as exc:
            if call is None:
                raise
            raise network_error(
                exc, str(request.url), call.settings, during=f"requesting {call.what}"
            ) from None
        if call is not None and response.status_code in RETRIED_STATUSES:
            try:
                length = int(response.headers.get("Content-Length", "0") or 0)
                if length < _MAX_ERROR_BODY:
                    response.read()
            except (ValueError, httpx2.HTTPError):
                pass
            finally:
                response.close()
            hf_raise_for_status(response)
        return response


def _make_client() -> httpx2.Client:
    # No client-wide timeout: `send` sets one on every request, from the settings of the moment.
    return HubClient(follow_redirects=True, timeout=None)


def install_client() -> None:
    """Make huggingface_hub use `HubClient` from its next request on (once per process)."""
    global _installed
    with _install_lock:
        if not _installed:
            set_client_factory(_make_client)
            _installed = True


@contextlib.contextmanager
def hub_call(settings: HubSettings, *, what: str, repo_id: str | None = None) -> Iterator[None]:
    """Run huggingface_hub calls with `settings`: errors come out as one HubError.

    `what` names the thing asked for in messages ("search", "org/repo", "org/repo/file.gguf").
    Exceptions that are not the library's or the network's pass through unchanged.
    """
    install_client()
    reset = enter_call(HubCall(settings, what, repo_id))
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        error = library_error(exc, settings, what=what, repo_id=repo_id)
        if error is None:
            raise
        raise error from None
    finally:
        leave_call(reset)
