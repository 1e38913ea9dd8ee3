"""Snapshot tests render the same on every machine: no colour switched off by the environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fixed_rendering_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR (read when the app is built) would turn every snapshot monochrome."""
    monkeypatch.delenv("NO_COLOR", raising=False)
