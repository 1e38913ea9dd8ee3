"""Outside text on every surface: shown exactly as it is, never markup, never a terminal command.

Each test puts hostile strings (markup, escape sequences, bidi overrides, NUL, lone surrogates,
100,000 characters) where a file name, GGUF metadata, a saved title, a Hub answer or an error
would be, and reads the screen back from ``export_screenshot``: the literal text is on screen and
no control, bidi or surrogate character reaches what would be written to the terminal.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input, ListView, OptionList

from tests.ui.test_app import build, wait_until
from tui_llm import config
from tui_llm.catalog.discovery import LocalModel, iter_local_models
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.hub import HubModel, QuantOption, RatedOption
from tui_llm.catalog.hub_download import DownloadRequest
from tui_llm.catalog.hub_queue import DownloadQueued
from tui_llm.catalog.metadata import read_model_info
from tui_llm.engine.protocol import DeviceInfo, SamplingParams
from tui_llm.screens.history import HistoryScreen
from tui_llm.screens.recent import RecentScreen
from tui_llm.screens.sampling import SamplingScreen
from tui_llm.store import ConversationStore
from tui_llm.store.recorder import ConversationRecorder
from tui_llm.textsafe import DEFAULT_MAX_CHARS, make_inert
from tui_llm.widgets.browser import ModelBrowser, table_name
from tui_llm.widgets.chat import ChatView
from tui_llm.widgets.gauge import GpuGauge
from tui_llm.widgets.hub import HubPanel
from tui_llm.widgets.hub_downloads import HubDownloadEvent
from tui_llm.widgets.hub_messages import HubFilesAnswer, HubSearchAnswer
from tui_llm.widgets.literal import literal_markup, notify_literal, shorten_middle
from tui_llm.widgets.offload import OffloadPanel

HOSTILE = {
    "close-tag": "[/INST] means what?",
    "inst": "[INST] hello [/INST] and arr[i]",
    "bold": "[bold]loud[/bold]",
    "click": "[@click=app.quit]quit[/]",
    "variable": "[$accent]x $foo",
    "title": "x\x1b]0;pwned\x07y",
    "osc52": "c\x1b]52;c;cHduZWQ=\x1b\\",
    "clear": "\x1b[2Jwiped",
    "c1": "csi\x9b2J",
    "bidi": "abc\u202edcba\u2066x\u2069",
    "nul": "nul\x00byte",
    "surrogate": "bad\udcffname",
    "backslash": "a\\[b] c\\",
    "long": "L" * 100_000,
}

# What a file may be called: no slash or NUL, at most 255 bytes once encoded.
FILE_NAMES = {
    "brackets": "model [i] v2.gguf",
    "bold": "[bold]loud.gguf",
    "click": "[@click=app.quit]q.gguf",
    "osc52": "c\x1b]52;c;cHduZWQ=\x1b\\.gguf",
    "title": "x\x1b]0;pwned\x07y.gguf",
    "clear": "\x1b[2Jwiped.gguf",
    "c1": "csi\x9b2J.gguf",
    "bidi": "abc\u202edcba.gguf",
    "newline": "two\nlines.gguf",
    "surrogate": "bad\udcffname.gguf",
    "long": "L" * 240 + ".gguf",
}

# What must never reach the terminal: C0 controls but newline, DEL, C1, bidi controls, surrogates.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SVG_TEXT = re.compile(
    r'<text [^>]*?x="([\d.]+)"[^>]*?clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>([^<]*)</text>'
)


def screen_lines(app: App[Any]) -> list[str]:
    """The screen as text, one string per row, from the SVG screenshot; checks that nothing
    unsafe is in what would be drawn."""
    svg = app.export_screenshot()
    found = UNSAFE.search(svg)
    assert found is None, f"{found.group()!r} reaches the terminal" if found else ""
    rows: dict[int, list[tuple[float, str]]] = {}
    for x, row, text in _SVG_TEXT.findall(svg):
        rows.setdefault(int(row), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    return [
        "".join(text for _x, text in sorted(parts)).rstrip("\n")
        for _r, parts in sorted(rows.items())
    ]


def shown(text: str, before: str = "", after: str = "", chars: int = 40) -> str:
    """What a line shows of ``text`` between ``before`` and ``after``: all of it when short;
    else only its start, since a long text wraps (or is cut) away from what is around it."""
    inert = make_inert(text, one_line=True)
    return before + inert + after if len(inert) <= chars else inert[:30]


def assert_on_screen(app: App[Any], expected: Iterable[str]) -> list[str]:
    lines = screen_lines(app)
    for text in expected:
        assert any(text in line for line in lines), f"{text!r} not on screen:\n" + "\n".join(lines)
    return lines


class Host(App[None]):
    """One widget alone on a wide screen."""

    def __init__(self, *widgets: Any) -> None:
        super().__init__()
        self.widgets = widgets

    def compose(self) -> ComposeResult:
        with Vertical():
            yield from self.widgets


async def test_browser_rows_and_status_show_names_and_metadata_as_they_are(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A model called ``model [i] v2`` is listed as that, and a name holding OSC 52 never
    writes the clipboard: not in its row, not in the status line under the table."""
    info = read_model_info(tiny_model)
    models = [
        LocalModel(
            tmp_path / f"m{index}.gguf",
            "folder",
            name,
            replace(info, architecture=text[:60], quantization=text[:20]),
            None,
        )
        for index, (name, text) in enumerate(
            zip(FILE_NAMES.values(), HOSTILE.values(), strict=False)
        )
    ]
    broken = LocalModel(tmp_path / "bad.gguf", "folder", HOSTILE["osc52"], None, HOSTILE["title"])
    browser = ModelBrowser()
    app = Host(browser)
    async with app.run_test(size=(220, 40)) as pilot:
        browser.add_models([*models, broken])
        table = browser.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == len(models) + 1)
        await pilot.pause()
        lines = assert_on_screen(app, [table_name(m.display_name) for m in models])
        assert any("model [i] v2 " in line for line in lines)
        for row, model in enumerate(models):
            cells = [str(cell) for cell in table.get_row_at(row)]
            assert model.info is not None
            assert cells[2] == make_inert(model.info.quantization, one_line=True)
            assert cells[7] == make_inert(model.info.architecture, one_line=True)
        table.move_cursor(row=len(models))
        await pilot.pause()
        assert_on_screen(app, [shown(HOSTILE["osc52"], after=f": {shown(HOSTILE['title'])}")])


