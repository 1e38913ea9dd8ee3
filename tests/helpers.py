"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.theme import Theme
from textual.widget import Widget

from tests.fake_pynvml import FakeGpu, FakePynvml
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import ChatMessage, LoadSettings, SamplingParams
from tui_llm.gpu.nvml import NvmlMonitor, create_monitor
from tui_llm.gpu.samples import HostSample, MonitorSnapshot
from tui_llm.theme_files import DEFAULT_THEME, load_themes


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


async def cancel_load_in_flight(client: EngineClient, load: LoadSettings) -> None:
    """Start a load, cancel it once it is sent, and check the caller sees the cancel at once."""
    task = asyncio.create_task(client.load(load))
    while not client.load_in_flight:
        await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return
    raise AssertionError("the cancelled load was not cancelled")


async def replies_after_a_new_engine(
    client: EngineClient, model: Path, old_pid: int | None = None
) -> None:
    """Load ``model`` on the CPU (in a new engine, when ``old_pid`` is given) and get a reply."""
    await client.load(settings(model))
    if old_pid is not None:
        assert client.pid != old_pid
    done = await client.chat([user("hi")], SamplingParams(temperature=0.0, max_tokens=3))
    assert done.stats.generated_tokens == 3


def put_in_hf_cache(cache: Path, repo_id: str, files: Sequence[Path]) -> list[Path]:
    """Copy `files` into `cache` as huggingface_hub lays a download out; the snapshot paths.

    ``models--ORG--NAME/blobs/SHA256`` holds each file's bytes, and
    ``models--ORG--NAME/snapshots/COMMIT/NAME`` is a relative symlink to its blob, so the path
    that symlinks resolve to is a hash with no file name in it.
    """
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / hashlib.sha1(repo_id.encode()).hexdigest()
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    entries = []
    for file in files:
        blob = storage / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        entry = snapshot / file.name
        entry.symlink_to(os.path.relpath(blob, snapshot))
        entries.append(entry)
    return entries


class ThemedHost(App[None]):
    """Widgets alone on a screen under the shipped themes (tui-llm-dark, -light,
    -high-contrast), registered from themes/*.toml as the app registers them."""

    def __init__(self, *widgets: Widget, theme: str = DEFAULT_THEME) -> None:
        super().__init__()
        self.hosted = widgets
        self.start_theme = theme
        specs, errors = load_themes()
        assert not errors, errors
        for spec in specs:
            colors: dict[str, Any] = dict(spec.colors)
            self.register_theme(
                Theme(name=spec.name, dark=spec.dark, variables=spec.variables, **colors)
            )

    def compose(self) -> ComposeResult:
        yield from self.hosted

    def on_mount(self) -> None:
        self.theme = self.start_theme


def fake_nvml_monitor(*gpus: FakeGpu) -> tuple[FakePynvml, NvmlMonitor]:
    """The real NVML monitor over a fake ``pynvml`` holding ``gpus``; change a ``FakeGpu``'s
    readings between samples to simulate load."""
    nvml = FakePynvml(gpus)
    monitor = create_monitor(nvml)
    assert isinstance(monitor, NvmlMonitor), monitor.reason
    return nvml, monitor


def nvml_snapshot(monitor: NvmlMonitor, host: HostSample | None = None) -> MonitorSnapshot:
    """One sample of ``monitor``'s GPUs and their processes, at a fixed time."""
    return MonitorSnapshot(
        timestamp=1_700_000_000.0,
        gpus=monitor.sample_gpus(),
        processes=monitor.sample_processes(),
        host=host,
    )
