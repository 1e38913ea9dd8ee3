"""The offload sweep's figures against llama-cpp-python driven directly: do they agree?

Prints figures and ratios measured in one run; it is not a test and asserts nothing about time.
Run from the repository root (it writes its model to a temporary folder):

    .venv/bin/python -m benchmarks.bench_sweep [--quick] [--threads N]

On a generated model (16 layers x 512 wide, f16), at two levels, CPU only (0) and every layer on
the offload device (``all``), each round measures both sides once, in alternating order:

- **sweep**: ``run_sweep`` (the code behind ``tui-llm bench`` and the app's sweep) with this one
  level and one repeat, on an ``EngineClient`` (the app's engine child process): it loads the
  level, runs its warm-up, and sends one ``BenchRequest``;
- **direct**: in this process, ``Llama()`` with the keyword arguments the engine passes
  (``llama_kwargs`` of the settings the sweep recorded) and the engine's model params
  (``progress_hook``: the same ``use_extra_bufts`` on AMX CPUs), the same warm-up, then the same
  random prompt token ids (same seed) fed with ``Llama.eval``, then one-token decodes, with
  ``llama_synchronize`` after each decode, timed here.

The offload device is a ``tui-llm rpc-server`` on 127.0.0.1 backed by this CPU, one for each side
(an RPC server serves one client at a time). The figure compared is the median over the rounds
of the per-round ratio sweep / direct (each round's pair runs back to back, so the machine's
drift between rounds cancels); the target is generation tokens/s within 5 %. The sweep's rows
are checked to be exactly the ``BenchEvent``\\ s its engine process sent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.bench_engine import BLOCKING_STALL_S, CLEAN_SHARE, CpuWatch, log, rpc_server
from benchmarks.sections import markdown_table
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import BenchEvent, LoadSettings
from tui_llm.sweep import LevelResult, LevelSpec, Spread
from tui_llm.sweep.machine import machine_info
from tui_llm.sweep.records import MachineInfo, SweepSettings
from tui_llm.sweep.run import WARMUP_GEN_TOKENS, WARMUP_PROMPT_TOKENS, SweepPlan, run_sweep

MODEL_NAME = "random 16 layers x 512 wide, f16"
TARGET = 0.05  # |sweep / direct - 1| for generation tokens/s
SEED = 0  # the sweep's seed for its first (here: only) repeat
IDLE_WAIT_S = 30.0  # before each pair, wait at most this long for other processes to go quiet


@dataclass(frozen=True)
class Plan:
    """How much one run measures."""

    rounds: int
    prompt_tokens: int
    gen_tokens: int
    threads: int = 2


FULL = Plan(rounds=9, prompt_tokens=512, gen_tokens=128)
QUICK = Plan(rounds=2, prompt_tokens=128, gen_tokens=32)


@dataclass(frozen=True)
class Rates:
    """One measurement: prompt and generation tokens/s."""

    prompt_tokens_per_s: float
    gen_tokens_per_s: float


@dataclass
class Level:
    """Both sides' measurements at one level, pair by pair."""

    spec: LevelSpec
    direct: list[Rates] = field(default_factory=list)
    sweep: list[Rates] = field(default_factory=list)
    quiet: list[bool] = field(default_factory=list)
    rows: list[LevelResult] = field(default_factory=list)
    settings: LoadSettings | None = None  # as the sweep recorded them, offload set


# ---- the sweep, through the app's engine ------------------------------------------------------


class RecordingEngine(EngineClient):
    """The app's engine client, keeping every ``BenchEvent`` it returns with the seed asked."""

    def __init__(self, log_path: Path) -> None:
        super().__init__(log_path=log_path, stall_timeout_s=BLOCKING_STALL_S)
        self.events: list[tuple[int, BenchEvent]] = []
        self.pids: set[int] = set()

    async def bench(self, prompt_tokens: int, gen_tokens: int, seed: int = 0) -> BenchEvent:
        event = await super().bench(prompt_tokens, gen_tokens, seed)
        self.events.append((seed, event))
        if self.pid is not None:
            self.pids.add(self.pid)
        return event


def rows_match_events(row: LevelResult, events: Sequence[BenchEvent]) -> bool:
    """Whether a sweep row's figures are exactly those of ``events`` (nothing measured else)."""
    return bool(events) and (
        row.gen_tokens_per_s == Spread.of([e.gen_tokens_per_s for e in events])
        and row.prompt_tokens_per_s == Spread.of([e.prompt_tokens_per_s for e in events])
        and row.time_to_first_token_s == Spread.of([e.first_token_s for e in events])
    )


