"""The gauge and the model browser draw in the theme's colours, and follow a change of theme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.color import ColorType
from rich.segment import Segment
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.fake_pynvml import FakeGpu
from tests.helpers import ThemedHost, fake_nvml_monitor, nvml_snapshot
from tests.ui.test_app import wait_until
from tui_llm.catalog.discovery import LocalModel
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.textline import TextLine

GiB = 1 << 30
ENGINE_PID = 4242


def theme_color(app: ThemedHost, variable: str) -> str:
    """A variable of the app's current theme, as Rich writes the colour: "#f1a541"."""
    return app.get_css_variables()[variable].lower()


def bar_colors(gauge: GpuGauge) -> list[str]:
    """The colour of each cell of the first GPU's VRAM bar, left to right; "free" for a free one.

    A colour the terminal's palette decides (ANSI "magenta") is written "ansi:magenta".
    """
    line = gauge.query_one(".gpus", TextLine)
    bar_row = 1  # under the GPU's name
    cells: list[str] = []
    for segment in line.render_line(bar_row):
        assert isinstance(segment, Segment)
        cells += ["free"] * segment.text.count("░")
        color = segment.style.color if segment.style else None
        if color is None or "█" not in segment.text:
            continue
        if color.type is ColorType.TRUECOLOR:
            assert color.triplet is not None
            name = color.triplet.hex
        else:
            name = f"ansi:{color.name}"
        cells += [name] * segment.text.count("█")
    return cells


async def test_gauge_bar_draws_in_the_theme_colours_and_follows_a_new_theme() -> None:
    """An RTX 4090 (24 GiB) with the engine holding 12 GiB and another process 6 GiB: the
    engine's cells take the theme's accent, the other's its primary; switching from the dark
    to the light theme redraws both in the light theme's colours."""
    gpu = FakeGpu(memory_total=24 * GiB, memory_used=18 * GiB)
    gpu.compute_processes = [(ENGINE_PID, 12 * GiB)]
    gpu.graphics_processes = [(900, 6 * GiB)]
    _nvml, monitor = fake_nvml_monitor(gpu)
    gauge = GpuGauge()
    app = ThemedHost(gauge, theme="tui-llm-dark")
    async with app.run_test(size=(64, 12)) as pilot:
        await wait_until(pilot, lambda: app.theme == "tui-llm-dark")
        gauge.set_engine(ENGINE_PID, (), (), 0)
        gauge.update_snapshot(nvml_snapshot(monitor))
        await wait_until(pilot, lambda: bool(bar_colors(gauge)))
        assert len(bar_colors(gauge)) % 4 == 0, "a bar the shares divide into whole cells"

        width = len(bar_colors(gauge))

        def expected() -> list[str]:
            # The engine's 12 of 24 GiB is half the bar; the other process's 6 GiB a quarter.
            engine, other = theme_color(app, "accent"), theme_color(app, "primary")
            return [engine] * (width // 2) + [other] * (width // 4) + ["free"] * (width // 4)

        dark = expected()
        assert bar_colors(gauge) == dark
        await switch_theme(pilot, app, "tui-llm-light")
        light = expected()
        assert light != dark
        await wait_until(pilot, lambda: bar_colors(gauge) == light)


async def test_gauge_engine_line_and_sparkline_use_the_theme() -> None:
    """Every coloured cell of the GPU lines (bar, "engine 12 GiB", sparkline) is a theme colour
    of the high-contrast theme; none is left to the terminal's palette."""
    gpu = FakeGpu(memory_total=24 * GiB, memory_used=18 * GiB)
    gpu.compute_processes = [(ENGINE_PID, 12 * GiB)]
    _nvml, monitor = fake_nvml_monitor(gpu)
    gauge = GpuGauge()
    app = ThemedHost(gauge, theme="tui-llm-high-contrast")
    async with app.run_test(size=(64, 12)) as pilot:
        await wait_until(pilot, lambda: app.theme == "tui-llm-high-contrast")
        gauge.set_engine(ENGINE_PID, (), (), 0)
        for used_gib in (4, 10, 18):
            gpu.memory_used = used_gib * GiB
            gauge.update_snapshot(nvml_snapshot(monitor))
        line = gauge.query_one(".gpus", TextLine)
        await wait_until(pilot, lambda: "engine 12 GiB" in line.render_line(2).text)
        await pilot.pause()
        rows = [line.render_line(row) for row in range(line.size.height)]
        colored: dict[str, set[str]] = {}
        for strip in rows:
            for segment in strip:
                color = segment.style.color if segment.style else None
                if color is None or not segment.text.strip():
                    continue
                assert color.type is ColorType.TRUECOLOR, (segment.text, color)
                assert color.triplet is not None
                colored.setdefault(color.triplet.hex, set()).add(segment.text.strip())
    accent, primary = theme_color(app, "accent"), theme_color(app, "primary")
    assert any("engine 12 GiB" in text for text in colored[accent])
    assert any(set(text) <= set("▁▂▃▄▅▆▇█") and len(text) > 1 for text in colored[primary])


def error_cell(browser: ModelBrowser) -> Text:
    cell = browser.query_one(DataTable).get_row_at(0)[1]
    assert isinstance(cell, Text) and cell.plain == "error"
    return cell


async def test_browser_error_mark_takes_the_theme_error_colour(tmp_path: Path) -> None:
    """A file that cannot be read is marked "error" in the theme's error colour, in the new
    theme's once the theme changes."""
    broken = LocalModel(tmp_path / "cut.gguf", "folder", "cut.gguf", None, "truncated file")
    browser = ModelBrowser()
    app = ThemedHost(browser, theme="tui-llm-dark")
    async with app.run_test(size=(120, 20)) as pilot:
        await wait_until(pilot, lambda: app.theme == "tui-llm-dark")
        browser.add_models([broken])
        await wait_until(pilot, lambda: browser.query_one(DataTable).row_count == 1)
        dark_error = theme_color(app, "error")
        assert str(error_cell(browser).style).lower() == dark_error
        await switch_theme(pilot, app, "tui-llm-light")
        light_error = theme_color(app, "error")
        assert light_error != dark_error
        await wait_until(pilot, lambda: str(error_cell(browser).style).lower() == light_error)


async def switch_theme(pilot: Pilot[Any], app: ThemedHost, theme: str) -> None:
    app.theme = theme
    await wait_until(pilot, lambda: app.current_theme.name == theme)
