"""Widgets that keep repaints small: what they show, and what they leave alone."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui_llm.engine.protocol import BufferSize, DeviceInfo, DeviceLayers
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.offload import progress_bar
from tui_llm.widgets.table import QuietTable
from tui_llm.widgets.textline import TextLine, rows_if_unwrapped


class LinesApp(App[None]):
    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="left"):
                yield TextLine(classes="one")
                yield Static("x", id="grow")
            table: QuietTable[str] = QuietTable(id="table")
            yield table


class Counter:
    """Counts a widget's refresh calls, and the ones that asked for a layout."""

    def __init__(self, widget: Any) -> None:
        self.calls = 0
        self.layouts = 0
        original = widget.refresh

        def refresh(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.layouts += bool(kwargs.get("layout"))
            return original(*args, **kwargs)

        widget.refresh = refresh


async def test_text_line_repaints_only_on_change_and_hides_when_empty() -> None:
    app = LinesApp()
    async with app.run_test(size=(80, 12)) as pilot:
        line = app.query_one(".one", TextLine)
        assert not line.display  # empty: takes no row
        line.show("ready")
        await pilot.pause()
        assert line.display and str(line.render()) == "ready"
        count = Counter(line)
        line.show("ready")
        assert count.calls == 0  # the same text: nothing to do
        line.show("steady")
        assert count.calls == 1 and count.layouts == 0  # one row before and after: no layout
        line.show("two\nrows")
        assert count.layouts == 1
        line.show("")
        await pilot.pause()
        assert not line.display


def test_rows_if_unwrapped() -> None:
    assert rows_if_unwrapped("a\nbc", 4) == 2
    assert rows_if_unwrapped("abcdef", 4) is None  # may wrap: the caller asks for a layout
    assert rows_if_unwrapped("ab", 0) is None  # not laid out yet


async def test_quiet_table_is_left_alone_by_a_relayout_elsewhere() -> None:
    app = LinesApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(QuietTable)
        table.add_columns(*(f"column {n}" for n in range(8)))
        table.add_row(*(f"cell {n}" for n in range(8)))
        await pilot.pause()
        assert table.show_horizontal_scrollbar  # wider than its 30 columns
        count = Counter(table.horizontal_scrollbar)
        grow = app.query_one("#grow", Static)
        for rows in range(2, 5):
            grow.update("\n".join("x" * rows))
            await pilot.pause()
        assert count.calls == 0
        assert not table.show_vertical_scrollbar
        for row in range(30):  # its own changes still update its scrollbars
            table.add_row(*(f"row {row} {n}" for n in range(8)))
        await pilot.pause()
        assert table.show_vertical_scrollbar and count.calls > 0


def test_progress_bar_fills_its_width() -> None:
    empty, half, full = (progress_bar(p, 30) for p in (0.0, 0.5, 1.0))
    assert all(bar.cell_length == 30 for bar in (empty, half, full))
    assert half.plain.endswith(" 50%") and full.plain.endswith("100%")
    assert progress_bar(7.0, 30).plain == full.plain  # out of range is clamped


class GaugeApp(App[None]):
    def compose(self) -> ComposeResult:
        yield GpuGauge(id="gauge")


async def test_gauge_lists_every_device_with_its_layers_and_buffers() -> None:
    """A model split over two RPC servers: each device line has its own layers and bytes."""
    gib, mib = 1 << 30, 1 << 20
    devices = (
        DeviceInfo("CPU", "Xeon", "cpu", 20 * gib, 24 * gib),
        DeviceInfo("RPC0", "127.0.0.1:50052", "gpu", 7 * gib, 8 * gib),
        DeviceInfo("RPC1", "127.0.0.1:50053", "gpu", 3 * gib, 4 * gib),
    )
    buffers = (
        BufferSize("CPU_Mapped", "model", 5 * mib),
        BufferSize("RPC0[127.0.0.1:50052]", "model", 30 * mib),
        BufferSize("RPC0[127.0.0.1:50053]", "model", 20 * mib),
    )
    app = GaugeApp()
    async with app.run_test(size=(80, 20)) as pilot:
        gauge = app.query_one(GpuGauge)
        gauge.set_engine(1, devices, buffers, 9, (DeviceLayers("RPC0", 5), DeviceLayers("RPC1", 4)))
        await pilot.pause()
        lines = [line.strip() for line in str(gauge.query_one(".devices").render()).splitlines()]
    assert "RPC0 127.0.0.1:50052 · 5 layers" in lines
    assert "RPC1 127.0.0.1:50053 · 4 layers" in lines
    assert "free 7 GiB / 8 GiB · engine 30 MiB" in lines
    assert "free 3 GiB / 4 GiB · engine 20 MiB" in lines
    assert "free 20 GiB / 24 GiB · engine 5 MiB" in lines


def test_table_name_drops_the_extension_and_keeps_both_ends() -> None:
    from tui_llm.widgets.browser import table_name

    assert table_name("tiny-2l-f16.gguf") == "tiny-2l-f16"
    assert table_name("llama3:8b") == "llama3:8b"  # an Ollama name has no extension
    long = table_name("bartowski/Meta-Llama-3.1-70B-Instruct-GGUF/Q4_K_M.gguf")
    assert len(long) == 28 and "…" in long
    assert long.startswith("bartowski/Met") and long.endswith("ct-GGUF/Q4_K_M")


async def test_text_line_repaints_when_only_the_styles_change() -> None:
    from textual.content import Content

    app = LinesApp()
    async with app.run_test(size=(80, 12)):
        line = app.query_one(".one", TextLine)
        line.show(Content.assemble(("ab", "$accent"), "cd"))
        count = Counter(line)
        line.show(Content.assemble(("abc", "$accent"), "d"))  # same text, one more cell done
        assert count.calls == 1
        line.show(Content.assemble(("abc", "$accent"), "d"))
        assert count.calls == 1
