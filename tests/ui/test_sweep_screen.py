"""The offload sweep screen driven with Pilot, on the real engine, with the RPC server on
127.0.0.1 as the GPU and a real SQLite store (tiny prompts and one repeat: seconds a sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.ui.test_app import build, send, submit, wait_until
from tui_llm.app import TuiLlmApp
from tui_llm.engine.protocol import SamplingParams
from tui_llm.screens.sweep import SweepScreen
from tui_llm.screens.sweep_list import SweepListScreen
from tui_llm.store import ConversationStore
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.sweep_chart import SweepChart
from tui_llm.widgets.sweep_table import SweepTable

SWEEP_TIMEOUT_S = 120  # a level is a load and two tiny benchmarks on one thread
LONG_GEN_TOKENS = 2000  # seconds of generation on model_8l


def app_with_store(model: Path, store_path: Path, **overrides: Any) -> TuiLlmApp:
    app = build(model, **overrides)
    app.store = ConversationStore(store_path)
    app.sampling = SamplingParams(temperature=0.0, max_tokens=8, seed=1)
    return app


async def open_sweep(pilot: Pilot[Any], app: TuiLlmApp) -> SweepScreen:
    """``b`` in the offload panel (Ctrl+O focuses it)."""
    await pilot.press("ctrl+o", "b")
    await wait_until(pilot, lambda: isinstance(app.screen, SweepScreen))
    screen = app.screen
    assert isinstance(screen, SweepScreen)
    return screen


async def start_sweep(
    pilot: Pilot[Any], sweep: SweepScreen, levels: str, gen_tokens: int = 8
) -> None:
    """Fill the form (tiny figures) and press Enter in it."""
    values = {
        "#levels": levels,
        "#prompt-tokens": "32",
        "#gen-tokens": str(gen_tokens),
        "#repeats": "1",
    }
    for field, value in values.items():
        sweep.query_one(field, Input).value = value
    sweep.query_one("#levels", Input).focus()
    await pilot.press("enter")
    await wait_until(pilot, lambda: sweep.run.state != "ready")


async def wait_for_end(pilot: Pilot[Any], sweep: SweepScreen) -> None:
    await wait_until(
        pilot, lambda: sweep.run.state in ("done", "stopped", "failed"), SWEEP_TIMEOUT_S
    )
    assert sweep.run.state != "failed", sweep.run.error


def cells(sweep: SweepScreen) -> list[list[str]]:
    table = sweep.query_one(SweepTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.mark.rpc
async def test_sweep_fills_rows_then_apply_loads_the_fastest_level_and_keeps_the_chat(
    rpc_server: str, model_8l: Path, tmp_path: Path
) -> None:
    store_path = tmp_path / "conversations.sqlite3"
    app = app_with_store(model_8l, store_path, rpc_servers=(rpc_server,), offload=4)
    async with app.run_test(size=(160, 48)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.loaded is not None)
        await send(pilot, app, "a first message with several words")
        sweep = await open_sweep(pilot, app)
        await start_sweep(pilot, sweep, "0,all")
        table = sweep.query_one(SweepTable)
        await wait_until(pilot, lambda: table.row_count >= 1, SWEEP_TIMEOUT_S)
        assert cells(sweep)[0][:2] == ["0", "0/9"]  # the first row is there mid-sweep
        await wait_for_end(pilot, sweep)
        rows = cells(sweep)
        assert [row[:2] for row in rows] == [["0", "0/9"], ["all", "9/9"]]
        assert all("tok/s" not in row[3] and float(row[3].split()[0]) > 0 for row in rows)
        assert "RPC0" in rows[1][7]  # memory per device: the offloaded level's on the device
        chart = sweep.query_one(SweepChart)
        assert [p.layers for p in chart.points] == [0, 9]
        assert chart.size.height > 3
        assert sweep.run.saved_id is not None
        status = str(sweep.query_one("#status").render())
        assert status.startswith("Done: fastest") and "saved" in status

        fastest = sweep.run.result.fastest() if sweep.run.result else None
        assert fastest is not None and fastest.gpu_layers in (0, 9)
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen is main)
        await wait_until(
            pilot,
            lambda: (
                main.loaded is not None
                and not main.model_loading
                and main.loaded.offloaded_layers == fastest.gpu_layers
            ),
            SWEEP_TIMEOUT_S,
        )
        assert main.loaded is not None and main.loaded.kv_restored_tokens > 0

    # The app again, on the same store: the sweep opens with the model's latest saved one.
    again = app_with_store(model_8l, store_path, rpc_servers=(rpc_server,), offload=4)
    async with again.run_test(size=(160, 48)) as pilot:
        main = again.main_screen
        await wait_until(pilot, lambda: main.loaded is not None)
        sweep = await open_sweep(pilot, again)
        assert [row[:2] for row in cells(sweep)] == [["0", "0/9"], ["all", "9/9"]]
        assert str(sweep.query_one("#status").render()).startswith("Saved sweep of")
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(again.screen, SweepListScreen))
        listed = again.screen
        assert isinstance(listed, SweepListScreen) and len(listed.summaries) == 1
        await pilot.press("escape")
        # A new sweep is compared with the saved one: a "before" column and a second series.
        await start_sweep(pilot, sweep, "all")
        await wait_for_end(pilot, sweep)
        table = sweep.query_one(SweepTable)
        assert [str(column.label) for column in table.columns.values()][4] == "before"
        assert cells(sweep)[0][4]  # the earlier gen tok/s at 9 layers
        assert [p.layers for p in sweep.query_one(SweepChart).before] == [0, 9]
        await pilot.press("escape")  # close: what was loaded before comes back
        await wait_until(
            pilot,
            lambda: (
                main.loaded is not None
                and not main.model_loading
                and main.loaded.offloaded_layers == 4
            ),
            SWEEP_TIMEOUT_S,
        )


@pytest.mark.rpc
async def test_a_message_sent_during_the_sweep_waits_and_esc_stops_the_sweep(
    rpc_server: str, model_8l: Path, tmp_path: Path
) -> None:
    app = app_with_store(
        model_8l, tmp_path / "conversations.sqlite3", rpc_servers=(rpc_server,), offload=4
    )
    async with app.run_test(size=(160, 48)) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.loaded is not None)
        sweep = await open_sweep(pilot, app)
        run = sweep.run
        # A long generation (seconds on the tiny model): the sweep is still on its first level
        # while the chat is used and the sweep is stopped.
        await start_sweep(pilot, sweep, "0,all", gen_tokens=LONG_GEN_TOKENS)
        await pilot.press("c")  # back to the chat: the sweep goes on
        await wait_until(pilot, lambda: app.screen is main)
        await submit(pilot, app, "sent while the sweep runs")
        await wait_until(pilot, lambda: main.conversation.last_role == "user")
        assert not main.generating and run.running
        assert any("sent when it ends" in n.message for n in app._notifications)

        sweep = await open_sweep(pilot, app)  # the same run, shown again
        assert sweep.run is run
        assert run.running and not run.rows
        await pilot.press("escape")  # stop after the measurement at hand, and close
        await wait_until(pilot, lambda: app.screen is main)
        await wait_until(pilot, lambda: run.state == "stopped", SWEEP_TIMEOUT_S)
        assert run.result is not None
        assert [level.status for level in run.result.levels] == ["ok", "cancelled"]
        # The model comes back as it was, and the waiting message gets its reply.
        await wait_until(
            pilot,
            lambda: main.conversation.last_role == "assistant" and not main.generating,
            SWEEP_TIMEOUT_S,
        )
        assert main.loaded is not None and main.loaded.offloaded_layers == 4
        assert [view.role for view in main.query_one(ChatView).messages()] == [
            "user",
            "assistant",
        ]


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_the_sweep_screen_fits_small_and_large_terminals(
    size: tuple[int, int], model_8l: Path, tmp_path: Path
) -> None:
    """Without a GPU device only CPU only is measured; the rest say why they were skipped."""
    app = app_with_store(model_8l, tmp_path / "conversations.sqlite3")
    async with app.run_test(size=size) as pilot:
        main = app.main_screen
        await wait_until(pilot, lambda: main.loaded is not None)
        sweep = await open_sweep(pilot, app)
        await start_sweep(pilot, sweep, "0,4,all")
        await wait_for_end(pilot, sweep)
        await pilot.pause()
        rows = cells(sweep)
        assert [row[0] for row in rows] == ["0", "4", "all"]
        assert rows[1][7] == "skipped: no GPU device: every layer stays on the CPU"
        table = sweep.query_one(SweepTable)
        width, height = size
        assert table.region.height >= 4 and table.region.bottom <= height
        assert table.region.width == width
        chart = sweep.query_one(SweepChart)
        assert chart.region.height >= 5 and chart.region.bottom <= height - 1  # the footer
        about_shown = sweep.query_one("#about-box").display
        assert about_shown == (height >= 36)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is main)
        await wait_until(pilot, lambda: main.loaded is not None and not main.model_loading)
