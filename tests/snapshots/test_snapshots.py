"""Snapshot tests of what a person sees: the main screen, the help screen, each theme.

Every value on screen is fixed so the SVGs are the same on any machine: no engine process is
started (the engine part says "no model"), the model browser is fed a fixed list read from
generated GGUF files, and the GPU gauge gets fixed samples of an H100 instead of live NVML values.

Regenerate after an intended UI change with ``pytest tests/snapshots --snapshot-update`` and look
at every changed SVG before committing it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from tests.fake_pynvml import FakeGpu
from tests.helpers import ThemedHost, fake_nvml_monitor, nvml_snapshot
from tui_llm import config
from tui_llm.app import TuiLlmApp, make_app
from tui_llm.catalog.discovery import LocalModel, iter_local_models
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.table_models import write_demo_model
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import BufferSize, DeviceInfo, DeviceLayers
from tui_llm.gpu.samples import GpuSample, HostSample, MonitorSnapshot, ProcessMemory
from tui_llm.messages import GpuSampled
from tui_llm.screens.help import HelpScreen
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.offload import OffloadPanel

GiB = 1024**3
MiB = 1024**2

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_TOTAL = 81559 * MiB  # what NVML reports for an 80 GB H100
#: VRAM used over the samples pushed to the gauge: a model loading, then steady.
VRAM_STEPS = (2, 2, 3, 5, 8, 11, 14, 17, 20, 22, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23)
NO_DRIVER = "no NVIDIA driver (libnvidia-ml.so.1 not found)"
THEMES = ("tui-llm-dark", "tui-llm-light", "tui-llm-high-contrast")

RunBefore = Callable[[Pilot[Any]], Awaitable[None]]


async def wait_until(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Poll the app until ``predicate`` holds (never sleep and hope)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {predicate}")


def static_text(static: Static) -> str:
    return str(static.content)


@pytest.fixture(scope="module")
def local_models(tmp_path_factory: pytest.TempPathFactory) -> list[LocalModel]:
    """Generated models found by the real folder scan, plus a truncated file that fails to read."""
    folder = tmp_path_factory.mktemp("snapshot-models")
    write_demo_model(folder / "tui-llm-demo-bigram.gguf")
    write_llama_gguf(folder / "rand-32l-f16.gguf", n_layer=32, n_embd=64, seed=32)
    write_llama_gguf(
        folder / "rand-8l-q8_0.gguf", n_layer=8, n_embd=128, seed=8, tensor_type="q8_0"
    )
    tiny = write_llama_gguf(folder / "tiny-2l-f16.gguf", n_layer=2, n_embd=64, seed=1)
    (folder / "truncated.gguf").write_bytes(tiny.read_bytes()[:4096])
    empty_home = tmp_path_factory.mktemp("snapshot-home")
    models = list(iter_local_models([folder], home=empty_home, env={}))
    names = [m.display_name for m in models]
    assert names == [
        "rand-32l-f16.gguf",
        "rand-8l-q8_0.gguf",
        "tiny-2l-f16.gguf",
        "truncated.gguf",
        "tui-llm-demo-bigram.gguf",
    ]
    # Nothing shown may depend on where the temporary folder is.
    for model in models:
        assert str(folder) not in f"{model.display_name} {model.error or ''}"
    assert [m.info is None for m in models] == [False, False, False, True, False]
    return models


def build_app(models: list[LocalModel], theme: str = "tui-llm-dark") -> TuiLlmApp:
    """The app with no engine process, no monitor thread and a fixed model list."""
    app = make_app(
        config.Settings(theme=theme),
        engine=EngineClient(),
        monitor=None,
        scanner=lambda: list(models),
        save_settings=False,
    )
    app.autostart_engine = False
    return app


def h100_snapshot(vram_gib: int, step: int) -> MonitorSnapshot:
    """A fixed NVML view: one H100 with another process on it, and the host."""
    used = vram_gib * GiB + 517 * MiB  # the CUDA context and other tenants
    return MonitorSnapshot(
        timestamp=1_700_000_000.0 + step,
        gpus=(
            GpuSample(
                index=0,
                name=H100_NAME,
                memory_used=used,
                memory_total=H100_TOTAL,
                utilization_pct=37,
                temperature_c=54,
                power_w=120.0 + step,
                power_limit_w=700.0,
            ),
        ),
        processes={0: (ProcessMemory(pid=31337, used_bytes=used - 517 * MiB),)},
        host=HostSample(ram_used=41 * GiB + 300 * MiB, ram_total=128 * GiB, engine_rss=None),
    )


async def settle(pilot: Pilot[Any], models: list[LocalModel]) -> None:
    """Wait for the scan to be shown and stop the cursors blinking, so the frame is fixed."""
    app = pilot.app
    assert isinstance(app, TuiLlmApp)
    # run_before starts before the main screen is composed.
    await wait_until(pilot, lambda: bool(app.main_screen.query(ModelBrowser)))
    browser = app.main_screen.query_one(ModelBrowser)
    await wait_until(
        pilot,
        lambda: (
            static_text(browser.query_one(".status", Static))
            == f"{len(models)} of {len(models)} models"
        ),
    )
    for widget in app.main_screen.query("TextArea, Input"):
        assert isinstance(widget, TextArea | Input)
        widget.cursor_blink = False


async def push_gpu_samples(pilot: Pilot[Any]) -> None:
    """Post fixed H100 samples to the main screen, one handled before the next is sent."""
    app = pilot.app
    assert isinstance(app, TuiLlmApp)
    gpus = app.main_screen.query_one(GpuGauge).query_one(".gpus", Static)
    for step, vram in enumerate(VRAM_STEPS):
        app.main_screen.post_message(GpuSampled(h100_snapshot(vram, step)))
        power = f"{120 + step} W / 700 W"
        await wait_until(pilot, lambda power=power: power in static_text(gpus))


def main_view(models: list[LocalModel]) -> RunBefore:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, models)
        await push_gpu_samples(pilot)

    return run_before


def test_main_screen_80x24(snap_compare: Any, local_models: list[LocalModel]) -> None:
    """Main screen at 80x24, dark theme: the narrow layout for a small terminal.

    The model browser is hidden (Ctrl+B shows it). Left: the chat's hint that no model is loaded
    yet (Ctrl+B, Ctrl+L, F1) and the focused message box at the bottom. Right, a column that
    scrolls: the offload panel saying "No model loaded" with "ctx 4096 · flash attn off · KV f16"
    and its key hint; under it the GPU gauge: "GPU0 NVIDIA H100 80GB HBM3", an 8-cell VRAM bar
    and "23.5 GiB / 79.6 GiB", "util 37% · 54°C · 139 W / 700 W", a flat sparkline, and
    "RAM 41.3 GiB / 128 GiB". The status line says "no model"; the footer lists keys, with
    "^p palette" at the right.
    """
    app = build_app(local_models)
    assert snap_compare(app, terminal_size=(80, 24), run_before=main_view(local_models))


def test_main_screen_160x48(snap_compare: Any, local_models: list[LocalModel]) -> None:
    """Main screen at 160x48, dark theme: browser, chat and the right column side by side.

    Left: the model browser, its filter box, and five models by name (without ".gguf") with their
    size, quantization and fit: rand-32l-f16, rand-8l-q8_0, tiny-2l-f16, truncated (dimmed, a red
    "error" in the next column) and tui-llm-demo-bigram; the first row is highlighted and "5 of 5
    models" is under the table. Middle: the empty chat's hint and the focused message
    box. Right: the offload panel ("No model loaded", "ctx 4096 · flash attn off · KV f16", the
    key hint) and the GPU gauge for the H100 (a wider VRAM bar, "23.5 GiB / 79.6 GiB",
    "util 37% · 54°C · 139 W / 700 W", a sparkline stepping up then flat, host RAM). The footer
    shows every main key up to "^o Offload".
    """
    app = build_app(local_models)
    assert snap_compare(app, terminal_size=(160, 48), run_before=main_view(local_models))


def test_help_screen(snap_compare: Any, local_models: list[LocalModel]) -> None:
    """The help screen (F1) at 100x40: a box with a thick border over the dimmed main screen.

    Centred heading "tui-llm keys", a line saying every key passes through tmux and SSH and
    everything is in the command palette (Ctrl+P), then the "Chat" table (Key | Does: Enter,
    Ctrl+J, Esc, Ctrl+R, Ctrl+E, Ctrl+Y, Ctrl+K, Ctrl+N, Ctrl+T) and the "Models" heading at the
    bottom; a scrollbar says there is more below. No cell is cut off.
    """

    async def run_before(pilot: Pilot[Any]) -> None:
        await main_view(local_models)(pilot)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        # The Markdown mounts its blocks in steps: wait for all five key tables.
        await wait_until(pilot, lambda: len(pilot.app.screen.query("MarkdownTable")) == 5)

    app = build_app(local_models)
    assert snap_compare(app, terminal_size=(100, 40), run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_theme(snap_compare: Any, local_models: list[LocalModel], theme: str) -> None:
    """The main screen at 140x40 in each of our themes: the wide layout at its narrowest.

    The same content as the 160x48 view in less room: the browser (models by name with their
    size, quantization and fit, the truncated file's "error" in the theme's red), the chat's hint
    in the middle column, the message box, and the right column (offload panel, H100 gauge with
    its VRAM bar and sparkline in the theme's primary colour).
    Dark: light text on dark blue-grey. Light: dark text on an off-white background. High
    contrast: white text on black with bright cyan and yellow accents. Every text is readable on
    its background.
    """
    app = build_app(local_models, theme)
    assert snap_compare(app, terminal_size=(140, 40), run_before=main_view(local_models))


def test_offload_panel_pending(snap_compare: Any, local_models: list[LocalModel]) -> None:
    """The offload panel focused with Ctrl+O at 120x36 (the narrow layout), a change pending.

    The panel's border and title turn the accent colour (orange in the dark theme). It reads
    "GPU layers 20 / 33" in bold, then a 20-cell bar filled to 28 with "28 / 33  (press Enter to
    apply)" in the accent colour, "ctx 4096 · flash attn off · KV f16" and the key hint. The
    message box is no longer focused, and the footer lists the panel's keys: ← −1 layer,
    → +1 layer, pgup −10%, pgdn +10%, home None, end All, a Auto, c Context, f Flash attn, ...
    """

    async def run_before(pilot: Pilot[Any]) -> None:
        await main_view(local_models)(pilot)
        app = pilot.app
        assert isinstance(app, TuiLlmApp)
        panel = app.main_screen.query_one(OffloadPanel)
        panel.set_loaded(20, 33, 4096, False, "f16")
        panel.pending_layers = 28
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: panel.has_focus)

    app = build_app(local_models)
    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


def test_gauge_without_nvidia_driver(snap_compare: Any, local_models: list[LocalModel]) -> None:
    """Main screen at 120x36 (the narrow layout: no browser) without the NVIDIA driver.

    The GPU gauge shows no GPU name, bar or sparkline. It says why in muted text: "no NVIDIA
    driver (libnvidia-ml.so.1 not found)", then "llama.cpp devices" in bold with the CPU device
    llama.cpp reports, indented, on two lines ("CPU", then "free 86 GiB / 128 GiB" indented
    further), then "RAM 41.3 GiB / 128 GiB".
    """

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot, local_models)
        app = pilot.app
        assert isinstance(app, TuiLlmApp)
        gauge = app.main_screen.query_one(GpuGauge)
        gauge.set_unavailable(NO_DRIVER)
        gauge.set_devices(
            (DeviceInfo("CPU", "AMD EPYC 9454 48-Core Processor", "cpu", 86 * GiB, 128 * GiB),)
        )
        snapshot = MonitorSnapshot(
            timestamp=1_700_000_000.0,
            gpus=(),
            processes={},
            host=HostSample(ram_used=41 * GiB + 300 * MiB, ram_total=128 * GiB, engine_rss=None),
            error=NO_DRIVER,
        )
        app.main_screen.post_message(GpuSampled(snapshot))
        host = gauge.query_one(".host", Static)
        await wait_until(pilot, lambda: static_text(host).startswith("RAM "))

    app = build_app(local_models)
    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


#: An RTX 4090's VRAM used (GiB) over the samples of the themed gauge: a model loading.
LOAD_STEPS_GIB = (2, 2, 4, 7, 10, 13, 15, 16, 16, 16, 16, 16)
ENGINE_PID = 4242


@pytest.mark.parametrize("theme", THEMES)
def test_gauge_in_each_theme(snap_compare: Any, theme: str) -> None:
    """The GPU gauge alone at 64x12, a model loaded on an RTX 4090 read through the fake NVML.

    In a rounded border titled "GPU / memory": "GPU0 NVIDIA GeForce RTX 4090" in bold; a
    32-cell VRAM bar whose first 16 cells (the engine's 12 GiB) are in the theme's accent
    colour (amber in dark, brown-orange in light, orange in high contrast), the next 5 (another
    process's 4 GiB) in its primary colour (blue in dark and light, bright cyan in high
    contrast) and the rest faded "░", then "16 GiB / 24 GiB"; "engine 12 GiB" in the accent
    colour; "util 37% · 61°C · 123 W / 450 W"; a 12-cell sparkline (one cell per sample) in the
    primary colour, rising in steps and then flat at two thirds of its height. Then "llama.cpp
    devices" in bold, "CUDA0 NVIDIA GeForce RTX 4090 · 33 layers", "free 8 GiB / 24 GiB · engine
    11.5 GiB", and "RAM 41.3 GiB / 128 GiB". No colour comes from the terminal's palette: each
    theme has its own.
    """
    gib = 1 << 30
    gpu = FakeGpu(memory_total=24 * gib)
    gpu.graphics_processes = [(900, 4 * gib)]
    _nvml, monitor = fake_nvml_monitor(gpu)
    host = HostSample(ram_used=41 * gib + 300 * MiB, ram_total=128 * gib, engine_rss=None)
    gauge = GpuGauge()
    app = ThemedHost(gauge, theme=theme)

    async def run_before(pilot: Pilot[Any]) -> None:
        # The bar's width follows the gauge's: sample once it is laid out, as the app does.
        await wait_until(pilot, lambda: app.theme == theme and gauge.size.width > 0)
        gauge.set_engine(
            ENGINE_PID,
            (DeviceInfo("CUDA0", "NVIDIA GeForce RTX 4090", "gpu", 8 * gib, 24 * gib),),
            (BufferSize("CUDA0", "model", 23 * gib // 2),),
            33,
            (DeviceLayers("CUDA0", 33),),
        )
        for used_gib in LOAD_STEPS_GIB:
            gpu.memory_used = used_gib * gib
            gpu.compute_processes = [(ENGINE_PID, max(0, used_gib - 4) * gib)]
            gauge.update_snapshot(nvml_snapshot(monitor, host))
        host_line = gauge.query_one(".host", Static)
        await wait_until(pilot, lambda: static_text(host_line).startswith("RAM "))

    assert snap_compare(app, terminal_size=(64, 12), run_before=run_before)
