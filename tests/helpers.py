"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import ChatMessage, LoadSettings


def settings(model: Path, **overrides: object) -> LoadSettings:
    """Load settings sized for tests (small context, one thread: predictable on 2 cores)."""
    values: dict[str, object] = {"model_path": str(model), "n_ctx": 512, "n_threads": 1}
    values.update(overrides)
    return LoadSettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def engine() -> AsyncIterator[EngineClient]:
    client = EngineClient()
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)
