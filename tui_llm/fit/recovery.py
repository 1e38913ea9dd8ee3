"""Recover from a load that failed for memory: retry with fewer layers, guided by the estimate.

A failure at level L says the GPU could not hold what level L needs, so the next try is the
largest level whose estimated GPU bytes are clearly below L's (at least 15% less, and within the
free memory less the margin when that is known). Levels only go down and stop at 0, so there is
never a loop; a failure at 0 is the user's to see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import LoadedEvent, LoadSettings
from tui_llm.fit.auto import safety_margin
from tui_llm.fit.estimate import Estimate, EstimateError

log = logging.getLogger(__name__)

RETRY_KINDS = frozenset({"out_of_memory", "crashed"})
_SHED = 0.15  # each retry gives up at least this share of the failed level's GPU bytes
_MAX_ATTEMPTS = 6  # after this many failures the next try is CPU only


class Loader(Protocol):
    """What recovery needs of an engine client (EngineClient, or a test's fake)."""

    async def load(
        self,
        settings: LoadSettings,
        on_progress: Callable[[float], None] | None = None,
        keep_kv: bool = True,
    ) -> LoadedEvent: ...


def next_offload(
    failed: int,
    estimate: Estimate | None = None,
    free_gpu_bytes: int | None = None,
    margin_bytes: int | None = None,
) -> int | None:
    """The level to try after ``failed`` ran out of memory, or None when ``failed`` was 0.

    Always strictly below ``failed``.
    """
    if failed <= 0:
        return None
    if estimate is None:
        return failed * 3 // 4
    failed = min(failed, estimate.max_level)
    target = estimate.level(failed).gpu.total * (1.0 - _SHED)
    if free_gpu_bytes is not None:
        margin = margin_bytes if margin_bytes is not None else safety_margin(None, free_gpu_bytes)
        target = min(target, free_gpu_bytes - margin)
    fitting = [k for k in range(failed) if estimate.level(k).gpu.total <= target]
    return max(fitting, default=0)


def recovery_sequence(
    start: int,
    estimate: Estimate | None = None,
    free_gpu_bytes: int | None = None,
    margin_bytes: int | None = None,
) -> list[int]:
    """Every level recovery would try if each one failed: ``start`` first, 0 last."""
    levels = [start]
    while True:
        following = (
            0
            if len(levels) >= _MAX_ATTEMPTS
            else next_offload(levels[-1], estimate, free_gpu_bytes, margin_bytes)
        )
        if following is None or levels[-1] == 0:
            return levels
        levels.append(following)


def recovery_message(failed: list[int], loaded: int, max_level: int | None) -> str:
    """ "20 layers did not fit, loaded with 16"; several failures are listed in order."""
    counts = [
        f"all {level}" if max_level is not None and level >= max_level else str(level)
        for level in failed
    ]
    listed = counts[0] if len(counts) == 1 else ", ".join(counts[:-1]) + " and " + counts[-1]
    unit = "layer" if failed == [1] else "layers"
    where = "on the CPU only" if loaded == 0 else f"with {loaded}"
    return f"{listed} {unit} did not fit, loaded {where}"


def _estimate_for(client: Loader, settings: LoadSettings) -> Estimate | None:
    """The uncorrected estimate for the device the engine has (an RPC server, a GPU, none)."""
    from tui_llm.fit.estimate import EstimateSettings, device_for_devices, estimate_file

    ready = getattr(client, "ready", None)
    devices = getattr(ready, "devices", None)
    device = device_for_devices(devices) if devices is not None else None
    if device is None or (settings.rpc_servers and device.name != "RPC0"):
        from tui_llm.fit import device_for

        device = device_for(settings)
    try:
        return estimate_file(
            settings.model_path, EstimateSettings.from_load_settings(settings), device
        )
    except (OSError, EstimateError, ValueError):
        return None


def _record(loaded: LoadedEvent, raw: Estimate) -> None:
    """Keep this load beside the estimate for next time; learning never breaks a load."""
    from tui_llm.fit.learned import record_load

    try:
        record_load(loaded, raw)
    except Exception as exc:  # a broken store must not turn a good load into an error
        log.warning("could not record the memory estimate's error: %s", exc)


async def load_with_recovery(
    client: Loader,
    settings: LoadSettings,
    free_gpu_bytes: int | None,
    *,
    on_progress: Callable[[float], None] | None = None,
    keep_kv: bool = True,
    estimate: Estimate | None = None,
    margin_bytes: int | None = None,
    record: bool = True,
) -> tuple[LoadedEvent, str | None]:
    """Load, and on running out of memory (or the engine dying) during the load, retry lower.

    Returns the loaded event and, when layers had to be given up, a message such as
    "20 layers did not fit, loaded with 16". Any other error, or a memory failure with 0
    layers, is raised as the engine reported it. ``EngineClient.load`` restarts a crashed engine.
    ``estimate`` (uncorrected) is computed when not given; with ``record`` the successful load
    is stored beside it for the learned correction.
    """
    # The estimate (tens of ms for a new model) and the learned-correction file stay off the
    # caller's event loop: a UI calls this from its loop.
    raw = (
        estimate
        if estimate is not None
        else await asyncio.to_thread(_estimate_for, client, settings)
    )
    estimate = raw
    if raw is not None:
        from tui_llm.fit.learned import correction_for

        correction = await asyncio.to_thread(correction_for, settings.model_path, settings)
        if correction.samples:
            estimate = replace(raw, levels=tuple(correction.apply(lv) for lv in raw.levels))
    max_level = estimate.max_level if estimate is not None else None
    requested = settings.offload_layers
    if requested == "all":
        if max_level is None:
            loaded = await client.load(settings, on_progress=on_progress, keep_kv=keep_kv)
            return loaded, None
        level = max_level
    else:
        level = int(requested)
    failed: list[int] = []
    attempt = settings
    while True:
        try:
            loaded = await client.load(attempt, on_progress=on_progress, keep_kv=keep_kv)
        except EngineError as exc:
            if exc.kind not in RETRY_KINDS:
                raise
            failed.append(level)
            following = (
                0
                if len(failed) >= _MAX_ATTEMPTS
                else next_offload(level, estimate, free_gpu_bytes, margin_bytes)
            )
            if following is None or level == 0:
                raise
            log.warning("loading with %d layers failed (%s); trying %d", level, exc, following)
            level = following
            attempt = replace(settings, offload_layers=level)
            continue
        if record and raw is not None:
            await asyncio.to_thread(_record, loaded, raw)
        if not failed:
            return loaded, None
        return loaded, recovery_message(failed, level, max_level)
