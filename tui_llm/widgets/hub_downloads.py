"""The Hub tab's download list: a row per download, fed by the queue's events.

`DownloadList` owns the `DownloadQueue`. The queue's threads only post `HubDownloadEvent`s to
the panel, which hands each event to `DownloadList.show_event` and then updates its status line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import ListItem, ListView, ProgressBar, Static

from tui_llm.catalog.hub_download import DownloadRequest
from tui_llm.catalog.hub_queue import (
    DownloadCancelled,
    DownloadEvent,
    DownloadFailed,
    DownloadFinished,
    DownloadProgress,
    DownloadQueue,
    DownloadQueued,
    DownloadStarted,
)
from tui_llm.catalog.metadata import human_bytes
from tui_llm.widgets.literal import literal

__all__ = ["DownloadList", "DownloadRow", "HubDownloadEvent"]


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    if whole >= 3600:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 60}:{whole % 60:02d}"


class HubDownloadEvent(Message, bubble=False):
    """A download queue event, posted by the queue's thread to the panel.

    A progress event replaces the previous, unhandled progress event of the same job.
    """

    def __init__(self, event: DownloadEvent) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, HubDownloadEvent)
            and isinstance(self.event, DownloadProgress)
            and isinstance(message.event, DownloadProgress)
            and message.event.job_id == self.event.job_id
        )


class DownloadRow(ListItem):
    """One download in the list: its name, a progress bar, and bytes, speed and time left."""

    DEFAULT_CSS = """
    DownloadRow { height: 1; }
    DownloadRow > Horizontal { height: 1; }
    DownloadRow .label { width: 1fr; padding: 0 1; }
    DownloadRow ProgressBar { width: auto; }
    DownloadRow Bar { width: 16; }
    DownloadRow .detail { width: 48; padding: 0 1; color: $text-muted; }
    DownloadRow.-failed .detail { color: $error; }
    DownloadRow.-done .detail { color: $success; }
    """

    def __init__(self, job_id: int, request: DownloadRequest) -> None:
        super().__init__()
        self.job_id = job_id
        self.request = request
        self.state = "queued"
        self.label = Static(literal(request.label, one_line=True), classes="label")
        self.bar = ProgressBar(total=request.size_bytes, show_eta=False)
        self.detail = Static("queued", markup=False, classes="detail")

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield self.label
            yield self.bar
            yield self.detail

    @property
    def active(self) -> bool:
        """Queued or running, and not being cancelled: something `x` can cancel."""
        return self.state in ("queued", "running")

    def show(self, state: str, detail: str) -> None:
        self.state = state
        self.set_class(state == "failed", "-failed")
        self.set_class(state == "done", "-done")
        self.detail.update(literal(detail, one_line=True))

    def show_progress(self, progress: DownloadProgress) -> None:
        total = progress.total_bytes
        self.bar.update(total=total, progress=progress.done_bytes)
        parts = [human_bytes(progress.done_bytes)]
        if total is not None:
            parts[0] += f" / {human_bytes(total)}"
        if progress.bytes_per_s:
            parts.append(f"{human_bytes(int(progress.bytes_per_s))}/s")
        if progress.eta_s is not None:
            parts.append(f"{_duration(progress.eta_s)} left")
        if self.state != "cancelling":
            self.show("running", " · ".join(parts))


class DownloadList(ListView):
    """The downloads, oldest first: queues requests on a `DownloadQueue`, one row per job.

    `post_event` is the queue's callback: it runs in the queue's threads and must only post a
    message (the panel posts a `HubDownloadEvent` to itself). Unmounting cancels every download.
    """

    def __init__(
        self,
        post_event: Callable[[DownloadEvent], None],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._post_event = post_event
        self._queue: DownloadQueue | None = None
        self._closed = False
        self._rows: dict[int, DownloadRow] = {}

    async def on_unmount(self) -> None:
        """Cancel every download; closing waits for the worker thread, so not in the UI thread."""
        self._closed = True
        queue, self._queue = self._queue, None
        if queue is not None:
            await asyncio.to_thread(queue.close)

    @property
    def download_rows(self) -> list[DownloadRow]:
        """The download rows, oldest first."""
        return list(self._rows.values())

    def submit(self, request: DownloadRequest) -> int | None:
        """Queue a download and return its job id; None once unmounted (the queue is closed)."""
        if self._closed:
            return None
        if self._queue is None:
            self._queue = DownloadQueue(self._post_event)
        return self._queue.submit(request)

    async def show_event(self, event: DownloadEvent) -> DownloadRow:
        """Show a queue event in its job's row, adding the row (and showing the list) if new."""
        row = self._rows.get(event.job_id)
        if row is None:
            row = self._rows[event.job_id] = DownloadRow(event.job_id, event.request)
            self.remove_class("-hidden")
            await self.append(row)
            if self.index is None:
                self.index = 0
        if isinstance(event, DownloadQueued):
            row.show("queued", "queued")
        elif isinstance(event, DownloadStarted):
            row.show("running", "starting…")
        elif isinstance(event, DownloadProgress):
            row.show_progress(event)
        elif isinstance(event, DownloadFinished):
            row.bar.update(total=1, progress=1)
            size = event.request.size_bytes
            row.show("done", f"done · {human_bytes(size)}" if size else "done")
        elif isinstance(event, DownloadFailed):
            row.show("failed", f"failed: {event.error.kind}")
        elif isinstance(event, DownloadCancelled):
            row.show("cancelled", "cancelled")
        return row

    def cancel_download(self) -> bool:
        """Cancel the highlighted download if the list has focus, else the newest active one.

        False when there is none to cancel. A job that ends before the queue cancels it keeps
        its row as it is.
        """
        highlighted = self.highlighted_child
        if self.has_focus and isinstance(highlighted, DownloadRow) and highlighted.active:
            row: DownloadRow | None = highlighted
        else:
            row = next((r for r in reversed(self._rows.values()) if r.active), None)
        if row is None or self._queue is None:
            return False
        if self._queue.cancel(row.job_id):
            row.show("cancelling", "cancelling…")
        return True
