"""Fixtures for the fake Hub: one server per session, a fresh cache and clean faults per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubserver import FakeHub, build_fake_hub


@pytest.fixture(scope="session")
def hub_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """The fake Hub, its GGUF files generated once per session."""
    hub = build_fake_hub(tmp_path_factory.mktemp("fake-hub"))
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def hub_server(
    hub_server_session: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeHub:
    """The fake Hub (`.url` is its base URL) with HF_ENDPOINT pointing at it, online, no token.

    HF_HUB_CACHE is a fresh temporary folder; the request log and all faults are cleared.
    """
    hub = hub_server_session
    hub.reset()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    # The library's once-a-day fetch of /api/agent-harnesses (for its User-Agent) stays out of
    # the request logs the tests read.
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN",
        "TRANSFORMERS_OFFLINE",
        "HUGGINGFACE_HUB_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)
    _match_huggingface_hub_constants(monkeypatch, hub.url, tmp_path / "hf-cache")
    return hub


def _match_huggingface_hub_constants(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, cache: Path
) -> None:
    """huggingface_hub copies these variables at import; match them for any code that uses it.

    tui-llm's own Hub code reads the environment per call and passes the endpoint and the
    token to the library; the tests that call `hf_hub_download` themselves need this.
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