def test_a_name_shortened_in_the_middle_never_becomes_a_working_sequence() -> None:
    """Shortened by what is shown: the cut falls between visible symbols, not inside ESC ]0;."""
    name = "a" * 10 + "\x1b]0;" + "b" * 30 + "\x07" + "c" * 10 + ".gguf"
    short = table_name(name)
    assert short == "aaaaaaaaaa␛]0…bbb␇cccccccccc"  # 28 cells
    assert shorten_middle("中文中文中文中文", 9) == "中文…中文"  # wide characters: 2 cells each
    assert shorten_middle("中文中文中文中文", 8) == "中…中文"


def test_names_that_are_not_utf8_are_listed(tmp_path: Path, tiny_model: Path) -> None:
    """A file name with bytes that are not UTF-8 is found and shown byte by byte."""
    folder = tmp_path / "models"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9 \xff.gguf")
    shutil.copyfile(tiny_model, raw)
    [model] = list(iter_local_models([folder], home=tmp_path))
    assert model.info is not None
    assert table_name(model.display_name) == "caf<0xE9> <0xFF>"


@pytest.mark.parametrize("case", ["notify", "sampling"])
async def test_notifications_and_the_sampling_error_show_text_literally(case: str) -> None:
    app = Host()
    async with app.run_test(size=(200, 50), notifications=True) as pilot:
        for name, text in HOSTILE.items():
            if case == "notify":
                app.clear_notifications()
                notify_literal(app, f"note {text}", title=text)
                await wait_until(pilot, lambda: bool(app.screen.query("Toast")))
                expected = [shown(text, before="note ")]
            else:
                # The system prompt as loaded from the settings, a value as pasted.
                screen = SamplingScreen(SamplingParams(), text)
                await app.push_screen(screen)
                screen.query_one("#field-top_k", Input).value = text
                await pilot.press("ctrl+s")
                typed = make_inert(text, one_line=True).strip()
                expected = [shown(text), shown(repr(typed), before="Top k: not a number: ")]
            await pilot.pause()
            assert_on_screen(app, expected)
            if case == "sampling":
                app.pop_screen()
            assert app.is_running, name


