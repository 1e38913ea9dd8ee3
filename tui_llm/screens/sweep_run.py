"""One offload sweep run from the app: it borrows the engine from the chat and gives it back.

The run lives on the main screen (its worker is the main screen's), so the sweep screen can be
closed and opened again while it measures. From ``start`` until ``release`` the sweep *holds the
engine*: the chat's replies wait (the main screen queues a message sent meanwhile) and loads are
refused. When the sweep ends, the screen (if open) lets the user apply the fastest level or
bring back what was loaded before; with no screen open, what was loaded before comes back at
once. Either reload carries the conversation's KV cache.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from textual.message import Message

from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import LoadedEvent, LoadSettings
from tui_llm.store import StoredSweep, StoreError, SweepStore
from tui_llm.sweep import LevelResult, SweepResult
from tui_llm.sweep.machine import machine_info
from tui_llm.sweep.records import MachineInfo, SweepSettings
from tui_llm.sweep.run import SweepCancel, SweepPlan, run_sweep
from tui_llm.widgets.offload import OffloadPanel

if TYPE_CHECKING:
    from textual.screen import Screen

    from tui_llm.screens.main import MainScreen

RunState = Literal["ready", "running", "done", "stopped", "failed"]


@dataclass
class SweepProgressed(Message):
    """A sweep moved on (a step, or a level's row); the screen redraws from the run."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SweepProgressed)


@dataclass
class SweepEnded(Message):
    """A sweep finished, was stopped, or failed; its result is saved when it measured a level."""


class SweepRun:
    """A sweep of the model loaded on ``main``: its plan, rows as they come, and the outcome.

    ``previous`` is what was loaded when the sweep started (it comes back unless a level is
    applied); ``rows`` the levels done so far; ``result`` the whole sweep once it ended;
    ``saved_id`` its id in the store (``None`` when not saved: ``save_error`` says why, or
    nothing was measured). ``viewer`` is the sweep screen showing this run, if one is open;
    ``viewed`` a saved sweep it shows before this run starts, ``before`` the earlier sweep it
    compares with (kept here, so they outlast the screen).
    """

    def __init__(self, main: MainScreen, loaded: LoadedEvent) -> None:
        self.main = main
        self.model_path = Path(loaded.settings.model_path)
        self.total_layers = loaded.total_layers
        self.moe = main.tui.session.moe_layers > 0  # the expert levels are measured too
        self.previous: LoadSettings = loaded.settings
        self.state: RunState = "ready"
        self.holds_engine = False
        self.plan: SweepPlan | None = None
        self.machine = MachineInfo(cpu="")
        self.rows: list[LevelResult] = []
        self.result: SweepResult | None = None
        self.progress = ""
        self.error = ""
        self.saved_id: int | None = None
        self.save_error = ""
        self.cancel = SweepCancel()
        self.viewer: Screen[Any] | None = None
        self.viewed: StoredSweep | None = None
        self.before: StoredSweep | None = None
        store = main.tui.store
        self.store: SweepStore | None = SweepStore(store) if store is not None else None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def is_for(self, loaded: LoadedEvent | None) -> bool:
        """Whether this run measures the model ``loaded`` is."""
        return loaded is not None and Path(loaded.settings.model_path) == self.model_path

    def partial_result(self) -> SweepResult | None:
        """The sweep as far as it went (the finished result once it ended)."""
        if self.result is not None:
            return self.result
        if self.plan is None:
            return None
        plan = self.plan
        return SweepResult(
            model_path=str(plan.model_path),
            model_name=plan.model_path.name,
            total_layers=plan.total_layers,
            settings=SweepSettings(plan.load, plan.prompt_tokens, plan.gen_tokens, plan.repeats),
            machine=self.machine,
            started=0.0,
            levels=list(self.rows),
        )

    # ---- the sweep ------------------------------------------------------------------------

    def start(self, plan: SweepPlan, previous: LoadSettings) -> None:
        """Measure ``plan`` in a worker of the main screen; ``previous`` comes back afterwards."""
        self.plan = plan
        self.previous = previous
        self.state = "running"
        self.holds_engine = True
        self.rows = []
        self.result = None
        self.progress = "starting"
        self.error = self.save_error = ""
        self.saved_id = None
        self.cancel = SweepCancel()
        self.main.run_worker(self._execute(plan), group="sweep", exclusive=True)

    def stop(self) -> None:
        """Stop after the measurement at hand."""
        if self.running:
            self.cancel.set()
            self.progress = "stopping after this measurement"
            self._post(SweepProgressed())

    async def _execute(self, plan: SweepPlan) -> None:
        engine = self.main.tui.engine
        try:
            ready = await engine.start()  # the one running, or a new one after a crash
            self.machine = await asyncio.to_thread(machine_info, ready)
            result = await run_sweep(
                engine,
                plan,
                self.machine,
                free_gpu_bytes=self._free_gpu_bytes,
                has_gpu_device=self._has_gpu_device,
                vram_used=self._vram_used,
                on_level=self._on_level,
                on_progress=self._on_progress,
                cancel=self.cancel,
            )
        except (EngineError, OSError) as exc:
            self.state = "failed"
            self.error = str(exc)
        except Exception as exc:  # a fault in a level must not keep the model from the chat
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
        else:
            self.result = result
            self.state = "stopped" if self.cancel.requested else "done"
            self._save(result)
        self.progress = ""
        if not self.main.app.is_running:
            return
        self.main.tui.monitor_engine_pid(engine.pid)  # a level that crashed the engine: new pid
        self.main.query_one(OffloadPanel).status = ""
        if self.viewer is None:
            self.release(self.previous)  # nobody is looking: the chat gets its model back now
        self._post(SweepEnded())

    def _save(self, result: SweepResult) -> None:
        if self.store is None:
            self.save_error = "no store: sweeps are not being saved"
            return
        if not any(row.status == "ok" for row in result.levels):
            return
        try:
            self.saved_id = self.store.save(result)
        except StoreError as exc:
            self.save_error = str(exc)

    def release(self, settings: LoadSettings) -> None:
        """Give the engine back to the chat: load ``settings`` (the KV cache carried)."""
        if not self.holds_engine:
            return
        self.holds_engine = False
        self.main.run_load(settings)

    # ---- callbacks of run_sweep (on the event loop) ---------------------------------------

    def _on_level(self, row: LevelResult) -> None:
        self.rows.append(row)
        self._post(SweepProgressed())

    def _on_progress(self, text: str) -> None:
        if self.cancel.requested:
            return
        self.progress = text
        if self.main.app.is_running:
            self.main.query_one(OffloadPanel).status = f"Offload sweep, {text} (b shows it)"
        self._post(SweepProgressed())

    def _post(self, message: Message) -> None:
        viewer = self.viewer
        if viewer is not None and viewer.is_attached:
            viewer.post_message(message)

    # ---- what a level's load can use ------------------------------------------------------

    def _free_gpu_bytes(self) -> int | None:
        """GPU memory a level's load can use: free now plus what the engine holds (the level
        loaded before, not the chat's model the session knows: the sweep replaced it)."""
        return self.main.tui.session.free_gpu_bytes(held_by=self.main.tui.engine.loaded)

    def _has_gpu_device(self) -> bool:
        engine = self.main.tui.engine
        loaded = engine.loaded
        ready = engine.ready
        devices = loaded.devices if loaded is not None else (ready.devices if ready else ())
        return bool(self.previous.rpc_servers) or any(d.kind != "cpu" for d in devices)

    def _vram_used(self) -> int | None:
        """NVML's used memory over the GPUs, from the monitor's latest sample."""
        snapshot = getattr(self.main.tui.monitor, "latest", None)
        gpus = getattr(snapshot, "gpus", ()) if snapshot is not None else ()
        used = [g.memory_used for g in gpus if g.memory_used is not None]
        return sum(used) if used else None


def level_settings(base: LoadSettings, level: LevelResult) -> LoadSettings:
    """``base`` with ``level``'s placement: its layers and expert layers in RAM (what "apply"
    loads)."""
    return replace(base, offload_layers=level.gpu_layers or 0, n_cpu_moe=level.n_cpu_moe)
