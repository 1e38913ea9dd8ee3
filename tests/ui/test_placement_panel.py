"""The offload panel beyond layers, driven with Pilot on the real engine: expert layers kept in
RAM for a mixture-of-experts model, and the split between two RPC servers standing in for GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.test_app import build, send, wait_until
from tui_llm import config
from tui_llm.engine.logparse import totals_by_device
from tui_llm.engine.protocol import SamplingParams
from tui_llm.screens.split import SplitScreen
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.offload import OffloadPanel

pytestmark = pytest.mark.rpc


def text_of(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def test_expert_layers_move_to_ram_with_single_keys_and_reload_keeps_the_chat(
    rpc_server: str, moe_model: Path
) -> None:
    app = build(moe_model, rpc_servers=(rpc_server,), offload="all", use_mmap=False)
    app.sampling = SamplingParams(temperature=0.0, max_tokens=12, seed=1)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        panel = screen.query_one(OffloadPanel)
        gauge = screen.query_one(GpuGauge)
        await wait_until(pilot, lambda: screen.loaded is not None)
        assert screen.loaded is not None
        first = screen.loaded
        assert panel.moe_layers == 4 and panel.pending_cpu_moe == 0
        assert "experts in RAM" in text_of(panel.query_one(".experts"))
        assert text_of(gauge.query_one(".experts")) == "experts: on the GPU with their layers"
        estimate = panel.query_one(".estimate")
        await wait_until(pilot, lambda: "est. VRAM" in text_of(estimate))
        all_on_gpu = text_of(estimate)
        await send(pilot, app, "a first message with several words")

        await pilot.press("ctrl+o", "up", "up")
        assert panel.pending_cpu_moe == 2 and panel.dirty
        assert panel.pending_layers == 5  # the layers stay as they are
        assert "2 / 4 layers · was 0" in text_of(panel.query_one(".experts"))
        await wait_until(pilot, lambda: text_of(estimate) not in ("", all_on_gpu))
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                screen.loaded is not None
                and screen.loaded is not first
                and not screen.model_loading
            ),
        )
        loaded = screen.loaded
        assert loaded is not None and loaded.settings.n_cpu_moe == 2
        assert loaded.offloaded_layers == 5 and loaded.kv_restored_tokens > 0
        # Two layers' experts left RPC0 for host memory.
        before = totals_by_device([b for b in first.buffers if b.kind == "model"], first.devices)
        after = totals_by_device([b for b in loaded.buffers if b.kind == "model"], loaded.devices)
        assert after["RPC0"] < before["RPC0"] and after["CPU"] > before["CPU"]
        assert text_of(gauge.query_one(".experts")) == "experts: CPU for 2/4 layers"
        assert not panel.dirty and panel.current_cpu_moe == 2
        assert config.profile_for(app.settings, moe_model).n_cpu_moe == 2

        # x puts every expert layer in RAM; Esc goes back to what is loaded.
        await pilot.press("ctrl+o", "x")
        assert panel.pending_cpu_moe == 4
        await pilot.press("escape")
        assert panel.pending_cpu_moe == 2 and not panel.dirty


async def test_a_dense_model_has_no_expert_control(rpc_server: str, model_8l: Path) -> None:
    app = build(model_8l, rpc_servers=(rpc_server,), offload="all")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        panel = screen.query_one(OffloadPanel)
        await wait_until(pilot, lambda: screen.loaded is not None)
        await pilot.press("ctrl+o", "up", "x")
        assert panel.moe_layers == 0 and panel.pending_cpu_moe == 0 and not panel.dirty
        assert text_of(panel.query_one(".experts")) == ""
        assert text_of(screen.query_one(GpuGauge).query_one(".experts")) == ""


async def test_the_split_over_two_devices_changes_in_the_panel(
    rpc_server: str, second_rpc_server: str, model_8l: Path
) -> None:
    app = build(model_8l, rpc_servers=(rpc_server, second_rpc_server), offload="all")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        panel = screen.query_one(OffloadPanel)
        gauge = screen.query_one(GpuGauge)
        await wait_until(pilot, lambda: screen.loaded is not None)
        first = screen.loaded
        assert panel.devices == ("RPC0", "RPC1")
        assert "split by free memory over RPC0, RPC1" in text_of(panel.query_one(".devices"))
        estimate = panel.query_one(".estimate")
        await wait_until(pilot, lambda: "RPC1" in text_of(estimate))

        await pilot.press("ctrl+o", "s")
        await wait_until(pilot, lambda: isinstance(app.screen, SplitScreen))
        await pilot.press("1", ":", "3", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SplitScreen))
        assert panel.tensor_split == (1.0, 3.0) and panel.dirty
        assert "split 1:3 over RPC0, RPC1" in text_of(panel.query_one(".devices"))
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                screen.loaded is not None
                and screen.loaded is not first
                and not screen.model_loading
            ),
        )
        loaded = screen.loaded
        assert loaded is not None and loaded.settings.tensor_split == (1.0, 3.0)
        layers = {entry.device: entry.layers for entry in loaded.layers_by_device}
        assert 0 < layers["RPC0"] < layers["RPC1"]
        devices = text_of(gauge.query_one(".devices"))
        assert f"RPC0 127.0.0.1:{rpc_server.split(':')[1]}" in devices or "RPC0" in devices
        assert "split 25%" in devices and "split 75%" in devices
        assert f"{layers['RPC1']} layers" in devices
        await wait_until(pilot, lambda: "RPC0" in text_of(estimate) and "RPC1" in text_of(estimate))


async def test_a_split_that_cannot_be_read_says_why(
    rpc_server: str, second_rpc_server: str, model_8l: Path
) -> None:
    app = build(model_8l, rpc_servers=(rpc_server, second_rpc_server), offload=0)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        panel = screen.query_one(OffloadPanel)
        await wait_until(pilot, lambda: screen.loaded is not None)
        await pilot.press("ctrl+o", "s")
        await wait_until(pilot, lambda: isinstance(app.screen, SplitScreen))
        await pilot.press("1", ":", "2", ":", "3", "enter")
        error = app.screen.query_one(".error")
        await wait_until(pilot, lambda: "one proportion per device" in text_of(error))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, SplitScreen))
        assert panel.tensor_split == () and not panel.dirty
        await pilot.press("m", "g")
        assert panel.split_mode == "row" and panel.main_gpu == 1 and panel.dirty
