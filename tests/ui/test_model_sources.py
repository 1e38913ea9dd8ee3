"""Where models come from, from the keyboard: the Hugging Face tab's key and palette command, and
models opened from outside the scanned folders listed in the model browser."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from textual.widgets import Footer, Input, Markdown, TabbedContent

from tests.ui.test_app import build, local, wait_until
from tui_llm import config
from tui_llm.app import TuiLlmApp
from tui_llm.catalog.discovery import LocalModel
from tui_llm.catalog.metadata import read_model_info
from tui_llm.screens.help import HelpScreen
from tui_llm.screens.main import MainScreen
from tui_llm.widgets.browser import ModelBrowser
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


def browser_paths(app: TuiLlmApp) -> list[Path]:
    browser = app.main_screen.query_one(ModelBrowser)
    return [Path(model.path) for model in browser.models]


async def test_models_opened_elsewhere_are_listed_once(
    tiny_model: Path, model_8l: Path, tmp_path: Path
) -> None:
    """The command line's model, from outside the scanned folder, is listed once it is loaded;
    a recent model from another folder is listed; a model that is both scanned and recent (by a
    symlinked folder's path) is listed once, under the scan's name."""
    scanned = tmp_path / "scanned"
    scanned.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    opened = elsewhere / "opened.gguf"
    opened.write_bytes(tiny_model.read_bytes())
    recent = tmp_path / "other" / "recent.gguf"
    recent.parent.mkdir()
    recent.write_bytes(tiny_model.read_bytes())
    found = scanned / "found.gguf"
    found.write_bytes(model_8l.read_bytes())
    link = tmp_path / "link-to-scanned"
    link.symlink_to(scanned, target_is_directory=True)

    app = build(opened, scanner=local([found]))
    app.settings = config.Settings(
        recent_models=[
            str(recent),
            str(found),
            str(link / "found.gguf"),
            str(tmp_path / "gone.gguf"),
        ]
    )
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        browser = screen.query_one(ModelBrowser)
        await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
        await wait_until(pilot, lambda: len(browser.models) == 3)
        listed = browser_paths(app)
        assert found in listed  # the scan's entry, not the recent list's other path to it
        assert sorted(os.path.realpath(p) for p in listed) == sorted(
            os.path.realpath(p) for p in (found, opened, recent)
        )
        names = {Path(m.path).name: m.display_name for m in browser.models}
        assert names["opened.gguf"] == "opened.gguf"
        assert all(m.info is not None for m in browser.models)
        await wait_until(pilot, lambda: app.fit_labels.get(str(opened)) is not None)


async def test_a_model_loaded_later_from_elsewhere_joins_the_list(
    tiny_model: Path, model_8l: Path, tmp_path: Path
) -> None:
    """Loading a model from outside the scanned folders (the picker, F2) lists it; loading the
    scanned one again adds nothing."""
    scanned = tmp_path / "scanned"
    scanned.mkdir()
    found = scanned / "found.gguf"
    found.write_bytes(model_8l.read_bytes())
    outside = tmp_path / "outside" / "later.gguf"
    outside.parent.mkdir()
    outside.write_bytes(tiny_model.read_bytes())

    app = build(scanner=local([found]))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        browser = screen.query_one(ModelBrowser)
        await wait_until(pilot, lambda: app.engine.ready is not None and len(browser.models) == 1)
        app.request_load(outside)
        await wait_until(pilot, lambda: len(browser.models) == 2)
        assert browser_paths(app)[-1].name == "later.gguf"
        app.request_load(found)
        await wait_until(
            pilot,
            lambda: (
                screen.model_path is not None
                and screen.model_path.name == "found.gguf"
                and not screen.model_loading
            ),
        )
        workers = [w for w in app.workers if w.group == "opened-models"]
        await wait_until(pilot, lambda: all(w.is_finished for w in workers))
        await pilot.pause()
        assert len(browser.models) == 2


async def test_a_model_loaded_before_the_scan_finds_it_is_listed_once(
    model_8l: Path, tmp_path: Path
) -> None:
    """The command line's model lies in a folder the scan reaches through a symlink; loaded
    before the scan gets there, it is listed at once by its file name, and the scan's entry
    (another path to the same file) then takes its place instead of a second row."""
    scanned = tmp_path / "scanned"
    scanned.mkdir()
    found = scanned / "found.gguf"
    found.write_bytes(model_8l.read_bytes())
    link = tmp_path / "models-link"
    link.symlink_to(scanned, target_is_directory=True)
    scan_may_go = threading.Event()

    def scan() -> list[LocalModel]:
        scan_may_go.wait(60)
        path = link / "found.gguf"
        return [LocalModel(path, "folder", "scanned/found", read_model_info(path), None)]

    app = build(found, scanner=scan)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            browser = app.main_screen.query_one(ModelBrowser)
            await wait_until(pilot, lambda: len(browser.models) == 1)
            assert browser.models[0].display_name == "found.gguf"
            scan_may_go.set()
            await wait_until(pilot, lambda: browser.models[0].display_name == "scanned/found")
            workers = [w for w in app.workers if w.group in ("scan", "opened-models")]
            await wait_until(pilot, lambda: all(w.is_finished for w in workers))
            await pilot.pause()
            assert browser_paths(app) == [link / "found.gguf"]
    finally:
        scan_may_go.set()


async def test_recent_models_are_listed_without_a_scan(tiny_model: Path) -> None:
    """With no folder scan at all, the recent models still fill the browser."""
    app = build()
    app.autostart_engine = False
    app.settings = config.Settings(recent_models=[str(tiny_model)])
    async with app.run_test(size=(160, 48)) as pilot:
        browser = app.main_screen.query_one(ModelBrowser)
        await wait_until(pilot, lambda: browser_paths(app) == [tiny_model])
        assert browser.models[0].info is not None
