"""The Hub panel driven with Pilot against the fake Hub on 127.0.0.1 (tests/hubserver.py).

HF_ENDPOINT points at the server and HF_HUB_CACHE at a temporary folder (the `hub_server`
fixture); every search, listing and download below goes over real HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tests import hub_fixtures
from tests.hubserver import FakeHub
from tui_llm.catalog.hub_cache import list_cached_ggufs
from tui_llm.widgets.hub import BEST_MARKER, OFFLINE_TEXT, HubPanel
from tui_llm.widgets.hub_downloads import DownloadRow
from tui_llm.widgets.hub_messages import HubModelDownloaded, HubSearchAnswer

hub_server_session = hub_fixtures.hub_server_session
hub_server = hub_fixtures.hub_server

MIB = 1024 * 1024
TINY = "acme/TinyLlama-GGUF"


class HubApp(App[None]):
    """The panel alone, recording what it tells the app."""

    def __init__(self, panel: HubPanel) -> None:
        super().__init__()
        self.panel = panel
        self.downloaded: list[Path] = []
        self.notes: list[str] = []

    def compose(self) -> ComposeResult:
        yield self.panel

    def on_hub_model_downloaded(self, message: HubModelDownloaded) -> None:
        self.downloaded.append(message.path)

    def notify(self, message: str, **kwargs: Any) -> None:
        self.notes.append(message)
        super().notify(message, **kwargs)


class AnswerSpyPanel(HubPanel):
    """Records every search answer that reaches the panel, stale or not."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answered: list[str] = []

    def on_hub_search_answer(self, answer: HubSearchAnswer) -> None:
        self.answered.append(answer.query)


def gpu_of(free_vram: int | None, free_ram: int | None = 0) -> Callable[[], Any]:
    return lambda: (free_vram, free_ram)