async def sweep_once(
    client: RecordingEngine,
    model: Path,
    total_layers: int,
    level: Level,
    load: LoadSettings,
    plan: Plan,
    machine: MachineInfo,
) -> tuple[LevelResult, SweepSettings, bool]:
    """One ``run_sweep`` of one level and one repeat: its row, its settings, and whether the row
    is the engine's ``BenchEvent``."""
    before = len(client.events)
    sweep_plan = SweepPlan(
        model_path=model,
        total_layers=total_layers,
        levels=(level.spec,),
        load=load,
        prompt_tokens=plan.prompt_tokens,
        gen_tokens=plan.gen_tokens,
        repeats=1,
    )
    result = await run_sweep(
        client,
        sweep_plan,
        machine,
        free_gpu_bytes=lambda: None,
        has_gpu_device=lambda: bool(load.rpc_servers),
    )
    row = result.levels[0]
    if row.status != "ok":
        raise RuntimeError(f"the sweep's level {row.label} {row.status}: {row.reason}")
    measured = [event for seed, event in client.events[before:] if seed >= 0]
    return row, result.settings, rows_match_events(row, measured)


# ---- llama-cpp-python, driven directly in this process --------------------------------------


def direct_load(settings: LoadSettings) -> Any:
    """``Llama()`` as the engine child calls it: its keyword arguments and model params."""
    from llama_cpp import Llama

    from tui_llm.engine import native
    from tui_llm.engine.load_params import llama_kwargs, progress_hook, tensor_overrides

    for endpoint in settings.rpc_servers:
        native.add_rpc_server(endpoint)
    overrides = native.tensor_buft_overrides(tensor_overrides(settings))
    with progress_hook(lambda _progress: True, overrides):
        return Llama(settings.model_path, verbose=False, **llama_kwargs(settings))


def direct_measure(llm: Any, prompt_tokens: int, gen_tokens: int, seed: int) -> Rates:
    """llama-bench's pp and tg with ``Llama.eval``: random prompt ids from ``seed`` (the same
    ids the engine draws), then one decode per token; each decode waits for the device."""
    import llama_cpp

    ctx = llm._ctx.ctx
    rng = random.Random(seed)
    n_vocab = int(llm.n_vocab())
    prompt = [rng.randrange(n_vocab) for _ in range(prompt_tokens)]
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    llama_cpp.llama_synchronize(ctx)
    prompt_done = time.perf_counter()
    token = rng.randrange(n_vocab)
    for _ in range(gen_tokens):
        llm.eval([token])
        llama_cpp.llama_synchronize(ctx)
        token = rng.randrange(n_vocab)
    ended = time.perf_counter()
    llm.reset()
    return Rates(prompt_tokens / (prompt_done - started), gen_tokens / (ended - prompt_done))


def direct_once(settings: LoadSettings, plan: Plan) -> Rates:
    """Load, warm up as the sweep does, measure once, close: the sweep's steps for a level."""
    llm = direct_load(settings)
    try:
        direct_measure(llm, WARMUP_PROMPT_TOKENS, WARMUP_GEN_TOKENS, seed=-1)
        return direct_measure(llm, plan.prompt_tokens, plan.gen_tokens, SEED)
    finally:
        llm.close()


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """A whole run: the levels, and what the figures come from."""

    plan: Plan
    levels: list[Level]
    engine_pids: set[int]
    engine_log: Path
    all_rows_are_events: bool
    llama_cpp_python: str
    rpc_note: str
    seconds: float = 0.0
    waited_s: float = 0.0
    load_before: str = ""
    load_after: str = ""


def _loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


