"""The app driven with Pilot, on the real engine and generated models."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets.markdown import MarkdownFence

from tests import fake_pynvml
from tui_llm import config
from tui_llm.app import TuiLlmApp, make_app
from tui_llm.catalog.discovery import LocalModel
from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import SamplingParams
from tui_llm.gpu import MonitorThread, create_monitor
from tui_llm.messages import LoadModelRequested
from tui_llm.widgets.browser import ModelBrowser
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.offload import OffloadPanel
from tui_llm.widgets.prompt import PromptInput
from tui_llm.widgets.textline import TextLine

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


async def wait_until(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 30) -> None:
    """Poll the app until ``predicate`` holds (never sleep and hope)."""
    steps = int(timeout / 0.05)
    for _ in range(steps):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {predicate}")


def local(paths: Iterable[Path]) -> Callable[[], list[LocalModel]]:
    def scan() -> list[LocalModel]:
        return [
            LocalModel(path, "folder", path.name, read_model_info(path), None) for path in paths
        ]

    return scan


def build(
    model: Path | None = None,
    monitor: Any = None,
    scanner: Callable[[], Iterable[Any]] | None = None,
    **overrides: Any,
) -> TuiLlmApp:
    app = make_app(
        config.Settings(),
        EngineClient(),
        monitor,
        scanner,
        initial_model=model,
        save_settings=False,
    )
    app.load_overrides = {"n_ctx": 512, "n_threads": 1, "offload": 0, **overrides}
    app.sampling = SamplingParams(temperature=0.0, max_tokens=24, seed=1)
    return app


async def submit(pilot: Pilot[Any], app: TuiLlmApp, text: str) -> None:
    """Type ``text`` into the message box and press Enter."""
    prompt = app.main_screen.query_one(PromptInput)
    prompt.focus()
    await pilot.pause()
    prompt.text = text
    await pilot.press("enter")


async def send(pilot: Pilot[Any], app: TuiLlmApp, text: str) -> None:
    await submit(pilot, app, text)
    await wait_until(
        pilot, lambda: app.main_screen.generating or bool(app.main_screen.conversation.turns)
    )
    await wait_until(pilot, lambda: not app.main_screen.generating)


async def start_long_reply(pilot: Pilot[Any], app: TuiLlmApp, text: str) -> None:
    """Send ``text`` for a reply with no token limit; return once some of it is on screen."""
    app.sampling = SamplingParams(temperature=0.0, max_tokens=100000)
    await submit(pilot, app, text)
    chat = app.main_screen.query_one(ChatView)
    await wait_until(pilot, lambda: len(chat.messages()[-1].content) > 5)


def roles(app: TuiLlmApp) -> list[str]:
    return [view.role for view in app.main_screen.query_one(ChatView).messages()]


async def test_send_stop_regenerate_edit(model_8l: Path) -> None:
    app = build(model_8l, n_ctx=4096)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "hello there")
        assert roles(app) == ["user", "assistant"]
        first = screen.conversation.last_reply()
        assert first
        stats = str(screen.query_one(ChatView).messages()[-1].query_one(".stats").render())
        assert "tok/s" in stats and "first token" in stats

        # Stop mid-stream: the partial reply stays.
        app.sampling = SamplingParams(temperature=0.0, max_tokens=5000)
        await submit(pilot, app, "go on for a long time")
        await wait_until(pilot, lambda: screen.generating)
        await wait_until(pilot, lambda: len(screen.query_one(ChatView).messages()[-1].content) > 5)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.generating)
        assert "stopped" in str(
            screen.query_one(ChatView).messages()[-1].query_one(".stats").render()
        )
        assert screen.conversation.last_role == "assistant"

        # Regenerate replaces the last reply; the input stays usable meanwhile.
        app.sampling = SamplingParams(temperature=0.0, max_tokens=12)
        turns_before = len(screen.conversation.turns)
        await pilot.press("ctrl+r")
        await wait_until(
            pilot, lambda: screen.conversation.last_role == "assistant" and not screen.generating
        )
        assert len(screen.conversation.turns) == turns_before
        assert roles(app) == ["user", "assistant", "user", "assistant"]

        # Edit the last message: it comes back into the box and leaves the chat.
        await pilot.press("ctrl+e")
        assert screen.query_one(PromptInput).text == "go on for a long time"
        assert roles(app) == ["user", "assistant"]
        await submit(pilot, app, "an edited question")
        await wait_until(pilot, lambda: not screen.generating and len(roles(app)) == 4)
        assert screen.conversation.turns[2].content == "an edited question"

        # Copy the last reply with OSC 52.
        await pilot.press("ctrl+y")
        assert app.clipboard == screen.conversation.last_reply()


@pytest.mark.rpc
async def test_offload_change_reloads_in_background_and_keeps_the_chat(
    rpc_server: str, model_8l: Path
) -> None:
    app = build(model_8l, rpc_servers=(rpc_server,))
    app.sampling = SamplingParams(temperature=0.0, max_tokens=16)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        panel = screen.query_one(OffloadPanel)
        await wait_until(pilot, lambda: screen.loaded is not None)
        assert screen.loaded is not None and screen.loaded.offloaded_layers == 0
        await send(pilot, app, "a first message with several words")
        await pilot.press("ctrl+o")
        assert panel.has_focus
        await pilot.press("right", "right", "right", "right")
        assert panel.pending_layers == 4 and panel.dirty
        await pilot.press("end")
        assert panel.pending_layers == 9
        seen_loading = []
        original = panel.show_progress

        def spy(progress: float | None) -> None:
            seen_loading.append(progress)
            original(progress)

        panel.show_progress = spy  # type: ignore[method-assign]
        statuses: list[str] = []

        def on_status(text: str) -> None:
            statuses.append(text)

        screen.watch(panel, "status", on_status, init=False)
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: screen.loaded is not None and screen.loaded.offloaded_layers == 9
        )
        assert any(p is not None and p > 0 for p in seen_loading)
        # Past the weights (100%) the panel says the context is being set up, then the result.
        assert any("setting up the context" in text for text in statuses), statuses
        assert statuses[-1].startswith("Loaded in")
        loaded = screen.loaded
        assert loaded.kv_restored_tokens > 0
        assert any(b.device.startswith("RPC") and b.kind == "kv" for b in loaded.buffers)
        assert "GPU layers 9 / 9" in str(panel.query_one(".split").render())
        estimate = panel.query_one(".estimate")
        await wait_until(pilot, lambda: "est. VRAM" in str(estimate.render()))
        gauge_text = str(screen.query_one(GpuGauge).query_one(".devices").render())
        assert "RPC0" in gauge_text and "9 layers" in gauge_text
        # A load replaces the model: what it holds on the device counts as free for the next one.
        from tui_llm.engine.logparse import totals_by_device

        rpc = next(d for d in loaded.devices if d.name == "RPC0")
        held = totals_by_device(loaded.buffers, loaded.devices)["RPC0"]
        assert held > 0 and app.session.free_gpu_bytes() == rpc.memory_free + held
        assert roles(app) == ["user", "assistant"]

        await pilot.press("ctrl+o")
        await send(pilot, app, "and a second one")
        assert roles(app) == ["user", "assistant", "user", "assistant"]
        views = screen.query_one(ChatView).messages()
        stats = str(views[-1].query_one(".stats").render())
        evaluated = re.search(r"prompt (\d+) \((\d+) evaluated\)", stats)
        assert evaluated is not None
        assert int(evaluated.group(2)) < int(evaluated.group(1))


async def test_switch_models_by_key(tiny_model: Path, model_8l: Path) -> None:
    app = build(scanner=local([tiny_model, model_8l]))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: app.engine.ready is not None and len(app.found_models) == 2)
        # Every layout during the loads keeps the chat and the message box on screen: nothing
        # covers them (a Screen's own ``loading`` would put a spinner over the whole screen).
        covered: list[str] = []

        def check_layout(_screen: object) -> None:
            if screen.query("LoadingIndicator") or not screen.query_one(PromptInput).region:
                covered.append(f"loading={screen.model_loading}")

        screen.screen_layout_refresh_signal.subscribe(screen, check_layout)
        screen.query_one(ChatView).focus()
        await pilot.press("f8")
        await wait_until(pilot, lambda: screen.loaded is not None)
        assert screen.model_path == tiny_model.resolve()
        await pilot.press("f8")
        await wait_until(
            pilot, lambda: screen.model_path == model_8l.resolve() and not screen.model_loading
        )
        await pilot.press("f7")
        await wait_until(
            pilot, lambda: screen.model_path == tiny_model.resolve() and not screen.model_loading
        )
        assert [p.name for p in app.recent_models()][:2] == [tiny_model.name, model_8l.name]
        await pilot.press("f2")
        await pilot.press("2")
        await wait_until(
            pilot, lambda: screen.model_path == model_8l.resolve() and not screen.model_loading
        )
        assert covered == []


async def test_a_split_model_in_the_hugging_face_cache_keeps_its_snapshot_path(
    split_model_in_hf_cache: Path,
) -> None:
    """The blob a snapshot entry links to is named by hash: the shard name must reach llama.cpp,
    the chat and the recent list, or the second shard is not found."""
    snapshot = split_model_in_hf_cache
    app = build(snapshot, scanner=local([snapshot]))
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.main_screen
        empty = screen.query_one(ChatView).query_one(".empty", TextLine)
        await wait_until(pilot, lambda: screen.loaded is not None)
        assert screen.loaded is not None and screen.loaded.settings.model_path == str(snapshot)
        assert screen.model_path == snapshot
        await wait_until(pilot, lambda: "is loaded" in str(empty.shown))
        assert str(empty.shown).startswith("split-2l-00001-of-00002.gguf is loaded")
        assert app.settings.recent_models == [str(snapshot)]
        await wait_until(pilot, lambda: app.found_models == [snapshot])
        assert app.picker_models() == [snapshot]


async def test_bad_model_shows_one_error_and_keeps_the_previous(
    model_8l: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(model_8l.read_bytes()[:3000])
    app = build(model_8l)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "before")
        screen.post_message(LoadModelRequested(broken))
        await wait_until(
            pilot, lambda: any("broken.gguf" in str(n.message) for n in app._notifications)
        )
        await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
        assert screen.model_path == model_8l.resolve()
        await send(pilot, app, "after")
        assert roles(app) == ["user", "assistant", "user", "assistant"]


async def test_engine_crash_keeps_the_conversation_and_restarts(model_8l: Path) -> None:
    app = build(model_8l, n_ctx=4096)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await start_long_reply(pilot, app, "a long reply please")
        app.engine.kill()
        await wait_until(pilot, lambda: not screen.generating)
        banner = str(screen.query_one("#banner").render())
        assert "SIGKILL" in banner and "F5" in banner
        assert screen.conversation.last_role == "assistant"
        partial = screen.conversation.last_reply()
        assert partial
        app.sampling = SamplingParams(temperature=0.0, max_tokens=8)
        await pilot.press("f5")
        await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
        await send(pilot, app, "are you back?")
        assert screen.conversation.turns[1].content == partial
        assert roles(app)[-1] == "assistant"


async def test_control_bytes_in_a_reply_are_inert(model_dir: Path) -> None:
    from tui_llm.catalog.generate import write_llama_gguf

    noisy = write_llama_gguf(model_dir / "bytes.gguf", n_layer=2, n_embd=64, n_vocab=300, seed=9)
    app = build(noisy)
    app.sampling = SamplingParams(
        temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, max_tokens=300, seed=4
    )
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "emit bytes")
        raw = screen.conversation.last_reply() or ""
        assert CONTROL.search(raw), "the model should have produced control bytes"
        view = screen.query_one(ChatView).messages()[-1]
        assert not CONTROL.search(view.content)
        assert not CONTROL.search(view.markdown.source)


async def test_gauge_with_fake_nvml(model_8l: Path) -> None:
    gpu = fake_pynvml.FakeGpu(name="NVIDIA H100 80GB HBM3", memory_total=80 * 2**30)
    nvml = fake_pynvml.FakePynvml([gpu])
    monitor = MonitorThread(create_monitor(nvml), interval_s=0.05)
    app = build(model_8l, monitor=monitor)
    async with app.run_test(size=(160, 48)) as pilot:
        gauge = app.main_screen.query_one(GpuGauge)
        await wait_until(pilot, lambda: "GPU0" in str(gauge.query_one(".gpus").render()))
        text = str(gauge.query_one(".gpus").render())
        assert "NVIDIA H100 80GB HBM3" in text and "2 GiB / 80 GiB" in text
        assert "61°C" in text and "123 W / 450 W" in text and "util 37%" in text
        assert "util" in text and "°C" in text and " W" in text


async def test_gauge_metric_failures_show_na(model_8l: Path) -> None:
    nvml = fake_pynvml.FakePynvml([fake_pynvml.FakeGpu()])
    nvml.fail("nvmlDeviceGetTemperature")
    nvml.fail("nvmlDeviceGetPowerUsage")
    monitor = MonitorThread(create_monitor(nvml), interval_s=0.05)
    app = build(monitor=monitor)
    app.autostart_engine = False
    async with app.run_test(size=(160, 48)) as pilot:
        gauge = app.main_screen.query_one(GpuGauge)
        await wait_until(pilot, lambda: "GPU0" in str(gauge.query_one(".gpus").render()))
        assert "n/a" in str(gauge.query_one(".gpus").render())


async def test_gauge_without_nvml_says_why() -> None:
    nvml = fake_pynvml.FakePynvml(init_error=fake_pynvml.NVMLError_LibraryNotFound)
    monitor = MonitorThread(create_monitor(nvml), interval_s=0.05)
    app = build(monitor=monitor)
    async with app.run_test(size=(160, 48)) as pilot:
        gauge = app.main_screen.query_one(GpuGauge)
        await wait_until(pilot, lambda: app.engine.ready is not None)
        await pilot.pause()
        reason = str(gauge.query_one(".reason").render())
        assert reason == "no NVIDIA driver (libnvidia-ml.so.1 not found)"
        await wait_until(pilot, lambda: "CPU" in str(gauge.query_one(".devices").render()))


async def test_narrow_terminal_collapses_panels(model_8l: Path) -> None:
    app = build(scanner=local([model_8l]))
    app.autostart_engine = False
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.main_screen
        assert screen.has_class("-narrow")
        assert not screen.query_one("#sidebar").display
        await pilot.press("ctrl+b")
        assert screen.query_one("#sidebar").display
        await pilot.press("ctrl+b")
        assert screen.query_one(PromptInput).has_focus


async def test_theme_is_remembered_and_broken_theme_named(user_dirs: Path) -> None:
    themes = user_dirs / "config" / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text("name = \n")
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert any("broken.toml" in str(n.message) for n in app._notifications)
        assert {"tui-llm-dark", "tui-llm-light", "tui-llm-high-contrast"} <= set(
            app.available_themes
        )
        app.theme = "tui-llm-light"
        assert app.settings.theme == "tui-llm-light"


async def test_hub_tab_offline_keeps_local_models_working(model_8l: Path) -> None:
    """HF_HUB_OFFLINE is set by the test environment: the Hub tab says so, local still loads."""
    from textual.widgets import TabbedContent

    from tui_llm.widgets.hub import OFFLINE_TEXT, HubPanel

    app = build(scanner=local([model_8l]))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        screen.query_one(TabbedContent).active = "tab-hub"
        await pilot.pause()
        hub = screen.query_one(HubPanel)
        await wait_until(pilot, lambda: hub.offline)
        assert OFFLINE_TEXT in hub.status_text
        await pilot.press("ctrl+b")
        assert screen.query_one(TabbedContent).active == "tab-local"
        await wait_until(pilot, lambda: app.engine.ready is not None and app.found_models != [])
        screen.query_one(ChatView).focus()
        await pilot.press("f8")
        await wait_until(pilot, lambda: screen.loaded is not None)


async def test_message_sent_while_loading_is_answered_when_ready(model_8l: Path) -> None:
    app = build(model_8l)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await submit(pilot, app, "are you there yet?")
        notes = [str(n.message) for n in app._notifications]
        assert screen.conversation.turns, (notes, app.focused, screen.loaded)
        assert screen.conversation.turns[0].content == "are you there yet?"
        await wait_until(pilot, lambda: screen.conversation.last_role == "assistant")
        assert roles(app) == ["user", "assistant"]


@pytest.mark.parametrize("size", [(160, 48), (80, 24)])
async def test_keys_typed_at_launch_reach_the_message_box(
    model_8l: Path, size: tuple[int, int]
) -> None:
    """From the first frame until well after the first load, the message box has the focus."""
    app = build(model_8l)
    async with app.run_test(size=size) as pilot:
        screen = app.main_screen
        focused: set[str] = set()
        for _ in range(200):
            focused.add(type(app.focused).__name__)
            if screen.loaded is not None and not screen.model_loading:
                break
            await pilot.pause(0.01)
        for _ in range(30):
            await pilot.pause(0.01)
            focused.add(type(app.focused).__name__)
        assert screen.loaded is not None
        assert focused == {"PromptInput"}


async def test_keys_arriving_in_one_burst_with_enter_are_sent(model_8l: Path) -> None:
    """Over SSH, or from a paste without bracketed paste, the text and Enter come in one read.

    The keys before Enter must be in the message before it is sent, and keys after Enter stay
    in the box for the next message.
    """
    from textual import events

    app = build(model_8l)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None and not screen.model_loading)
        burst = [
            *"ello",
            "home",
            "h",
            "end",
            "ctrl+j",
            *"therx",
            "backspace",
            "e",
            "enter",
            *"second",
            "enter",
            *"next",
        ]
        for key in burst:
            named = {"enter": "\r", "ctrl+j": "\n", "backspace": "\x7f"}
            character = named.get(key, key if len(key) == 1 else None)
            app.post_message(events.Key(key, character))
        await wait_until(pilot, lambda: bool(screen.conversation.turns))
        assert screen.conversation.turns[0].content == "hello\nthere"
        await wait_until(pilot, lambda: not screen.generating)
        # The second message came while the reply streamed: refused, and kept in the box with
        # what was typed after it.
        assert [t.content for t in screen.conversation.turns if t.role == "user"] == [
            "hello\nthere"
        ]
        assert screen.query_one(PromptInput).text == "second\nnext"


async def test_a_message_that_cannot_be_sent_stays_in_the_box() -> None:
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(120, 36)) as pilot:
        await submit(pilot, app, "is anyone there?")
        await wait_until(pilot, lambda: bool(app._notifications))
        assert "Load a model first" in str(list(app._notifications)[-1].message)
        assert app.main_screen.query_one(PromptInput).text == "is anyone there?"
        assert not app.main_screen.conversation.turns


async def test_copy_last_code_block(model_8l: Path) -> None:
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.main_screen
        screen.conversation.add_user("show code")
        screen.conversation.add_reply("Here:\n```python\nprint('a')\n```\nand\n```sh\nls -l\n```\n")
        await pilot.press("ctrl+k")
        assert app.clipboard == "ls -l"
        await pilot.press("ctrl+y")
        assert app.clipboard.startswith("Here:")


async def test_copy_code_takes_the_last_code_box_the_chat_shows() -> None:
    """Ctrl+K copies the last box the chat draws as code: here a ~~~ fence in a list item, after
    a ``` fence and before inline ```x``` code, copied without the list's indentation."""
    reply = (
        "Steps:\n\n1. Look:\n   ```sh\n   ls -l\n   ```\n"
        "2. Count:\n   ~~~sh\n   wc -l *.py\n   ~~~\n\nOr write ```x``` inline."
    )
    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.main_screen
        screen.conversation.add_user("steps?")
        screen.conversation.add_reply(reply)
        view = await screen.chat_view.add_message("assistant", reply)
        await wait_until(pilot, lambda: len(view.markdown.query(MarkdownFence)) == 2)
        await pilot.press("ctrl+k")
        assert app.clipboard == "wc -l *.py"
        assert [fence.code for fence in view.markdown.query(MarkdownFence)] == [
            "ls -l",
            app.clipboard,
        ]


async def test_context_meter_warns_near_the_limit(model_8l: Path) -> None:
    app = build(model_8l, n_ctx=256)
    app.sampling = SamplingParams(temperature=0.0, max_tokens=10000)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "fill the context")
        status = screen.query_one("#status")
        assert status.has_class("-warn")
        assert "ctx 256/256" in str(status.render()) or "(9" in str(status.render())
        assert any("context is full" in str(n.message) for n in app._notifications)
        stats = str(screen.query_one(ChatView).messages()[-1].query_one(".stats").render())
        assert "context full" in stats


async def test_sampling_panel_changes_settings() -> None:
    from textual.widgets import Input, TextArea

    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+t")
        await pilot.pause()
        modal = app.screen
        modal.query_one("#field-temperature", Input).value = "0.3"
        modal.query_one("#field-max_tokens", Input).value = "77"
        modal.query_one("#system-prompt", TextArea).text = "Be brief."
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.sampling.temperature == 0.3 and app.sampling.max_tokens == 77
        assert app.main_screen.conversation.system_prompt == "Be brief."
        assert app.settings.system_prompt == "Be brief."
        await pilot.press("ctrl+t")
        await pilot.pause()
        app.screen.query_one("#field-top_k", Input).value = "lots"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "not a number" in str(app.screen.query_one(".error").render())
        await pilot.press("escape")


async def test_help_screen_opens_and_closes() -> None:
    from tui_llm.screens.help import HelpScreen

    app = build()
    app.autostart_engine = False
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_model_picker_loads_the_choice(tiny_model: Path, model_8l: Path) -> None:
    app = build(scanner=local([tiny_model, model_8l]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine.ready is not None and len(app.found_models) == 2)
        await pilot.press("ctrl+l")
        await pilot.pause()
        await pilot.press(*"rand-8l")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.main_screen.model_path == model_8l.resolve())


async def test_broken_settings_file_warns_and_uses_defaults(user_dirs: Path) -> None:
    settings_file = user_dirs / "config" / "settings.toml"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text("theme = [unclosed\n")
    settings, warning = config.load_settings()
    assert warning and "\n" not in warning
    app = make_app(settings, EngineClient(), settings_warning=warning, save_settings=False)
    app.autostart_engine = False
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert any("settings" in str(n.message).lower() for n in app._notifications)
        assert app.theme == "tui-llm-dark"
    assert settings_file.read_text() == "theme = [unclosed\n"


async def test_offload_panel_shows_the_estimate_of_the_pending_value(model_8l: Path) -> None:
    app = build(model_8l)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        panel = screen.query_one(OffloadPanel)
        await wait_until(pilot, lambda: screen.loaded is not None)
        line = panel.query_one(".estimate")
        # No GPU device here (the engine runs without an RPC server): all of it is RAM.
        await wait_until(pilot, lambda: str(line.render()).startswith("est. RAM "))
        before = str(line.render())
        await pilot.press("ctrl+o", "c")
        await wait_until(pilot, lambda: str(line.render()) != before)
        assert str(line.render()).startswith("est. RAM ") and "VRAM" not in str(line.render())
        assert panel.n_ctx == 1024


async def test_conversations_are_saved_and_reopened(model_8l: Path, tmp_path: Path) -> None:
    from tui_llm.screens.history import HistoryScreen
    from tui_llm.store import ConversationStore

    store = ConversationStore(tmp_path / "conversations.sqlite3")
    app = build(model_8l)
    app.store = store
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await send(pilot, app, "first question")
        await send(pilot, app, "second question")
        await pilot.press("ctrl+r")
        await wait_until(
            pilot, lambda: screen.conversation.last_role == "assistant" and not screen.generating
        )
        saved = store.load(store.list_conversations()[0].id)
        assert [m.role for m in saved.messages] == ["user", "assistant", "user", "assistant"]
        assert [m.content for m in saved.messages] == [t.content for t in screen.conversation.turns]
        assert saved.title == "first question"
        assert saved.messages[-1].reply_stats() is not None

        await pilot.press("ctrl+n")
        assert roles(app) == []
        await send(pilot, app, "another chat")
        assert len(store.list_conversations()) == 2

        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: len(roles(app)) == 4)
        assert screen.conversation.turns[0].content == "first question"
        await send(pilot, app, "third question")
        assert len(store.load(saved.id).messages) == 6


async def test_interrupted_reply_is_saved_as_partial(model_8l: Path, tmp_path: Path) -> None:
    from tui_llm.store import ConversationStore

    store = ConversationStore(tmp_path / "conversations.sqlite3")
    app = build(model_8l, n_ctx=4096)
    app.store = store
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await start_long_reply(pilot, app, "long")
        app.engine.kill()
        await wait_until(pilot, lambda: not screen.generating)
        saved = store.load(store.list_conversations()[0].id)
        assert saved.messages[-1].partial
        assert saved.messages[-1].content == screen.conversation.last_reply()


async def test_quitting_while_a_reply_streams_saves_it_and_exits_cleanly(
    model_8l: Path, tmp_path: Path
) -> None:
    """Quit mid-reply: what streamed is saved as a partial reply, and nothing fails on the way."""
    from tui_llm.store import ConversationStore

    path = tmp_path / "conversations.sqlite3"
    app = build(model_8l, n_ctx=4096)
    app.store = ConversationStore(path)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        await start_long_reply(pilot, app, "long")
        await pilot.press("ctrl+q")
    assert app.return_code in (0, None)
    streamed = screen.conversation.last_reply()
    reopened = ConversationStore(path)
    saved = reopened.load(reopened.list_conversations()[0].id)
    assert saved.messages[-1].partial and saved.messages[-1].role == "assistant"
    assert streamed and saved.messages[-1].content == streamed
    reopened.close()


async def test_model_too_big_for_ram_is_refused_before_loading(
    model_8l: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine with (pretend) 1 MiB of free RAM, the load is refused with the shortfall."""
    import tui_llm.fit.auto as auto

    monkeypatch.setattr(auto, "host_available_bytes", lambda: 1024 * 1024)
    app = build(model_8l)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(
            pilot, lambda: any("cannot load here" in str(n.message) for n in app._notifications)
        )
        message = next(
            str(n.message) for n in app._notifications if "cannot load" in str(n.message)
        )
        assert "short by" in message and "\n" not in message
        assert app.main_screen.loaded is None


async def test_down_from_the_filter_lands_on_the_first_model(
    tiny_model: Path, model_8l: Path
) -> None:
    from textual.widgets import DataTable

    app = build(scanner=local([tiny_model, model_8l]))
    app.autostart_engine = False
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.main_screen.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        await pilot.press("ctrl+b", "down")
        assert table.has_focus and table.cursor_row == 0
        await pilot.press("down")
        assert table.cursor_row == 1


async def test_an_unreadable_model_shows_its_error_when_highlighted(
    tiny_model: Path, tmp_path: Path
) -> None:
    """The table marks it "error"; the line under the table gives the whole reason."""
    from textual.widgets import DataTable

    from tui_llm.catalog.metadata import read_model_info

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[:4096])

    def scan() -> list[LocalModel]:
        good = LocalModel(tiny_model, "folder", tiny_model.name, read_model_info(tiny_model), None)
        try:
            read_model_info(broken)
        except Exception as exc:
            error = str(exc)
        return [good, LocalModel(broken, "folder", broken.name, None, error)]

    app = build(scanner=scan)
    app.autostart_engine = False
    async with app.run_test(size=(160, 48)) as pilot:
        browser = app.main_screen.query_one(ModelBrowser)
        table = browser.query_one(DataTable)
        status = browser.query_one(".status")
        await wait_until(pilot, lambda: table.row_count == 2)
        assert str(table.get_row_at(1)[1]) == "error"
        assert str(status.render()) == "2 of 2 models"
        await pilot.press("ctrl+b", "down", "down")
        assert table.cursor_row == 1
        shown = str(status.render())
        assert shown.startswith("2 of 2 models\nbroken.gguf: ") and len(shown) > 30
        await pilot.pause()
        assert status.region.height >= 2  # on screen, not only in the widget


class StubMonitor:
    """A monitor whose samples the test posts itself (``latest`` is what the app reads)."""

    def __init__(self) -> None:
        self.latest: Any = None
        self.on_sample: Any = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


async def test_fit_column_follows_the_free_gpu_memory(model_8l: Path) -> None:
    """The scan may finish before the first GPU sample: the fit column catches up with it."""
    from textual.widgets import DataTable

    from tui_llm.gpu.samples import GpuSample, MonitorSnapshot
    from tui_llm.messages import GpuSampled

    monitor = StubMonitor()
    app = build(monitor=monitor, scanner=local([model_8l]))
    app.autostart_engine = False
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.main_screen.query_one(ModelBrowser).query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        fit_column = 3
        before = str(table.get_row_at(0)[fit_column])
        gpu = GpuSample(0, "NVIDIA H100 80GB HBM3", 1 << 30, 80 << 30, 0, 40, 100.0, 700.0)
        monitor.latest = MonitorSnapshot(timestamp=1.0, gpus=(gpu,), processes={}, host=None)
        app.main_screen.post_message(GpuSampled(monitor.latest))
        await wait_until(pilot, lambda: str(table.get_row_at(0)[fit_column]) != before)
        assert str(table.get_row_at(0)[fit_column]) == "full GPU"


def test_free_gpu_memory_counts_the_loaded_model_only_while_it_is_in_memory() -> None:
    """A load replaces the model, so its VRAM is free for the next one; mid-load it is gone."""
    from tui_llm.engine.protocol import BufferSize, DeviceInfo, LoadedEvent, LoadSettings
    from tui_llm.gpu.samples import GpuSample, MonitorSnapshot

    gib = 1 << 30
    monitor = StubMonitor()
    gpu = GpuSample(0, "NVIDIA H100 80GB HBM3", 60 * gib, 80 * gib, 0, 40, 100.0, 700.0)
    monitor.latest = MonitorSnapshot(timestamp=1.0, gpus=(gpu,), processes={}, host=None)
    app = build(monitor=monitor)
    assert app.session.free_gpu_bytes() == 20 * gib
    app.session.loaded = LoadedEvent(
        request_id=1,
        settings=LoadSettings(model_path="/m.gguf"),
        n_layer=32,
        offloaded_layers=33,
        total_layers=33,
        buffers=(BufferSize("CUDA0", "model", 30 * gib), BufferSize("CPU_Mapped", "model", gib)),
        devices=(DeviceInfo("CUDA0", "NVIDIA H100 80GB HBM3", "gpu", 20 * gib, 80 * gib),),
        chat_template_source="gguf",
        chat_template_warning=None,
        load_seconds=1.0,
        kv_restored_tokens=0,
        n_ctx_train=4096,
    )
    assert app.session.free_gpu_bytes() == 50 * gib
    app.engine.load_in_flight = True  # the engine has freed it; NVML will show it free
    assert app.session.free_gpu_bytes() == 20 * gib
