"""Settings in the app: a file that does not parse is never overwritten by what the app saves,
and the user is told once where those saves went; misspelt keys are named once."""

from __future__ import annotations

from pathlib import Path

from tests.ui.test_app import wait_until
from tui_llm import config
from tui_llm.app import make_app
from tui_llm.engine.client import EngineClient


def notes(app: object, text: str) -> list[str]:
    return [str(n.message) for n in app._notifications if text in str(n.message)]  # type: ignore[attr-defined]


async def test_a_broken_settings_file_survives_loads_and_the_user_is_told_where_saves_went(
    user_dirs: Path, model_8l: Path, tiny_model: Path
) -> None:
    settings_file = user_dirs / "config" / "settings.toml"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    broken = 'theme = "nord"\n[load\nn_ctx = 99\n'
    settings_file.write_text(broken)
    settings, warning = config.load_settings()
    app = make_app(settings, EngineClient(), initial_model=model_8l, settings_warning=warning)
    app.load_overrides = {"n_ctx": 512, "n_threads": 1, "offload": 0}
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        unsaved = settings_file.with_name("settings.unsaved.toml")
        await wait_until(pilot, lambda: bool(notes(app, "does not parse")))
        screen.load_model(tiny_model)  # a second save: the note is not repeated
        await wait_until(
            pilot, lambda: config.load_settings(unsaved)[0].last_model == str(tiny_model)
        )
        await pilot.pause(0.2)
        told = notes(app, "does not parse")
        assert len(told) == 1 and str(unsaved) in told[0] and "left as is" in told[0]
        assert any("settings.unsaved.toml" in n for n in notes(app, "not valid TOML"))
    assert settings_file.read_text() == broken
    assert not list(settings_file.parent.glob("settings.toml.broken-*"))


async def test_misspelt_keys_are_named_at_start(user_dirs: Path) -> None:
    settings_file = user_dirs / "config" / "settings.toml"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text("temprature = 0.2\n[sampling]\nthemee = 'nord'\n")
    settings, warning = config.load_settings()
    app = make_app(settings, EngineClient(), settings_warning=warning, save_settings=False)
    app.autostart_engine = False
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        named = notes(app, "unknown keys")
        assert len(named) == 1
        assert "temprature (sampling.temperature?)" in named[0]
        assert "sampling.themee (theme?)" in named[0]