async def measure(plan: Plan, folder: Path) -> Run:
    began = time.perf_counter()
    load_before = _loadavg()
    log("writing the model...")
    model = write_llama_gguf(
        folder / "random-16x512.gguf", n_layer=16, n_embd=512, n_ctx=4096, seed=16
    )
    total_layers = 16 + 1
    base = LoadSettings(str(model), n_ctx=1024, n_threads=plan.threads)
    watch = CpuWatch()
    client = RecordingEngine(folder / "engine.log")
    ready = await client.start()
    machine = await asyncio.to_thread(machine_info, ready)
    levels = [Level(LevelSpec(0))]
    rpc_note = "no RPC in this llama-cpp-python build: CPU only measured"
    all_match = True
    try:
        with ExitStack() as stack:
            engine_rpc: tuple[str, ...] = ()
            direct_rpc: tuple[str, ...] = ()
            if ready.supports_rpc:
                direct_rpc = (
                    stack.enter_context(rpc_server(folder, "direct", plan.threads, watch)),
                )
                engine_rpc = (
                    stack.enter_context(rpc_server(folder, "sweep", plan.threads, watch)),
                )
                levels.append(Level(LevelSpec("all")))
                rpc_note = (
                    f"`all` puts every layer on a `tui-llm rpc-server` on 127.0.0.1 "
                    f"({plan.threads} threads), one server for each side"
                )
            load = replace(base, rpc_servers=engine_rpc)
            for round_index in range(plan.rounds):
                for level in levels:
                    watch.wait_for_idle(IDLE_WAIT_S)
                    if client.pid is not None:
                        watch.pids.add(client.pid)
                    start = watch.sample()
                    sides = ("sweep", "direct") if round_index % 2 == 0 else ("direct", "sweep")
                    for side in sides:
                        if side == "sweep":
                            row, settings, matches = await sweep_once(
                                client, model, total_layers, level, load, plan, machine
                            )
                            all_match = all_match and matches
                            level.rows.append(row)
                            level.sweep.append(
                                Rates(
                                    row.prompt_tokens_per_s.median,  # type: ignore[union-attr]
                                    row.gen_tokens_per_s.median,  # type: ignore[union-attr]
                                )
                            )
                            recorded = replace(settings.load, offload_layers=row.gpu_layers or 0)
                            if level.settings is None:
                                level.settings = recorded
                            elif recorded != level.settings:
                                raise RuntimeError("the sweep's settings changed between rounds")
                        else:
                            assert level.settings is not None  # the sweep ran first in round 0
                            direct = replace(level.settings, rpc_servers=direct_rpc)
                            # Blocking is fine: the engine is idle, and only its heartbeats
                            # wait (``BLOCKING_STALL_S``).
                            level.direct.append(direct_once(direct, plan))
                    busy = watch.others_share(start, watch.sample())
                    level.quiet.append(busy < CLEAN_SHARE)
                    direct_rates, sweep_rates = level.direct[-1], level.sweep[-1]
                    log(
                        f"  round {round_index + 1}, level {level.spec.label}: generation "
                        f"direct {direct_rates.gen_tokens_per_s:.1f}, sweep "
                        f"{sweep_rates.gen_tokens_per_s:.1f} tok/s; prompt direct "
                        f"{direct_rates.prompt_tokens_per_s:.0f}, sweep "
                        f"{sweep_rates.prompt_tokens_per_s:.0f} tok/s; others took {busy:.0%}"
                    )
    finally:
        await client.close()
    return Run(
        plan=plan,
        levels=levels,
        engine_pids=client.pids,
        engine_log=folder / "engine.log",
        all_rows_are_events=all_match,
        llama_cpp_python=ready.llama_cpp_version,
        rpc_note=rpc_note,
        seconds=time.perf_counter() - began,
        waited_s=watch.waited_s,
        load_before=load_before,
        load_after=_loadavg(),
    )


# ---- the report ---------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass(frozen=True)
class Agreement:
    """One figure at one level: both sides' medians, their ratio, and the per-pair ratios."""

    direct: float
    sweep: float
    pair_ratios: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """The median of the per-pair ratios: each pair ran back to back, so the machine's
        drift between rounds (which moves both sides) cancels; the medians of each side may
        come from different rounds."""
        return _median(self.pair_ratios)

    def cells(self, decimals: int) -> tuple[str, str, str, str]:
        pairs = self.pair_ratios
        return (
            f"{self.direct:.{decimals}f}",
            f"{self.sweep:.{decimals}f}",
            f"**{self.ratio:.3f}** ({min(pairs):.3f}-{max(pairs):.3f})",
            f"{self.sweep / self.direct:.3f}",
        )


def used_pairs(level: Level) -> list[int]:
    """The quiet pairs, or all of them when none was quiet."""
    return [i for i, quiet in enumerate(level.quiet) if quiet] or list(range(len(level.quiet)))


def agreement(level: Level, figure: str, pairs: Sequence[int]) -> Agreement:
    """``figure`` (a ``Rates`` field) over ``pairs``: medians of each side, per-pair ratios."""
    direct = [getattr(level.direct[i], figure) for i in pairs]
    sweep = [getattr(level.sweep[i], figure) for i in pairs]
    ratios = tuple(s / d for s, d in zip(sweep, direct, strict=True))
    return Agreement(_median(direct), _median(sweep), ratios)


def pairs_used(level: Level, figure: str) -> str:
    """How many pairs the medians used, and the ratio over all pairs when some were left out."""
    quiet, total = sum(level.quiet), len(level.quiet)
    if quiet == 0:
        return f"none quiet: all {total} used"
    if quiet == total:
        return f"{total} of {total}"
    everything = agreement(level, figure, range(total)).ratio
    return f"{quiet} of {total} (all: {everything:.3f})"