async def wait_until(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Poll the app until ``predicate`` holds (never sleep and hope)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {predicate}")


def searches(hub: FakeHub) -> list[str]:
    return [r.query["search"][0] for r in hub.requests if r.path == "/api/models"]


def files_table(panel: HubPanel) -> list[tuple[str, ...]]:
    table = panel.query_one("#hub-files", DataTable)
    return [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]


async def type_query(pilot: Pilot[Any], panel: HubPanel, text: str, enter: bool = False) -> None:
    box = panel.query_one("#hub-query", Input)
    box.focus()
    box.value = ""
    await pilot.press(*text, *(["enter"] if enter else []))


async def open_repo(pilot: Pilot[Any], panel: HubPanel, query: str, repo_id: str) -> None:
    """Search, move to the repository's row with the keyboard, press Enter, wait for its files."""
    await type_query(pilot, panel, query, enter=True)
    await wait_until(pilot, lambda: repo_id in panel.result_repo_ids)
    results = panel.query_one("#hub-results", DataTable)
    results.focus()
    await pilot.press(*["down"] * panel.result_repo_ids.index(repo_id), "enter")
    await wait_until(pilot, lambda: panel.query_one("#hub-files", DataTable).has_focus)


def row_named(panel: HubPanel, filename: str) -> DownloadRow:
    return next(r for r in panel.download_rows if r.request.filenames[0] == filename)


async def test_typing_searches_after_a_pause_and_lists_most_downloaded_first(
    hub_server: FakeHub,
) -> None:
    panel = HubPanel()
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await type_query(pilot, panel, "acme")
        await wait_until(pilot, lambda: bool(panel.result_repo_ids))

        assert panel.result_repo_ids[:3] == [TINY, "acme/Split-GGUF", "acme/Gated-GGUF"]
        assert "acme/tinyllama-safetensors" not in panel.result_repo_ids
        tiny = [str(c) for c in panel.query_one("#hub-results", DataTable).get_row_at(0)]
        assert tiny == [TINY, "5K", "42", "2025-01-15", "400K", "llama"]
        assert "(gated)" in str(panel.query_one("#hub-results", DataTable).get_row_at(2)[0])
        assert searches(hub_server) == ["acme"], "typed fast: one search, for the whole word"


async def test_only_the_last_query_is_shown_when_typing_fast(hub_server: FakeHub) -> None:
    panel = HubPanel()
    async with HubApp(panel).run_test() as pilot:
        await type_query(pilot, panel, "split")
        await pilot.press(*["backspace"] * 5, *"tiny")
        await wait_until(pilot, lambda: bool(panel.result_repo_ids))

        assert panel.result_repo_ids == [TINY]
        assert searches(hub_server) == ["tiny"], "the pause before searching dropped 'split'"


async def test_a_stale_search_answer_is_dropped(hub_server: FakeHub) -> None:
    panel = AnswerSpyPanel()
    async with HubApp(panel).run_test() as pilot:
        hub_server.stall_s = 1.0  # the first search answers after the second
        await type_query(pilot, panel, "split", enter=True)
        await wait_until(pilot, lambda: searches(hub_server) == ["split"])
        hub_server.stall_s = 0
        await type_query(pilot, panel, "tiny", enter=True)
        await wait_until(pilot, lambda: panel.result_repo_ids == [TINY])

        await wait_until(pilot, lambda: panel.answered == ["tiny", "split"])
        await pilot.pause()
        assert panel.result_repo_ids == [TINY], "the late answer for 'split' was not shown"
        assert "for tiny" in panel.status_text


async def test_a_repository_lists_quantizations_with_shards_summed_and_the_best_highlighted(
    hub_server: FakeHub,
) -> None:
    # 1.5 MiB of free VRAM and no RAM: F16 (0.9 MiB) fits with headroom, F32 (1.7 MiB) does not.
    panel = HubPanel(free_memory=gpu_of(int(1.5 * MIB)))
    async with HubApp(panel).run_test() as pilot:
        await open_repo(pilot, panel, "acme", "acme/Split-GGUF")
        split = {row[1]: row for row in files_table(panel)}
        shards = hub_server.repos["acme/Split-GGUF"].files
        shard_bytes = sum(len(d) for n, d in shards.items() if n.startswith("Split-Q8_0-"))
        assert set(split) == {"Q8_0", "F16"}, "one entry per model, projector left out"
        assert split["Q8_0"][2:4] == (
            "3",
            next(
                o.option.size_text for o in panel.rated_options if o.option.quantization == "Q8_0"
            ),
        )
        assert next(o.option.size_bytes for o in panel.rated_options if o.option.is_split) == (
            shard_bytes
        )

        await pilot.press("escape")
        await open_repo(pilot, panel, "tiny", TINY)
        rows = files_table(panel)
        assert [(r[0], r[1], r[4]) for r in rows] == [
            ("", "Q8_0", "fits GPU"),
            (BEST_MARKER, "F16", "fits GPU"),
            ("", "F32", "too large"),
        ]
        assert panel.query_one("#hub-files", DataTable).cursor_row == 1, "cursor on the best"

        panel.fit_badge = lambda size, meta: f"estimate {meta['quantization']}"
        await pilot.press("escape", "enter")
        await wait_until(pilot, lambda: files_table(panel)[0][4] == "estimate Q8_0")


async def test_download_shows_progress_queues_several_and_announces_the_path(
    hub_server: FakeHub,
) -> None:
    hub_server.throttle_bytes_per_s = 2_000_000
    hub_server.stall_body_after_bytes = 512 * 1024  # F32 waits there until F16 is queued
    hub_server.stall_body_s = 10
    panel = HubPanel(free_memory=gpu_of(int(1.5 * MIB)))
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await open_repo(pilot, panel, "tiny", TINY)
        await pilot.press("down", "enter", "up", "enter")  # F32, then F16 while F32 runs

        await wait_until(pilot, lambda: len(panel.download_rows) == 2)
        first = row_named(panel, "TinyLlama-F32.gguf")
        second = row_named(panel, "TinyLlama-F16.gguf")
        assert second.state == "queued"
        await wait_until(pilot, lambda: "/s" in str(first.detail.content))
        shown = str(first.detail.content)
        assert " / 1." in shown and "MiB" in shown and "left" in shown, shown
        assert 0 < (first.bar.progress or 0) < (first.bar.total or 0)
        hub_server.end_stall()

        await wait_until(pilot, lambda: len(app.downloaded) == 2)
        commit = hub_server.repos[TINY].commit
        snapshot = Path(os.environ["HF_HUB_CACHE"]) / "models--acme--TinyLlama-GGUF" / "snapshots"
        assert app.downloaded == [
            snapshot / commit / "TinyLlama-F32.gguf",
            snapshot / commit / "TinyLlama-F16.gguf",
        ]
        assert app.downloaded[0].read_bytes() == hub_server.repos[TINY].files["TinyLlama-F32.gguf"]
        assert (first.state, second.state) == ("done", "done")
        assert "downloaded TinyLlama-F32.gguf — Enter in the local list loads it" in app.notes


async def test_x_cancels_a_slow_download_and_leaves_nothing(hub_server: FakeHub) -> None:
    hub_server.throttle_bytes_per_s = 300_000
    panel = HubPanel()
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await open_repo(pilot, panel, "big", "acme/Big-GGUF")
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(panel.download_rows))
        (row,) = panel.download_rows
        await wait_until(pilot, lambda: (row.bar.progress or 0) >= 64 * 1024)

        await pilot.press("x")
        await wait_until(pilot, lambda: row.state == "cancelled", timeout=3)

        transfer = hub_server.transfers[-1]
        assert hub_server.wait_for(lambda: transfer.aborted, timeout_s=5), "the server saw it"
        assert transfer.sent < transfer.total
        assert app.downloaded == []
        assert list_cached_ggufs() == []
        assert "Cancelled acme/Big-GGUF:Big-F32.gguf" in panel.status_text