async def test_panels_and_chat_lines_show_errors_and_device_names_literally() -> None:
    """The offload panel's status and warning, the gauge's device names and NVML reason, a
    reply's "interrupted:" line: each quotes outside text."""
    offload, gauge, chat = OffloadPanel(), GpuGauge(), ChatView()
    app = Host(offload, gauge, chat)
    async with app.run_test(size=(200, 60)) as pilot:
        view = await chat.add_message("assistant", "reply")
        for text in HOSTILE.values():
            offload.status = f"Loaded {text}"
            offload.warning = f"warn {text}"
            gauge.set_unavailable(f"nvml {text}")
            device = DeviceInfo(text, text, "gpu", 1 << 30, 2 << 30)
            gauge.set_engine(1, (device,), (), 0)
            view.set_stats(f"interrupted: {text}")
            await pilot.pause()
            assert_on_screen(
                app,
                [
                    shown(text, before="Loaded "),
                    shown(text, before="warn "),
                    shown(text, before="nvml "),
                    shown(text, before="  "),  # the device's name
                    shown(text, before="interrupted: "),
                ],
            )


async def test_hub_rows_titles_and_downloads_show_remote_text_literally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")  # answers are posted below; nothing goes to the network
    panel = HubPanel()
    app = Host(panel)
    async with app.run_test(size=(200, 50)) as pilot:
        downloads = panel.query_one(ListView)
        for job, text in enumerate(HOSTILE.values(), start=1):
            model = HubModel(text, 10, 1, datetime(2025, 1, 1), None, text[:40], None, True)
            panel.post_message(HubSearchAnswer(0, text, [model], None))
            option = QuantOption(text, "main", "0" * 40, text, text[:20], (f"{text}.gguf",), 1)
            rated = [RatedOption(option, text[:20], True)]
            panel.post_message(HubFilesAnswer(0, text, rated, None))
            request = DownloadRequest(text, (f"dir/{text}.gguf",))
            panel.post_message(HubDownloadEvent(DownloadQueued(job, request)))
            await wait_until(pilot, lambda job=job: len(downloads.children) == job)
            downloads.index = job - 1  # the newest row, scrolled into view
            await pilot.pause()
            assert_on_screen(
                app,
                [
                    shown(text, after=" · 1 models"),  # the files' title
                    shown(text, after=" (gated)"),  # the search result
                    shown(request.label),  # the download's row
                ],
            )
            assert panel.status_text.startswith("★ fits best")


async def test_history_lists_titles_as_typed_and_reopens_them(tmp_path: Path) -> None:
    """F3 with a conversation that began ``[/INST] means what?`` opens (and opens again), and
    ``[INST] hello [/INST] and arr[i]`` is listed as that, not `` hello  and arr``."""
    store = ConversationStore(tmp_path / "conversations.sqlite3")
    recorder = ConversationRecorder(store)
    for text in HOSTILE.values():
        recorder.new()
        recorder.user(text, f"/models/{text[:50]}.gguf", "")
    app = build()
    app.autostart_engine = False
    app.store = store
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        summaries = store.list_conversations()
        for index, summary in enumerate(summaries):
            await pilot.press("f3")
            await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen))
            await pilot.pause()
            lines = assert_on_screen(app, [shown(s.title) for s in summaries])
            assert not any(" hello  and arr" in line for line in lines)
            app.clear_notifications()
            app.screen.query_one(OptionList).highlighted = index
            await pilot.press("enter")
            await wait_until(pilot, lambda: not isinstance(app.screen, HistoryScreen))
            await wait_until(pilot, lambda: bool(app.main_screen.conversation.turns))
            await pilot.pause()
            await wait_until(pilot, lambda: bool(app.screen.query("Toast")))
            await pilot.pause()
            title = store.load(summary.id).title
            assert_on_screen(app, [shown(title, before="Opened “", after="”.")])
        assert any("[INST] hello [/INST] and arr[i]" in s.title for s in summaries)


def _model_files(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for name in FILE_NAMES.values():
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(name))))
        path.write_bytes(b"")
        paths.append(path)
    return paths


