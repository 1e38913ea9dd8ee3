"""Reliability figures of docs/reliability.md (issue 13): engine faults, the reload soak, data
safety, input abuse. Each part drives the real app and real processes; models, settings, logs
and databases go to a temporary folder, never to the user's directories.

    .venv/bin/python -m benchmarks --only reliability          # every part, full runs (~35 min)
    .venv/bin/python -m benchmarks --only reliability-soak     # one part, its section written
    .venv/bin/python -m benchmarks.bench_reliability --part soak [--quick]   # one part, printed
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.reliability import data_safety, engine_faults, input_abuse, soak
from benchmarks.reliability.harness import RpcServer, user_dirs
from tui_llm.catalog.demo import smollm2_path
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.table_models import write_demo_model

SECTIONS = (
    "reliability.engine_faults",
    "reliability.soak",
    "reliability.data_safety",
    "reliability.input_abuse",
)
KILL_RUNS, SETTINGS_RUNS, SOAK_CHANGES = 50, 50, 100


def chat_model(folder: Path) -> Path:
    """SmolLM2 where installed (a real model with real prompt processing), else the demo."""
    return smollm2_path() or write_demo_model(folder / "demo.gguf")


def measure_engine_faults(folder: Path, quick: bool) -> str:
    model = chat_model(folder)
    cases = engine_faults.all_cases()
    if quick:
        cases = [c for c in cases if c.sig.name in ("SIGKILL", "SIGSTOP") and c.phase != "load"]

    async def run() -> list[engine_faults.FaultOutcome]:
        outcomes = []
        with RpcServer(folder / "rpc-faults.log") as rpc:
            for case in cases:
                outcome = await engine_faults.run_case(case, model, rpc)
                print(outcome, flush=True)
                outcomes.append(outcome)
        return outcomes

    return engine_faults.table(asyncio.run(run()))


def measure_soak(folder: Path, quick: bool) -> str:
    small = write_llama_gguf(folder / "rand-8l.gguf", n_layer=8, n_embd=128, seed=8)
    models = (smollm2_path() or write_demo_model(folder / "demo.gguf"), small)

    async def run() -> soak.SoakResult:
        with RpcServer(folder / "rpc-soak.log") as rpc:
            return await soak.run_soak(
                models, rpc, folder / "user", changes=10 if quick else SOAK_CHANGES
            )

    return soak.report(asyncio.run(run()))


def measure_data_safety(folder: Path, quick: bool) -> str:
    rng = random.Random(13)
    root = folder / "kill"
    (root / "config").mkdir(parents=True)
    (root / "config" / "settings.toml").write_text("[sampling]\nmax_tokens = 2000\n")
    model = chat_model(folder)
    runs = []
    for run in range(5 if quick else KILL_RUNS):
        result = data_safety.kill_run(run, model, root, rng)
        print(result, flush=True)
        runs.append(result)
    settings_folder = folder / "settings"
    settings_folder.mkdir()
    settings_runs = [
        data_safety.settings_kill_run(run, settings_folder, rng)
        for run in range(5 if quick else SETTINGS_RUNS)
    ]
    left = data_safety.temps_after_next_save(settings_folder)
    return (
        "The UI SIGKILLed:\n\n"
        + data_safety.kill_table(runs)
        + "\n\nThe settings file SIGKILLed while written:\n\n"
        + data_safety.settings_table(settings_runs, left)
    )


def measure_input_abuse(folder: Path, quick: bool) -> str:
    model = chat_model(folder)
    cases = asyncio.run(input_abuse.run_abuse(model, folder / "abuse.sqlite3", quick))
    return input_abuse.table(cases)


PARTS: dict[str, tuple[str, Callable[[Path, bool], str]]] = {
    "faults": ("reliability.engine_faults", measure_engine_faults),
    "soak": ("reliability.soak", measure_soak),
    "data": ("reliability.data_safety", measure_data_safety),
    "abuse": ("reliability.input_abuse", measure_input_abuse),
}


def collect(quick: bool, parts: tuple[str, ...] = tuple(PARTS)) -> dict[str, str]:
    """Run the parts; their Markdown by section name (docs/reliability.md)."""
    sections = {}
    for part in parts:
        name, measure = PARTS[part]
        with (
            tempfile.TemporaryDirectory(prefix=f"tui-llm-{part}-") as folder,
            user_dirs(Path(folder) / "user"),
        ):
            sections[name] = measure(Path(folder), quick)
    return sections


def collect_faults(quick: bool) -> dict[str, str]:
    return collect(quick, ("faults",))


def collect_soak(quick: bool) -> dict[str, str]:
    return collect(quick, ("soak",))


def collect_data(quick: bool) -> dict[str, str]:
    return collect(quick, ("data",))


def collect_abuse(quick: bool) -> dict[str, str]:
    return collect(quick, ("abuse",))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer cases and runs")
    parser.add_argument("--part", choices=list(PARTS), action="append", help="one part only")
    args = parser.parse_args(argv)
    for name, text in collect(args.quick, tuple(args.part or PARTS)).items():
        print(f"\n<!-- bench:{name} -->\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
