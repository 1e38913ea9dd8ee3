"""The sampling thread behind the GPU/VRAM gauge."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from types import MappingProxyType

import psutil

from tui_llm.gpu.nvml import GpuMonitor
from tui_llm.gpu.samples import GpuSample, HostSample, MonitorSnapshot, ProcessMemory

log = logging.getLogger(__name__)


class MonitorThread(threading.Thread):
    """Samples a monitor and the host at a steady rate and hands each snapshot to `on_sample`.

    `on_sample` runs in this thread: a Textual app should only `post_message` from it. The
    process list is read every `process_every` samples (and right after `set_engine_pid`). The
    thread owns the monitor: `stop()` joins and then closes it.
    """

    def __init__(
        self,
        monitor: GpuMonitor,
        on_sample: Callable[[MonitorSnapshot], None] | None = None,
        *,
        interval_s: float = 0.5,
        process_every: int = 4,
        history_s: float = 60.0,
        engine_pid: int | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if process_every < 1:
            raise ValueError("process_every must be at least 1")
        super().__init__(name="tui-llm-gpu-monitor", daemon=True)
        self.monitor = monitor
        self.on_sample = on_sample
        self.interval_s = interval_s
        self.process_every = process_every
        self._history_len = max(1, round(history_s / interval_s))
        self._state_lock = threading.Lock()
        self._stopping = threading.Event()
        self._engine_pid = engine_pid
        self._engine_process: psutil.Process | None = None
        self._refresh_processes = True
        self._samples_taken = 0
        self._processes: dict[int, tuple[ProcessMemory, ...]] = {}
        self._history: dict[int, collections.deque[int]] = {}
        self._latest: MonitorSnapshot | None = None
        self._callback_failed = False

    @property
    def reason(self) -> str | None:
        """Why there are no GPU readings (the null monitor's reason), or None."""
        return self.monitor.reason

    @property
    def engine_pid(self) -> int | None:
        with self._state_lock:
            return self._engine_pid

    def set_engine_pid(self, pid: int | None) -> None:
        """Follow another engine process (None: none); the next sample re-reads the process list."""
        with self._state_lock:
            if pid != self._engine_pid:
                self._engine_pid = pid
                self._engine_process = None
            self._refresh_processes = True

    @property
    def latest(self) -> MonitorSnapshot | None:
        """The most recent snapshot, or None before the first."""
        with self._state_lock:
            return self._latest

    def history(self, gpu_index: int) -> tuple[int, ...]:
        """VRAM used on one GPU over the last `history_s` seconds, oldest first."""
        with self._state_lock:
            return tuple(self._history.get(gpu_index, ()))

    def sample_once(self) -> MonitorSnapshot:
        """Take one snapshot now (the thread's loop calls this; tests may too)."""
        error = self.monitor.reason
        with self._state_lock:
            refresh = self._refresh_processes or self._samples_taken % self.process_every == 0
            self._refresh_processes = False
            self._samples_taken += 1
        gpus: tuple[GpuSample, ...] = ()
        processes: dict[int, tuple[ProcessMemory, ...]] | None = None
        try:
            gpus = self.monitor.sample_gpus()
            if refresh:
                processes = self.monitor.sample_processes()
        except Exception as err:
            log.exception("GPU sampling failed")
            error = _one_line(f"GPU sampling failed: {type(err).__name__}: {err}")
        host = self._sample_host()
        with self._state_lock:
            if processes is not None:
                self._processes = processes
            for gpu in gpus:
                ring = self._history.setdefault(
                    gpu.index, collections.deque(maxlen=self._history_len)
                )
                if gpu.memory_used is not None:
                    ring.append(gpu.memory_used)
            snapshot = MonitorSnapshot(
                timestamp=time.time(),
                gpus=gpus,
                processes=MappingProxyType(dict(self._processes)),
                host=host,
                error=error,
                vram_history=MappingProxyType(
                    {index: tuple(ring) for index, ring in self._history.items()}
                ),
            )
            self._latest = snapshot
        return snapshot

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            snapshot = self.sample_once()
            if self.on_sample is not None:
                try:
                    self.on_sample(snapshot)
                except Exception:
                    if not self._callback_failed:
                        log.exception("on_sample failed; sampling goes on")
                    self._callback_failed = True
            next_at = max(next_at + self.interval_s, time.monotonic())
            self._stopping.wait(next_at - time.monotonic())

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop sampling, wait for the thread, then close the monitor (safe to call twice)."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout_s)
        if not self.is_alive():
            self.monitor.close()

    def _sample_host(self) -> HostSample | None:
        try:
            memory = psutil.virtual_memory()
        except Exception as err:
            log.debug("psutil.virtual_memory failed: %s", err)
            return None
        return HostSample(
            ram_used=int(memory.total - memory.available),
            ram_total=int(memory.total),
            engine_rss=self._engine_rss(),
        )

    def _engine_rss(self) -> int | None:
        with self._state_lock:
            pid, process = self._engine_pid, self._engine_process
        if pid is None:
            return None
        try:
            if process is None:
                process = psutil.Process(pid)
            rss = int(process.memory_info().rss)
        except psutil.Error:
            process, rss = None, None
        with self._state_lock:
            if self._engine_pid == pid:
                self._engine_process = process
        return rss


def _one_line(text: str) -> str:
    return " ".join(text.split())
