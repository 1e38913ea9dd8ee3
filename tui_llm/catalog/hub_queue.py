"""A queue that runs downloads one at a time in a worker thread, for the app's Hub tab.

Each job can be cancelled while queued or running; every step is reported as an event.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tui_llm.catalog.hub_client import HubError, HubSettings
from tui_llm.catalog.hub_download import (
    DownloadProgress,
    DownloadRequest,
    DownloadResult,
    download,
)
from tui_llm.catalog.hub_transfer import CancelToken

__all__ = [
    "DownloadCancelled",
    "DownloadEvent",
    "DownloadFailed",
    "DownloadFinished",
    "DownloadProgress",
    "DownloadQueue",
    "DownloadQueued",
    "DownloadStarted",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadQueued:
    job_id: int
    request: DownloadRequest


@dataclass(frozen=True)
class DownloadStarted:
    job_id: int
    request: DownloadRequest


@dataclass(frozen=True)
class DownloadFinished:
    job_id: int
    request: DownloadRequest
    result: DownloadResult


@dataclass(frozen=True)
class DownloadFailed:
    job_id: int
    request: DownloadRequest
    error: HubError


@dataclass(frozen=True)
class DownloadCancelled:
    job_id: int
    request: DownloadRequest


DownloadEvent = (
    DownloadQueued
    | DownloadStarted
    | DownloadProgress
    | DownloadFinished
    | DownloadFailed
    | DownloadCancelled
)


@dataclass
class _Job:
    job_id: int
    request: DownloadRequest
    cancel: CancelToken


class DownloadQueue:
    """Runs downloads one at a time in a worker thread; each can be cancelled, queued or running.

    `on_event` gets every DownloadEvent. It is called from the worker thread, except
    DownloadQueued (from the thread calling `submit`) and DownloadCancelled of a job that had not
    started (from the thread calling `cancel`/`close`); a Textual app posts a message from it
    (`post_message` is thread-safe) and never touches widgets there. Each job ends with exactly
    one DownloadFinished, DownloadFailed or DownloadCancelled.
    """

    def __init__(
        self,
        on_event: Callable[[DownloadEvent], None],
        *,
        settings: Callable[[], HubSettings] = HubSettings.from_env,
    ) -> None:
        self._on_event = on_event
        self._settings = settings
        self._lock = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._running: _Job | None = None
        self._next_id = 1
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, request: DownloadRequest) -> int:
        """Queue a download and return its job id (the same id if it is already queued)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the download queue is closed")
            for job in (self._running, *self._pending):
                if job is not None and job.request == request:
                    return job.job_id
            job = _Job(self._next_id, request, CancelToken())
            self._next_id += 1
        self._emit(DownloadQueued(job.job_id, request))
        with self._lock:
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="tui-llm-downloads", daemon=True
                )
                self._thread.start()
            self._lock.notify_all()
        return job.job_id

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False if it is not (or no longer) in the queue."""
        with self._lock:
            if self._running is not None and self._running.job_id == job_id:
                self._running.cancel.cancel()
                return True
            queued = next((job for job in self._pending if job.job_id == job_id), None)
            if queued is None:
                return False
            self._pending.remove(queued)
        self._emit(DownloadCancelled(queued.job_id, queued.request))
        return True

    def jobs(self) -> list[tuple[int, DownloadRequest, bool]]:
        """(job id, request, running) for the running job and then the queued ones."""
        with self._lock:
            running = [(self._running.job_id, self._running.request, True)] if self._running else []
            return running + [(job.job_id, job.request, False) for job in self._pending]

    def close(self, timeout: float | None = 10.0) -> None:
        """Cancel everything and stop the worker thread."""
        with self._lock:
            self._closed = True
            dropped = list(self._pending)
            self._pending.clear()
            if self._running is not None:
                self._running.cancel.cancel()
            self._lock.notify_all()
            thread = self._thread
        for job in dropped:
            self._emit(DownloadCancelled(job.job_id, job.request))
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _emit(self, event: DownloadEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            logger.exception("download event handler failed on %s", type(event).__name__)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if self._closed and not self._pending:
                    return
                job = self._pending.popleft()
                self._running = job
            self._run(job)
            with self._lock:
                self._running = None

    def _run(self, job: _Job) -> None:
        self._emit(DownloadStarted(job.job_id, job.request))
        try:
            result = download(
                job.request,
                settings=self._settings(),
                cancel=job.cancel,
                on_progress=self._emit,
                job_id=job.job_id,
            )
        except HubError as error:
            if error.kind == "cancelled" or job.cancel.cancelled:
                self._emit(DownloadCancelled(job.job_id, job.request))
            else:
                self._emit(DownloadFailed(job.job_id, job.request, error))
        except Exception as exc:
            logger.exception("download of %s failed", job.request.label)
            unexpected = HubError("protocol", f"{job.request.label}: unexpected error: {exc}")
            self._emit(DownloadFailed(job.job_id, job.request, unexpected))
        else:
            self._emit(DownloadFinished(job.job_id, job.request, result))
