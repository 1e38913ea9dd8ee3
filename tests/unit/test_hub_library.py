"""huggingface_hub inside tui-llm: imported on first use, its HTTP client given timeouts.

The fake Hub (tests/hubserver.py) runs on 127.0.0.1 and HF_ENDPOINT points at it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import hub_fixtures
from tests.conftest import REPO
from tests.hubserver import FakeHub
from tui_llm.catalog.hub import HubError, list_repo_ggufs, search_models

hub_server_session = hub_fixtures.hub_server_session
hub_server = hub_fixtures.hub_server


def test_the_library_is_imported_on_first_use_and_the_catalog_stays_textual_free() -> None:
    """Starting the app costs no huggingface_hub import; the Hub code never pulls in Textual."""
    code = (
        "import sys\n"
        "import tui_llm.catalog.hub, tui_llm.catalog.hub_download, tui_llm.catalog.hub_queue\n"
        "import tui_llm.catalog.hub_cache, tui_llm.cli.hub\n"
        "print(sorted(m for m in ('huggingface_hub', 'textual', 'rich') if m in sys.modules))\n"
        "from tui_llm.catalog.hub_cache import list_cached_ggufs\n"
        "list_cached_ggufs()\n"
        "print(sorted(m for m in ('huggingface_hub', 'textual', 'rich') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "['huggingface_hub']"]


def test_the_library_used_directly_gets_the_timeout_of_the_moment(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub's own client has no timeout; the one tui-llm installs reads the setting."""
    import httpx2
    from huggingface_hub import HfApi

    search_models("tiny")  # the first Hub operation installs tui-llm's client
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub_server.stall_s = 1.5
    started = time.monotonic()

    with pytest.raises(httpx2.TimeoutException):
        HfApi(endpoint=hub_server.url, token=False).model_info("acme/TinyLlama-GGUF")

    assert time.monotonic() - started < 1.4, "it gave up after 0.5 s, not when the Hub answered"


def test_a_listing_that_does_not_answer_times_out_with_the_setting_of_the_moment(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list_repo_ggufs("acme/TinyLlama-GGUF").options
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub_server.stall_s = 1.5

    with pytest.raises(HubError) as failed:
        list_repo_ggufs("acme/TinyLlama-GGUF")

    assert failed.value.kind == "timeout" and "within 0.5 s" in str(failed.value)
    assert len(hub_server.paths("/api/models/acme/TinyLlama-GGUF")) == 2, "no hidden retries"


def test_a_search_that_does_not_answer_is_not_retried(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`HfApi.list_models` retries timeouts five times with backoff; tui-llm's client does not."""
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.3")
    hub_server.stall_s = 1.0
    started = time.monotonic()

    with pytest.raises(HubError) as failed:
        search_models("tiny")

    assert failed.value.kind == "timeout"
    assert time.monotonic() - started < 1.5
    assert hub_server.paths("/api/models") == ["/api/models"]


class _PortalHandler(BaseHTTPRequestHandler):
    """Answers every request with 200 and a web page, as a captive portal or a wrong URL does."""

    def do_GET(self) -> None:
        body = b"<html><body>Sign in to the hotel Wi-Fi</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def portal_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PortalHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_endpoint_that_is_not_a_hub_is_one_clear_line(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch, portal_url: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", portal_url)

    with pytest.raises(HubError) as search:
        search_models("tiny")
    with pytest.raises(HubError) as listing:
        list_repo_ggufs("acme/TinyLlama-GGUF")

    for failed in (search, listing):
        assert failed.value.kind == "protocol"
        assert "is HF_ENDPOINT a Hugging Face Hub?" in str(failed.value)
        assert "\n" not in str(failed.value)
