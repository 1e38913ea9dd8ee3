"""The Hub tab: search Hugging Face for GGUF models, pick a quantization that fits, download it.

Nothing here waits on the network in the UI thread. Searches and file listings run in thread
workers whose answers carry a sequence number: a running HTTP request cannot be cancelled, so
an answer to a superseded request is dropped when it arrives. Downloads run in `DownloadQueue`'s
thread, whose callbacks only post messages. The panel holds the search box and the status line
and wires the parts together: the results and files tables are in ``hub_tables``, the downloads
list (which owns the queue) in ``hub_downloads``. Remote text (repository and file names, the
Hub's errors) is shown literally (``tui_llm.widgets.literal``): brackets are shown, not parsed,
and control characters are made visible.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

import psutil
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from tui_llm.catalog.hub import (
    FitBadge,
    HubError,
    HubSettings,
    RatedOption,
    list_repo_ggufs,
    rate_options,
    search_models,
)
from tui_llm.catalog.hub_download import DownloadRequest
from tui_llm.catalog.hub_queue import (
    DownloadCancelled,
    DownloadEvent,
    DownloadFailed,
    DownloadFinished,
)
from tui_llm.widgets.hub_downloads import DownloadList, DownloadRow, HubDownloadEvent
from tui_llm.widgets.hub_messages import HubFilesAnswer, HubModelDownloaded, HubSearchAnswer
from tui_llm.widgets.hub_tables import BEST_MARKER, HubFiles, HubResults
from tui_llm.widgets.inputs import InertInput
from tui_llm.widgets.literal import literal, notify_literal

__all__ = ["BEST_MARKER", "OFFLINE_TEXT", "FreeMemory", "HubPanel", "host_free_memory"]

OFFLINE_TEXT = "Offline (HF_HUB_OFFLINE is set): the Hub is not reachable; local models still work"
SEARCH_DEBOUNCE_S = 0.3

FreeMemory = Callable[[], tuple[int | None, int | None]]
"""Free (GPU memory, host RAM) in bytes, None where unknown; called from a worker thread."""


def host_free_memory() -> tuple[int | None, int | None]:
    """No GPU figure, and the host's available RAM: the default when the app gives nothing."""
    return None, int(psutil.virtual_memory().available)


def _unexpected(what: str, exc: Exception) -> HubError:
    return HubError("protocol", f"{what}: unexpected error: {exc}")


