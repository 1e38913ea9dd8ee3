"""The command palette: the fuzzy model picker and every action of the app by name."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual.app import SystemCommand
from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider
from textual.content import Content

from tui_llm.widgets.literal import literal, literal_markup

if TYPE_CHECKING:
    from tui_llm.app import TuiLlmApp
    from tui_llm.screens.main import MainScreen


def _tui(provider: Provider) -> TuiLlmApp:
    """The app, typed: this module never imports the app module (it imports this one)."""
    return cast("TuiLlmApp", provider.app)


def model_prompt(path: Path, matcher: Matcher | None = None) -> Content:
    """The file name (its matched letters highlighted) over its folder, dimmed; both as they are.

    The folder is part of the prompt, not the hit's ``help``, which the palette reads as markup.
    """
    name = literal(path.name, one_line=True)
    if matcher is not None:
        _score, offsets = matcher.fuzzy_search.match(matcher.query, name.plain)
        for offset in offsets:
            if not name.plain[offset].isspace():
                name = name.stylize(matcher.match_style, offset, offset + 1)
    return Content.assemble(name, "\n", literal(str(path.parent), style="dim", one_line=True))


class ModelCommands(Provider):
    """The fuzzy model picker: every model found, recent ones first."""

    async def discover(self) -> Hits:
        app = _tui(self)
        for path in app.picker_models()[:30]:
            yield DiscoveryHit(model_prompt(path), partial(app.request_load, path), text=path.name)

    async def search(self, query: str) -> Hits:
        app = _tui(self)
        matcher = self.matcher(query)
        for path in app.picker_models():
            score = matcher.match(f"{path.name} {path.parent.name}")
            if score > 0:
                yield Hit(
                    score,
                    model_prompt(path, matcher),
                    partial(app.request_load, path),
                    text=path.name,
                )


def system_commands(app: TuiLlmApp, main: MainScreen) -> Iterator[SystemCommand]:
    """The app's own palette entries, each with its key."""
    yield SystemCommand("Help: keys", "Every key of tui-llm (F1)", app.action_help)
    yield SystemCommand(
        "Pick a model", "Fuzzy search of local models (Ctrl+L)", app.action_pick_model
    )
    yield SystemCommand(
        "Recent models", "Load one of the last models (F2)", app.action_recent_models
    )
    yield SystemCommand(
        "Hugging Face",
        "Search the Hub and download a model that fits (F4)",
        main.show_hub,
    )
    yield SystemCommand(
        "Next model",
        "Load the next model in the list (F8)",
        partial(main.action_cycle_model, 1),
    )
    yield SystemCommand(
        "Previous model", "Load the previous model (F7)", partial(main.action_cycle_model, -1)
    )
    yield SystemCommand("New chat", "Clear the conversation (Ctrl+N)", main.action_new_chat)
    yield SystemCommand("Conversations", "Open a saved conversation (F3)", main.action_history)
    yield SystemCommand("Regenerate", "Regenerate the last reply (Ctrl+R)", main.action_regenerate)
    yield SystemCommand("Edit last message", "Edit and resend (Ctrl+E)", main.action_edit_last)
    yield SystemCommand("Copy last reply", "OSC 52 clipboard (Ctrl+Y)", main.action_copy_reply)
    yield SystemCommand("Copy last code block", "OSC 52 clipboard (Ctrl+K)", main.action_copy_code)
    yield SystemCommand(
        "Show or hide thinking",
        "A reasoning model's thinking in the last reply (F6)",
        main.action_toggle_thinking,
    )
    yield SystemCommand(
        "Sampling settings", "Temperature, top-p, system prompt (Ctrl+T)", main.action_sampling
    )
    yield SystemCommand(
        "GPU offload", "Focus the offload control (Ctrl+O)", main.action_focus_offload
    )
    yield SystemCommand(
        "Offload sweep",
        "Tokens/s at each GPU offload level of the loaded model (b in the offload panel)",
        main.action_offload_sweep,
    )
    yield SystemCommand(
        "Restart engine",
        "After a crash, with fewer GPU layers (F5)",
        main.action_restart_engine,
    )
    for number, path in enumerate(app.recent_models()[:9], start=1):
        # A system command's title and help are read as markup: escaped, they show as they are.
        yield SystemCommand(
            f"Load recent {number}: {literal_markup(path.name)}",
            literal_markup(str(path.parent)),
            partial(app.request_load, path),
        )