async def test_recent_models_and_the_model_picker_show_file_names_literally(
    tmp_path: Path,
) -> None:
    paths = _model_files(tmp_path / "[b]models\x1b[2J")
    settings = config.Settings()
    settings.recent_models = [str(path) for path in paths[:9]]
    app = build()
    app.settings = settings
    app.autostart_engine = False
    app.found_models = paths[9:]
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, RecentScreen))
        await pilot.pause()
        assert_on_screen(
            app,
            [shown(p.name, before=f"{n}  ") for n, p in enumerate(paths[:9], start=1)]
            + [shown(str(paths[0].parent), chars=200)],
        )
        await pilot.press("escape")
        await pilot.press("ctrl+l")
        await wait_until(pilot, lambda: app.screen.query(OptionList).results() is not None)
        await wait_until(pilot, lambda: len(list(_palette_options(app))) >= 9)
        await pilot.pause()
        assert_on_screen(app, [shown(p.name) for p in paths[:9]])
        await pilot.press(*"gguf")  # a search: the matched letters are highlighted
        await wait_until(pilot, lambda: len(list(_palette_options(app))) >= 9)
        await pilot.pause()
        assert_on_screen(app, [shown(paths[0].name)])
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"recent")
        await wait_until(pilot, lambda: len(list(_palette_options(app))) >= 9)
        await pilot.pause()
        assert_on_screen(app, [shown(paths[0].name, before="Load recent 1: ")])


def _palette_options(app: App[Any]) -> Iterable[Any]:
    for options in app.screen.query(OptionList):
        for index in range(options.option_count):
            yield options.get_option_at_index(index)


def test_escaped_markup_reads_back_as_the_inert_text() -> None:
    from textual.content import Content

    for text in HOSTILE.values():
        expected = make_inert(text, one_line=True, max_chars=DEFAULT_MAX_CHARS)
        assert Content.from_markup(literal_markup(text)).plain == expected


async def test_a_loaded_model_named_with_escapes_shows_its_name_inert(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Loaded, a model whose file name holds OSC 52 shows in the status line, the offload panel
    and the chat as text: the clipboard is never written."""
    path = tmp_path / FILE_NAMES["osc52"].replace(".gguf", " [i].gguf")
    shutil.copyfile(tiny_model, path)
    app = build(path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.main_screen.loaded is not None)
        await pilot.pause()
        assert_on_screen(
            app, [shown(path.name, after=" · GPU 0/"), shown(path.name, after=" is loaded")]
        )


async def test_a_chat_template_error_with_escapes_is_shown_inert(tmp_path: Path) -> None:
    """A template that raises with escapes in its message: the reply's "interrupted:" line
    shows the message as text (wrapped over two lines in this width)."""
    model = write_llama_gguf(
        tmp_path / "raising.gguf",
        n_layer=2,
        n_embd=64,
        seed=5,
        chat_template="{{ raise_exception('boom \x1b]0;pwned\x07 [/INST] \x1b[2J') }}",
    )
    app = build(model)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await wait_until(pilot, lambda: screen.loaded is not None)
        from tests.ui.test_app import send

        await send(pilot, app, "hello")
        await pilot.pause()
        assert_on_screen(app, ["interrupted:", "boom ␛]0;pwned␇", "[/INST] ␛[2J"])


def test_every_notification_and_static_text_with_outside_text_goes_through_literal() -> None:
    """``notify``, ``Static``, ``Label`` and ``Option`` read a ``str`` as markup: a message put
    together at run time must come from ``tui_llm.widgets.literal`` (``notify_literal``,
    ``literal``), and a fixed one must hold no markup."""
    import ast

    import tui_llm

    root = Path(tui_llm.__file__).parent
    readers = {"notify", "Static", "Label", "Option", "update"}
    offenders = []
    for source in sorted(root.rglob("*.py")):
        if source.name == "literal.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in readers:
                continue
            first = node.args[0]
            markup_off = any(
                k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
                for k in node.keywords
            )
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if "[" in first.value and not markup_off:
                    offenders.append(f"{source.name}:{node.lineno} fixed text with markup")
            elif isinstance(first, ast.JoinedStr) or (name == "notify" and not markup_off):
                offenders.append(f"{source.name}:{node.lineno} {name}(...) of outside text")
    assert offenders == []