class HubPanel(Vertical):
    """Search the Hub, list a repository's quantizations with fit badges, queue downloads.

    The app may set `free_memory` (free VRAM and RAM, called from a worker thread) and
    `fit_badge` (a badge from size and the Hub's GGUF metadata, see `rate_options`); it handles
    `HubModelDownloaded` to add the new model to the local list.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "cancel_download", "Cancel download"),
        Binding("ctrl+r", "retry", "Retry"),
        Binding("escape", "back", "Back", show=False),
        Binding("down", "focus_results", "Results", show=False),
    ]

    DEFAULT_CSS = """
    HubPanel { height: 1fr; }
    HubPanel > #hub-query { border: none; height: 1; padding: 0 1; }
    HubPanel > #hub-status { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    HubPanel > #hub-status.-error { color: $error; }
    HubPanel > #hub-status.-offline { color: $warning; }
    HubPanel > #hub-results { height: 1fr; }
    HubPanel > #hub-files-title { height: 1; padding: 0 1; color: $accent; }
    HubPanel > #hub-files { height: auto; max-height: 12; }
    HubPanel > #hub-downloads { height: auto; max-height: 8; }
    HubPanel > .-hidden { display: none; }
    """

    def __init__(
        self,
        *,
        free_memory: FreeMemory = host_free_memory,
        fit_badge: FitBadge | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.free_memory: FreeMemory = free_memory
        self.fit_badge: FitBadge | None = fit_badge
        self.offline = False
        self.rated_options: list[RatedOption] = []
        self._search_seq = 0
        self._files_seq = 0
        self._debounce: Timer | None = None
        self._downloads = DownloadList(
            self._post_download_event, id="hub-downloads", classes="-hidden"
        )
        self._retry: Callable[[], None] | None = None
        self._focus_results_on_answer = False

    def compose(self) -> ComposeResult:
        yield InertInput(placeholder="search GGUF models on Hugging Face…", id="hub-query")
        yield Static("Type to search the Hub.", markup=False, id="hub-status")
        yield HubResults(id="hub-results")
        yield Static("", markup=False, id="hub-files-title", classes="-hidden")
        yield HubFiles(id="hub-files", classes="-hidden")
        yield self._downloads

    def on_mount(self) -> None:
        if HubSettings.from_env().offline:
            self._go_offline()

    @property
    def _results(self) -> HubResults:
        return self.query_one("#hub-results", HubResults)

    @property
    def _files(self) -> HubFiles:
        return self.query_one("#hub-files", HubFiles)

    @property
    def status_text(self) -> str:
        """The status line as shown."""
        return str(self.query_one("#hub-status", Static).content)

    def _set_status(self, text: str, kind: str = "") -> None:
        """Show ``text`` (it quotes queries, repository names and the Hub's errors) literally."""
        status = self.query_one("#hub-status", Static)
        status.update(literal(text))
        status.set_class(kind == "error", "-error")
        status.set_class(kind == "offline", "-offline")

    def _show_error(self, error: HubError, retry: Callable[[], None] | None) -> None:
        if error.kind == "offline":
            self._go_offline()
            return
        self._retry = retry
        self._set_status(f"{error.message} (Ctrl+R retries)" if retry else error.message, "error")

    def _go_offline(self) -> None:
        self.offline = True
        self._search_seq += 1
        self._files_seq += 1
        self._set_status(OFFLINE_TEXT, "offline")
        self.query_one("#hub-query", Input).disabled = True

    # -- search ----------------------------------------------------------------------------

    @on(Input.Changed, "#hub-query")
    def _query_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(SEARCH_DEBOUNCE_S, partial(self.search, event.value))

    @on(Input.Submitted, "#hub-query")
    def _query_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.search(event.value)
        self._focus_results_on_answer = True

    def search(self, query: str) -> None:
        """Search now (typing searches after a pause); any answer still on its way is dropped."""
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        self._search_seq += 1
        self._focus_results_on_answer = False
        query = query.strip()
        if self.offline:
            self._set_status(OFFLINE_TEXT, "offline")
            return
        if not query:
            self._results.clear()
            self._set_status("Type to search the Hub.")
            return
        self._set_status(f"Searching the Hub for {query}…")
        self.run_worker(
            partial(self._search_in_thread, self._search_seq, query),
            thread=True,
            exclusive=True,
            group="hub-search",
            exit_on_error=False,
        )

    def _search_in_thread(self, seq: int, query: str) -> None:
        try:
            answer = HubSearchAnswer(seq, query, search_models(query), None)
        except HubError as error:
            answer = HubSearchAnswer(seq, query, None, error)
        except Exception as exc:
            answer = HubSearchAnswer(seq, query, None, _unexpected("search", exc))
        self.post_message(answer)

    def on_hub_search_answer(self, answer: HubSearchAnswer) -> None:
        if answer.seq != self._search_seq:
            return  # a newer search was started: this answer is stale
        if answer.error is not None:
            self._show_error(answer.error, partial(self.search, answer.query))
            return
        models = answer.models or []
        table = self._results
        table.show_models(models)
        self._retry = None
        if self._focus_results_on_answer and models:
            table.focus()
        found = f"{len(models)} GGUF repositories" if models else "No GGUF repository"
        self._set_status(f"{found} for {answer.query} · Enter lists a repository's files")

    @property
    def result_repo_ids(self) -> list[str]:
        """Repository ids in the results table, top to bottom."""
        return self._results.repo_ids

    # -- files -----------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#hub-results")
    def _repo_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.list_files(event.row_key.value)

    def list_files(self, repo_id: str) -> None:
        """List a repository's GGUF models, rated against free memory, in the files table."""
        self._files_seq += 1
        if self.offline:
            self._set_status(OFFLINE_TEXT, "offline")
            return
        self._set_status(f"Listing the files of {repo_id}…")
        self.run_worker(
            partial(
                self._list_in_thread, self._files_seq, repo_id, self.free_memory, self.fit_badge
            ),
            thread=True,
            exclusive=True,
            group="hub-files",
            exit_on_error=False,
        )

    def _list_in_thread(
        self, seq: int, repo_id: str, free_memory: FreeMemory, fit_badge: FitBadge | None
    ) -> None:
        try:
            repo = list_repo_ggufs(repo_id)
            free_vram, free_ram = free_memory()
            rated = rate_options(
                repo, free_vram_bytes=free_vram, free_ram_bytes=free_ram, fit_badge=fit_badge
            )
            answer = HubFilesAnswer(seq, repo_id, rated, None)
        except HubError as error:
            answer = HubFilesAnswer(seq, repo_id, None, error)
        except Exception as exc:
            answer = HubFilesAnswer(seq, repo_id, None, _unexpected(repo_id, exc))
        self.post_message(answer)

    def on_hub_files_answer(self, answer: HubFilesAnswer) -> None:
        if answer.seq != self._files_seq:
            return  # another repository was selected since
        if answer.error is not None:
            self._show_error(answer.error, partial(self.list_files, answer.repo_id))
            return
        self.rated_options = rated = answer.rated or []
        table = self._files
        table.show_options(rated)
        title = self.query_one("#hub-files-title", Static)
        title.update(literal(f"{answer.repo_id} · {len(rated)} models · Enter downloads"))
        for widget in (title, table):
            widget.remove_class("-hidden")
        self._retry = None
        if not rated:
            self._set_status(f"{answer.repo_id} has no GGUF model files")
            return
        best = next((index for index, item in enumerate(rated) if item.best), 0)
        table.move_cursor(row=best)
        table.focus()
        self._set_status(f"{BEST_MARKER} fits best · Enter downloads · x cancels a download")

    @on(DataTable.RowSelected, "#hub-files")
    def _file_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        index = int(event.row_key.value or 0)
        if 0 <= index < len(self.rated_options):
            self.download(DownloadRequest.for_option(self.rated_options[index].option))

    # -- downloads -------------------------------------------------------------------------

    def download(self, request: DownloadRequest) -> int | None:
        """Queue a download; its row shows progress. None when offline or unmounted."""
        if self.offline:
            self._set_status(OFFLINE_TEXT, "offline")
            return None
        return self._downloads.submit(request)

    def _download_again(self, request: DownloadRequest) -> None:
        self.download(request)

    def _post_download_event(self, event: DownloadEvent) -> None:
        """Runs in the queue's threads: only posts a message."""
        self.post_message(HubDownloadEvent(event))

    @property
    def download_rows(self) -> list[DownloadRow]:
        """The download rows, oldest first."""
        return self._downloads.download_rows

    async def on_hub_download_event(self, message: HubDownloadEvent) -> None:
        event = message.event
        await self._downloads.show_event(event)
        if isinstance(event, DownloadFinished):
            self.post_message(HubModelDownloaded(event.result.model_path, event.result))
            name = event.request.filenames[0].rsplit("/", 1)[-1]
            notify_literal(self, f"downloaded {name} — Enter in the local list loads it")
        elif isinstance(event, DownloadFailed):
            self._show_error(event.error, partial(self._download_again, event.request))
        elif isinstance(event, DownloadCancelled):
            self._set_status(f"Cancelled {event.request.label}")

    def action_cancel_download(self) -> None:
        """Cancel the download highlighted in the list, else the newest one still active."""
        if not self._downloads.cancel_download():
            self._set_status("No download to cancel")

    # -- keys ------------------------------------------------------------------------------

    def action_retry(self) -> None:
        """Try the last failed operation again; offline, look at HF_HUB_OFFLINE again."""
        if self.offline:
            if HubSettings.from_env().offline:
                self._set_status(OFFLINE_TEXT, "offline")
                return
            self.offline = False
            query = self.query_one("#hub-query", Input)
            query.disabled = False
            query.focus()
            self.search(query.value)
            return
        retry, self._retry = self._retry, None
        if retry is not None:
            retry()

    def action_back(self) -> None:
        """Escape: from the files to the results, from the results to the search box."""
        if self._files.has_focus:
            self._results.focus()
        elif not self.offline:
            self.query_one("#hub-query", Input).focus()

    def focus_search(self) -> None:
        """Focus the search box; offline, where it is disabled, the results table."""
        if self.offline:
            self._results.focus()
        else:
            self.query_one("#hub-query", Input).focus()

    def action_focus_results(self) -> None:
        """Down in the search box moves into the results."""
        if self.query_one("#hub-query", Input).has_focus:
            self._results.focus()