async def test_x_in_the_download_list_cancels_the_highlighted_one(hub_server: FakeHub) -> None:
    hub_server.throttle_bytes_per_s = 500_000
    panel = HubPanel(free_memory=gpu_of(int(1.5 * MIB)))
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await open_repo(pilot, panel, "tiny", TINY)
        await pilot.press("enter", "down", "enter")  # F16 runs, F32 waits
        await wait_until(pilot, lambda: len(panel.download_rows) == 2)
        first = row_named(panel, "TinyLlama-F16.gguf")
        newest = row_named(panel, "TinyLlama-F32.gguf")

        await pilot.press("tab")
        assert panel.query_one("#hub-downloads").has_focus
        assert first.highlighted, "the list highlights its first download"
        await pilot.press("x")
        await wait_until(pilot, lambda: first.state == "cancelled")

        assert newest.state in ("queued", "running"), "only the highlighted one was cancelled"
        await wait_until(pilot, lambda: newest.state == "done")
        await wait_until(pilot, lambda: bool(app.downloaded))
        assert [p.name for p in app.downloaded] == ["TinyLlama-F32.gguf"]


@pytest.mark.parametrize(
    ("repo_id", "words"), [("acme/Busy-GGUF", "(429)"), ("acme/Broken-GGUF", "(500")]
)
async def test_an_error_status_is_one_line_and_a_retry_works(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch, repo_id: str, words: str
) -> None:
    panel = HubPanel()
    async with HubApp(panel).run_test() as pilot:
        await type_query(pilot, panel, "acme", enter=True)
        await wait_until(pilot, lambda: repo_id in panel.result_repo_ids)
        await pilot.press(*["down"] * panel.result_repo_ids.index(repo_id), "enter")
        await wait_until(pilot, lambda: words in panel.status_text)
        assert "\n" not in panel.status_text
        assert panel.query_one("#hub-status").has_class("-error")

        monkeypatch.setattr(hub_server.repos[repo_id], "fault_status", None)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: [r[1] for r in files_table(panel)] == ["Q8_0"])
        assert not panel.query_one("#hub-status").has_class("-error")

        hub_server.search_status = 503
        await type_query(pilot, panel, "tiny", enter=True)
        await wait_until(pilot, lambda: "server error (503" in panel.status_text)
        hub_server.search_status = None
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: panel.result_repo_ids == [TINY])


async def test_a_dropped_connection_is_one_line_and_ctrl_r_resumes_the_download(
    hub_server: FakeHub,
) -> None:
    hub_server.cut_after_bytes = 256 * 1024
    hub_server.cuts_remaining = 1
    panel = HubPanel(free_memory=gpu_of(int(1.5 * MIB)))
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await open_repo(pilot, panel, "tiny", TINY)
        await pilot.press("enter")  # the best fit, F16
        await wait_until(pilot, lambda: "was cut after" in panel.status_text)
        assert "\n" not in panel.status_text and "(Ctrl+R retries)" in panel.status_text
        assert panel.download_rows[0].state == "failed"

        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(app.downloaded) == 1)

    assert app.downloaded[0].read_bytes() == hub_server.repos[TINY].files["TinyLlama-F16.gguf"]
    gets = [r for r in hub_server.requests if r.method == "GET" and "/resolve/" in r.path]
    assert gets[-1].headers.get("Range") == f"bytes={256 * 1024}-", "the retry resumed"


async def test_a_gated_repository_shows_the_url_to_accept_the_license(
    hub_server: FakeHub,
) -> None:
    panel = HubPanel()
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await open_repo(pilot, panel, "gated", "acme/Gated-GGUF")
        await pilot.press("enter")

        await wait_until(pilot, lambda: "gated" in panel.status_text)
        assert f"{hub_server.url}/acme/Gated-GGUF" in panel.status_text
        assert "hf auth login" in panel.status_text
        assert panel.download_rows[0].state == "failed"
        assert app.downloaded == []


async def test_offline_the_panel_says_so_and_sends_nothing(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = HubPanel()
    async with HubApp(online).run_test() as pilot:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after the panel was mounted
        await type_query(pilot, online, "tiny", enter=True)
        await wait_until(pilot, lambda: online.status_text == OFFLINE_TEXT)

    panel = HubPanel()
    async with HubApp(panel).run_test() as pilot:
        await pilot.pause()
        assert panel.status_text == OFFLINE_TEXT
        assert panel.query_one("#hub-query", Input).disabled, "no searches offline"
        await pilot.press(*"tiny", "enter", "ctrl+r")
        assert panel.status_text == OFFLINE_TEXT

    assert hub_server.requests == []


async def test_closing_the_app_stops_a_running_download(hub_server: FakeHub) -> None:
    hub_server.throttle_bytes_per_s = 300_000
    panel = HubPanel()
    app = HubApp(panel)
    async with app.run_test() as pilot:
        await open_repo(pilot, panel, "big", "acme/Big-GGUF")
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(hub_server.transfers))

    transfer = hub_server.transfers[-1]
    assert hub_server.wait_for(lambda: transfer.aborted, timeout_s=5), "the transfer stopped"
    assert transfer.sent < transfer.total
    assert list_cached_ggufs() == []
