"""The Hub tab's download list: a row per download, fed by the queue's events.

`DownloadQueue`'s thread only posts `HubDownloadEvent`s; the panel turns them into rows.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import ListItem, ProgressBar, Static

from tui_llm.catalog.hub_download import DownloadRequest
from tui_llm.catalog.hub_queue import DownloadEvent, DownloadProgress
from tui_llm.catalog.metadata import human_bytes
from tui_llm.widgets.literal import literal

__all__ = ["DownloadRow", "HubDownloadEvent"]


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
