"""The offload sweep: the same model measured at several GPU offload levels, through the engine
the app uses.

For each level: a load (timed, the KV cache not carried), one warm-up, then ``repeats``
llama-bench-style measurements (``EngineClient.bench``: random prompt tokens, then tokens decoded
one by one; no sampling in the figures). A level the estimate says does not fit the free GPU
memory is skipped with the figures; a load that runs out of memory, or an engine that crashes at
a level, is recorded for that level and the sweep goes on (the next load starts a new engine).
Cancelling stops after the measurement at hand. Textual-free: the app and ``tui-llm bench`` both
drive it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tui_llm import fit
from tui_llm.catalog.metadata import human_bytes
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.logparse import totals_by_device
from tui_llm.engine.protocol import BenchEvent, LoadSettings, OffloadValue
from tui_llm.placement import n_cpu_moe_count, placement_label
from tui_llm.sweep.levels import LevelSpec, resolve
from tui_llm.sweep.records import (
    LevelResult,
    MachineInfo,
    Spread,
    SweepResult,
    SweepSettings,
)

WARMUP_PROMPT_TOKENS = 16
WARMUP_GEN_TOKENS = 4


@dataclass(frozen=True)
class SweepPlan:
    """What to measure: the model, its levels, and how (``load``'s offload is replaced by each
    level's)."""

    model_path: Path
    total_layers: int  # n_layer + 1: llama.cpp's highest offload level
    levels: tuple[LevelSpec, ...]
    load: LoadSettings
    prompt_tokens: int = 512
    gen_tokens: int = 128
    repeats: int = 3
    moe: bool = False  # a mixture-of-experts model: the expert levels are measured


def experts_for_vram(
    model_path: Path, load: LoadSettings, total_layers: int, reference_layers: int
) -> tuple[int, int, int] | None:
    """(expert layers in RAM, their GPU bytes, the reference's GPU bytes) for every layer on
    the GPU with the fewest expert layers in RAM whose estimated GPU memory is at most that of
    ``reference_layers`` plain layers (the load's own ``n_cpu_moe``); when none is that small,
    every expert layer in RAM (its GPU bytes then exceed the reference's). ``None`` without an
    estimate. Runs the estimate: call it from a thread."""
    n_layer = total_layers - 1
    base = n_cpu_moe_count(load.n_cpu_moe, n_layer)
    reference = fit.estimate_pair(model_path, load, reference_layers, base)
    if reference is None:
        return None
    budget = sum(reference[0])
    gpu = budget
    for count in range(n_layer + 1):
        pair = fit.estimate_pair(model_path, load, total_layers, count)
        if pair is None:
            return None
        gpu = sum(pair[0])
        if gpu <= budget:
            return count, gpu, budget
    return n_layer, gpu, budget


class SweepCancel:
    """Set it to stop a sweep after the measurement at hand (thread-safe enough: one flag)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True


async def run_sweep(
    client: EngineClient,
    plan: SweepPlan,
    machine: MachineInfo,
    *,
    free_gpu_bytes: Callable[[], int | None],
    has_gpu_device: Callable[[], bool],
    vram_used: Callable[[], int | None] | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
    cancel: SweepCancel | None = None,
) -> SweepResult:
    """Measure every level of ``plan``; rows reach ``on_level`` as they finish.

    ``free_gpu_bytes()`` is what a load can use now (``None``: no GPU); ``has_gpu_device()``
    whether llama.cpp has a device to offload to (without one every level above 0 is skipped:
    llama.cpp would accept it and offload nothing). Both are asked at each level, since an RPC
    device is known only once a load has registered it. ``vram_used`` reads NVML's used memory.
    The auto level is worked out when its turn comes.
    """
    cancel = cancel or SweepCancel()
    load = replace(plan.load, n_ctx=max(plan.load.n_ctx, plan.prompt_tokens + plan.gen_tokens + 8))
    result = SweepResult(
        model_path=str(plan.model_path),
        model_name=plan.model_path.name,
        total_layers=plan.total_layers,
        settings=SweepSettings(load, plan.prompt_tokens, plan.gen_tokens, plan.repeats),
        machine=machine,
        started=time.time(),
    )
    done: set[tuple[int, int]] = set()
    n_layer = plan.total_layers - 1
    for spec in plan.levels:
        auto_layers = None
        if spec.value == "auto":
            auto = await asyncio.to_thread(
                fit.auto_offload_for_path, plan.model_path, load, free_gpu_bytes()
            )
            auto_layers = auto[0] if auto is not None else None
        layers = resolve(spec, plan.total_layers, auto_layers)
        n_cpu_moe, why_not = await _experts_of(spec, plan, load)
        label = spec.label if spec.value != "auto" else f"auto ({layers})"
        if layers is not None and spec.is_expert_level and n_cpu_moe is not None:
            label = placement_label(layers, plan.total_layers, n_cpu_moe)
            if spec.vram_of is not None:
                label += f" (VRAM of {spec.vram_of})"
        key = None if layers is None else (layers, n_cpu_moe_count(n_cpu_moe or 0, n_layer))
        if cancel.requested:
            row = LevelResult(label, layers, "cancelled", "the sweep was stopped")
        elif n_cpu_moe is None:
            row = LevelResult(label, layers, "skipped", why_not)
        elif layers is None or key is None:
            row = LevelResult(label, None, "skipped", "no estimate for this model")
        elif key in done:
            # a level that landed on one measured already (auto, or an expert level that
            # matched with no expert layer in RAM): that row says so
            for index, earlier in enumerate(result.levels):
                earlier_key = (earlier.gpu_layers, n_cpu_moe_count(earlier.n_cpu_moe, n_layer))
                if earlier_key == key and earlier.status == "ok":
                    same = "auto" if spec.value == "auto" else label
                    result.levels[index] = replace(earlier, label=f"{earlier.label} = {same}")
            continue
        else:
            row = await _measure_level(
                client, plan, replace(load, n_cpu_moe=n_cpu_moe), label, layers, free_gpu_bytes,
                has_gpu_device, vram_used, on_progress, cancel,
            )  # fmt: skip
            done.add(key)
            loaded = client.loaded
            if loaded is not None and len(loaded.devices) > len(result.machine.devices):
                result.machine = replace(result.machine, devices=loaded.devices)
        result.levels.append(row)
        if on_level is not None:
            on_level(row)
    return result


async def _experts_of(
    spec: LevelSpec, plan: SweepPlan, load: LoadSettings
) -> tuple[OffloadValue | None, str]:
    """(the level's ``n_cpu_moe``, "") or (``None``, why the level is skipped)."""
    if not spec.is_expert_level:
        return load.n_cpu_moe, ""
    if not plan.moe:
        return None, "not a mixture-of-experts model: no expert weights to keep in RAM"
    if spec.experts is not None:
        return spec.experts, ""
    assert spec.vram_of is not None
    reference = min(spec.vram_of, plan.total_layers)
    if reference >= plan.total_layers:
        return load.n_cpu_moe, ""
    found = await asyncio.to_thread(
        experts_for_vram, plan.model_path, load, plan.total_layers, reference
    )
    if found is None:
        return None, "no estimate for this model"
    experts, gpu, budget = found
    if gpu > budget:
        return None, (
            f"every layer takes {human_bytes(gpu)} on the GPU even with all experts in RAM, "
            f"level {reference} {human_bytes(budget)}"
        )
    return experts, ""


async def _measure_level(
    client: EngineClient,
    plan: SweepPlan,
    load: LoadSettings,
    label: str,
    layers: int,
    free_gpu_bytes: Callable[[], int | None],
    has_gpu_device: Callable[[], bool],
    vram_used: Callable[[], int | None] | None,
    on_progress: Callable[[str], None] | None,
    cancel: SweepCancel,
) -> LevelResult:
    def say(text: str) -> None:
        if on_progress is not None:
            on_progress(f"{label}: {text}")

    settings = replace(load, offload_layers=layers)
    moe = load.n_cpu_moe
    if layers > 0 and not has_gpu_device():
        return LevelResult(
            label, layers, "skipped", "no GPU device: every layer stays on the CPU", n_cpu_moe=moe
        )
    free = free_gpu_bytes()
    if layers > 0 and free is not None:
        estimate = await asyncio.to_thread(
            fit.estimate_level, plan.model_path, settings, layers, True
        )
        if estimate is not None and estimate[0] > free:
            return LevelResult(
                label,
                layers,
                "skipped",
                f"needs {human_bytes(estimate[0])} on the GPU, {human_bytes(free)} free",
                n_cpu_moe=moe,
            )
    say("loading")
    started = time.perf_counter()
    try:
        loaded = await client.load(settings, keep_kv=False)
    except EngineError as exc:
        if exc.kind == "out_of_memory":
            return LevelResult(label, layers, "skipped", str(exc), n_cpu_moe=moe)
        return LevelResult(label, layers, "failed", str(exc), n_cpu_moe=moe)
    load_s = time.perf_counter() - started
    measurements: list[BenchEvent] = []
    try:
        say("warm-up")
        await client.bench(WARMUP_PROMPT_TOKENS, WARMUP_GEN_TOKENS, seed=-1)
        for repeat in range(plan.repeats):
            if cancel.requested:
                break
            say(f"run {repeat + 1} of {plan.repeats}")
            measurements.append(await client.bench(plan.prompt_tokens, plan.gen_tokens, repeat))
    except EngineError as exc:
        return LevelResult(
            label, layers, "failed", str(exc), loaded.offloaded_layers, n_cpu_moe=moe
        )
    devices = totals_by_device(loaded.buffers, loaded.devices)
    common = {
        "n_cpu_moe": moe,
        "offloaded_layers": loaded.offloaded_layers,
        "load_s": load_s,
        "bytes_by_device": tuple(sorted(devices.items())),
        "vram_used_bytes": vram_used() if vram_used is not None else None,
    }
    if not measurements:
        return LevelResult(label, layers, "cancelled", "the sweep was stopped", **common)  # type: ignore[arg-type]
    return LevelResult(
        label,
        layers,
        "ok",
        prompt_tokens_per_s=Spread.of([m.prompt_tokens_per_s for m in measurements]),
        gen_tokens_per_s=Spread.of([m.gen_tokens_per_s for m in measurements]),
        time_to_first_token_s=Spread.of([m.first_token_s for m in measurements]),
        **common,  # type: ignore[arg-type]
    )