def verdicts(run: Run) -> list[tuple[str, float, bool]]:
    """Per level: its label, sweep / direct generation tokens/s, and whether within TARGET."""
    out = []
    for level in run.levels:
        ratio = agreement(level, "gen_tokens_per_s", used_pairs(level)).ratio
        out.append((level.spec.label, ratio, abs(ratio - 1) <= TARGET))
    return out


def report(run: Run) -> str:
    """The run as Markdown: settings, the table, the verdict, where the figures come from."""
    plan = run.plan
    first = run.levels[0].settings
    assert first is not None
    from tui_llm.engine.load_params import cpu_has_amx

    rows = []
    for level in run.levels:
        pairs = used_pairs(level)
        offloaded = "/".join(
            str(n) for n in sorted({r.offloaded_layers for r in level.rows}, key=str)
        )
        for figure, name, decimals in (
            ("gen_tokens_per_s", "generation", 1),
            ("prompt_tokens_per_s", "prompt", 0),
        ):
            used = agreement(level, figure, pairs)
            rows.append(
                (
                    level.spec.label,
                    f"{level.rows[0].gpu_layers} ({offloaded})",
                    name,
                    *used.cells(decimals),
                    pairs_used(level, figure),
                )
            )
    table = markdown_table(
        (
            "level",
            "GPU layers (offloaded)",
            "tokens/s",
            "direct",
            "sweep",
            "sweep / direct: median of the pairs (range)",
            "median / median",
            "quiet pairs used (ratio over all pairs)",
        ),
        rows,
    )
    results = verdicts(run)
    met = all(ok for _, _, ok in results)
    verdict = (
        f"**Target {'met' if met else 'missed'}** (generation tokens/s of the sweep within "
        f"{TARGET:.0%} of llama-cpp-python driven directly, median of the per-pair ratios): "
        + "; ".join(
            f"`{label}` {ratio:.3f} ({'met' if ok else 'missed'})" for label, ratio, ok in results
        )
        + ". Prompt tokens/s is shown for comparison; it is not a target."
    )
    pids = ", ".join(str(p) for p in sorted(run.engine_pids))
    provenance = (
        f"Where the sweep's figures come from: `run_sweep` on the app's `EngineClient`, engine "
        f"process{'es' if len(run.engine_pids) > 1 else ''} {pids} (`tui_llm.engine.worker`, "
        f"llama-cpp-python {run.llama_cpp_python}); every row equals the `BenchEvent` that "
        f"process sent: {'yes' if run.all_rows_are_events else '**no**'}."
    )
    settings = (
        f"{MODEL_NAME}; n_ctx {first.n_ctx}, n_batch {first.n_batch}, n_ubatch "
        f"{first.n_ubatch}, {first.n_threads} threads, KV {first.kv_cache_type}, flash attention "
        f"{'on' if first.flash_attn else 'off'}, use_extra_bufts={not cpu_has_amx()} on both "
        f"sides; {plan.prompt_tokens} random prompt tokens then {plan.gen_tokens} one-token "
        f"decodes per measurement, the same ids on both sides (seed {SEED}); each side loads the "
        f"level, warms up ({WARMUP_PROMPT_TOKENS} + {WARMUP_GEN_TOKENS} tokens) and measures "
        f"once per round; {plan.rounds} rounds, sides alternating first; {run.rpc_note}. "
        f"Figures over the pairs during which other processes used under {CLEAN_SHARE:.0%} of "
        f"the CPU. Run took {run.seconds:.0f} s ({run.waited_s:.0f} s waiting for a quiet "
        f"machine); load average {run.load_before} before, {run.load_after} after."
    )
    return "\n\n".join((settings, table, verdict, provenance))


def collect(quick: bool, threads: int = 2) -> dict[str, str]:
    """Run the benchmark; its Markdown for ``docs/benchmarks.md`` (section ``sweep``)."""
    plan = replace(QUICK if quick else FULL, threads=threads)
    with tempfile.TemporaryDirectory(prefix="tui-llm-bench-sweep-") as folder:
        run = asyncio.run(measure(plan, Path(folder)))
    return {"sweep": report(run)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 rounds, shorter measurements")
    parser.add_argument(
        "--threads", type=int, default=2, help="llama.cpp threads, both sides (default 2)"
    )
    args = parser.parse_args(argv)
    from benchmarks.suite import machine_description, source_state

    command = " ".join([".venv/bin/python -m benchmarks.bench_sweep", *(argv or sys.argv[1:])])
    text = collect(args.quick, args.threads)["sweep"]
    print(f"command: {command}")
    print(f"machine: {machine_description()}")
    print(f"source: {source_state()}")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
