"""The sampling panel (Ctrl+T) refuses a value outside its setting's range and keeps the dialog."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Static

from tests.ui.test_app import wait_until
from tui_llm.engine.protocol import SamplingParams
from tui_llm.screens.sampling import SamplingScreen
from tui_llm.widgets.inputs import InertInput

Result = tuple[SamplingParams, str] | None


class PanelHost(App[None]):
    """The sampling panel over an empty screen; what it returns lands in ``results``."""

    def __init__(self, sampling: SamplingParams) -> None:
        super().__init__()
        self.sampling = sampling
        self.results: list[Result] = []
        self.panel = SamplingScreen(sampling, "Be brief.")

    def on_mount(self) -> None:
        self.push_screen(self.panel, callback=self.results.append)


async def type_into(pilot: Pilot[Any], panel: SamplingScreen, name: str, text: str) -> None:
    """Click a field, clear it (Ctrl+A to its start, Ctrl+K deletes the rest), and type."""
    field = panel.query_one(f"#field-{name}", InertInput)
    await pilot.click(field)
    await wait_until(pilot, lambda: field.has_focus)
    await pilot.press("ctrl+a", "ctrl+k", *text)
    assert field.value == text


def error_line(panel: SamplingScreen) -> str:
    return str(panel.query_one(".error", Static).render())


async def test_top_p_of_7_is_refused_then_a_valid_value_is_saved() -> None:
    """Top p 7 gets a one-line message naming the field and its range; the panel stays open
    with the 7 still typed. Typing 0.5 instead saves."""
    app = PanelHost(SamplingParams())
    async with app.run_test(size=(100, 40)) as pilot:
        panel = app.panel
        await wait_until(pilot, lambda: app.screen is panel)
        await type_into(pilot, panel, "top_p", "7")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: error_line(panel) != "")
        assert error_line(panel) == "Top p: '7' is out of range (takes a number from 0 to 1)"
        assert app.screen is panel and app.results == []
        field = panel.query_one("#field-top_p", InertInput)
        assert field.value == "7" and field.has_focus

        await type_into(pilot, panel, "top_p", "0.5")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.results != [])
    assert app.results == [(dataclasses.replace(SamplingParams(), top_p=0.5), "Be brief.")]


REFUSED = [
    ("temperature", "101", "Temperature: '101' is out of range (takes a number from 0 to 100)"),
    ("temperature", "nan", "Temperature: 'nan' is out of range (takes a number from 0 to 100)"),
    ("min_p", "-0.1", "Min p: '-0.1' is out of range (takes a number from 0 to 1)"),
    ("top_k", "-1", "Top k: '-1' is out of range (takes a whole number from 0 up)"),
    ("top_k", "1.5", "Top k: not a number: '1.5' (takes a whole number from 0 up)"),
    ("max_tokens", "0", "Max tokens: '0' is out of range (takes a whole number from 1 up)"),
    (
        "seed",
        "-1",
        "Seed: '-1' is out of range (takes a whole number from 0 up, or empty for random)",
    ),
]


@pytest.mark.parametrize(("name", "typed", "message"), REFUSED)
async def test_out_of_range_values_are_refused(name: str, typed: str, message: str) -> None:
    app = PanelHost(SamplingParams())
    async with app.run_test(size=(100, 40)) as pilot:
        panel = app.panel
        await wait_until(pilot, lambda: app.screen is panel)
        await type_into(pilot, panel, name, typed)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: error_line(panel) != "")
        # The dialog is 72 columns wide: the message is a line, wrapped at most once.
        assert error_line(panel).replace("\n", " ") == message
        assert app.screen is panel and app.results == []
        assert panel.query_one(f"#field-{name}", InertInput).value == typed


async def test_values_at_the_ends_of_each_range_are_accepted() -> None:
    """0 and 1 for top p and min p, 0 for temperature and top k, 1 token, an empty seed."""
    app = PanelHost(SamplingParams(seed=7))
    typed = {
        "temperature": "0",
        "top_p": "1",
        "top_k": "0",
        "min_p": "0",
        "repeat_penalty": "100",
        "max_tokens": "1",
        "seed": "",
    }
    async with app.run_test(size=(100, 40)) as pilot:
        panel = app.panel
        await wait_until(pilot, lambda: app.screen is panel)
        for name, text in typed.items():
            await type_into(pilot, panel, name, text)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.results != [])
    expected = SamplingParams(
        temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=100.0, max_tokens=1
    )
    assert app.results == [(expected, "Be brief.")]
