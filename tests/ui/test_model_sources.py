"""Where models come from, from the keyboard: the Hugging Face tab's key and palette command."""

from __future__ import annotations

import pytest
from textual.widgets import Footer, Input, Markdown, TabbedContent

from tests.ui.test_app import build, wait_until
from tui_llm.screens.help import HelpScreen
from tui_llm.screens.main import MainScreen
from tui_llm.widgets.hub import HubPanel
from tui_llm.widgets.prompt import PromptInput

SIZES = [(160, 48), (80, 24)]


def hub_search(screen: MainScreen) -> Input:
    return screen.query_one(HubPanel).query_one("#hub-query", Input)


def sidebar_shown(screen: MainScreen) -> bool:
    return bool(screen.query_one("#sidebar").display)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub tab as with a network: its search box is enabled (nothing is searched here)."""
    monkeypatch.delenv("HF_HUB_OFFLINE")


@pytest.mark.parametrize("size", SIZES)
async def test_f4_opens_the_hub_search_and_goes_back(size: tuple[int, int], online: None) -> None:
    """F4 shows the Hub tab with the search box focused; F4 again is the chat; Ctrl+B from the
    Hub is the local browser. In 80 columns the sidebar opens over the chat and closes again."""
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=size) as pilot:
        screen = app.main_screen
        tabs = screen.query_one(TabbedContent)
        prompt = screen.query_one(PromptInput)
        narrow = size[0] < 140
        assert sidebar_shown(screen) is not narrow

        await pilot.press("f4")
        await wait_until(pilot, lambda: hub_search(screen).has_focus)
        assert tabs.active == "tab-hub"
        assert sidebar_shown(screen)
        assert hub_search(screen).region.width > 0  # on screen, not behind the chat

        await pilot.press("f4")
        await wait_until(pilot, lambda: prompt.has_focus)
        assert sidebar_shown(screen) is not narrow
        assert screen.query_one("#center").display

        await pilot.press("f4")
        await wait_until(pilot, lambda: hub_search(screen).has_focus)
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: screen.query_one("#model-filter", Input).has_focus)
        assert tabs.active == "tab-local"
        assert sidebar_shown(screen)

        await pilot.press("f4")  # from the local browser: the Hub, not the chat
        await wait_until(pilot, lambda: hub_search(screen).has_focus)
        assert tabs.active == "tab-hub"


@pytest.mark.parametrize("size", SIZES)
async def test_palette_command_opens_the_hub_search(size: tuple[int, int], online: None) -> None:
    """Ctrl+P, "Hugging Face", Enter: the Hub tab with its search box focused, also when it
    was open already (the command opens, it does not toggle)."""
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=size) as pilot:
        screen = app.main_screen
        for _ in range(2):
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: app.screen is not screen)
            await pilot.press(*"hugging face")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.screen is screen)
            await wait_until(pilot, lambda: hub_search(screen).has_focus)
            assert screen.query_one(TabbedContent).active == "tab-hub"
            assert sidebar_shown(screen)


async def test_offline_f4_focuses_the_hub_results() -> None:
    """Offline the search box is disabled: F4 still lands in the Hub tab, and F4 goes back."""
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        hub = screen.query_one(HubPanel)
        await wait_until(pilot, lambda: hub.offline)
        await pilot.press("f4")
        await wait_until(pilot, lambda: hub.query_one("#hub-results").has_focus)
        await pilot.press("f4")
        await wait_until(pilot, lambda: screen.query_one(PromptInput).has_focus)


async def test_footer_and_help_show_the_hub_key() -> None:
    """The footer shows F4 Hub; F1's help has a row for F4, and names every key of the screen."""
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(160, 48)) as pilot:
        footer = app.main_screen.query_one(Footer)
        await wait_until(pilot, lambda: bool(footer.query("FooterKey")))
        shown = {(key.key, key.description) for key in footer.query("FooterKey")}
        assert ("f4", "Hub") in shown

        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = app.screen.query_one(Markdown).source
        rows = [line for line in help_text.splitlines() if line.startswith("| F4 |")]
        assert len(rows) == 1 and "Hugging Face" in rows[0]
        for binding in MainScreen.BINDINGS:
            key = getattr(binding, "key", "")
            if key.isdigit():
                continue  # 1-9: one row
            shown_key = (
                "Esc" if key == "escape" else "+".join(p.capitalize() for p in key.split("+"))
            )
            assert shown_key in help_text, key
