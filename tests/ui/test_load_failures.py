"""A load that fails: the model loaded before comes back, once, and never in a loop."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.engine.test_engine import write_refused_model
from tests.ui.test_app import build, wait_until
from tui_llm.app import TuiLlmApp


def count_loads(app: TuiLlmApp) -> list[str]:
    """The file names the engine is asked to load from now on, in order."""
    loads: list[str] = []
    engine_load = app.engine.load

    async def counting_load(settings, *args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append(Path(settings.model_path).name)
        return await engine_load(settings, *args, **kwargs)

    app.engine.load = counting_load  # type: ignore[method-assign]
    return loads


async def test_a_failed_load_brings_back_the_previous_model(
    tiny_model: Path, tmp_path: Path
) -> None:
    app = build(tiny_model)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        loads = count_loads(app)
        screen.load_model(write_refused_model(tmp_path))
        await wait_until(pilot, lambda: len(loads) == 2 and not screen.model_loading)
        assert loads == ["unknown-arch.gguf", tiny_model.name]
        assert screen.loaded is not None
        assert Path(screen.loaded.settings.model_path) == tiny_model


async def test_when_the_previous_model_fails_too_nothing_is_loaded_and_it_stops(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Case: the previous model's file was removed; it was reloaded again and again, for ever."""
    doomed = shutil.copy(tiny_model, tmp_path / "doomed.gguf")
    app = build(Path(doomed))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        loads = count_loads(app)
        Path(doomed).unlink()
        screen.load_model(write_refused_model(tmp_path))
        await wait_until(pilot, lambda: not screen.model_loading and screen.loaded is None)
        for _ in range(10):  # nothing starts another load afterwards
            await pilot.pause(0.05)
        assert not screen.model_loading
        assert loads[:2] == ["unknown-arch.gguf", "doomed.gguf"]
        assert loads.count("doomed.gguf") == 1
