"""``python -m benchmarks``: run the benchmarks and rewrite their tables in the docs.

Each benchmark runs in a fresh interpreter (``python -m benchmarks --one NAME``), so none sees
another's imports, threads, environment variables or memory. Its module's ``collect(quick)``
returns Markdown by section name; each section lands between its markers on its page
(``benchmarks.sections``) with a line saying when, on what machine, at which commit and by which
command it was measured. Pages are written after each benchmark, so a later failure keeps the
earlier figures. Hand-written text outside the markers is kept.

    .venv/bin/python -m benchmarks                      # every benchmark, full runs (~10 min)
    .venv/bin/python -m benchmarks --only sweep,history
    .venv/bin/python -m benchmarks --quick              # smoke run: prints, writes nothing
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.sections import replace_sections

REPO = Path(__file__).resolve().parents[1]
COMMAND = ".venv/bin/python -m benchmarks"


@dataclass(frozen=True)
class Benchmark:
    """One script in ``benchmarks/``: the sections its ``collect`` returns, and their page."""

    name: str  # for --only
    module: str  # its ``collect(quick)``; "module:function" names another function
    page: str  # relative to the repository root
    sections: tuple[str, ...]
    about: str
    duration: str  # full run / quick run, on the 2-core machine of docs/benchmarks.md


BENCHMARKS = (
    Benchmark(
        "engine",
        "benchmarks.bench_engine",
        "docs/benchmarks.md",
        (
            "engine.generation",
            "engine.reload",
            "engine.fixed",
            "engine.state_copy",
            "engine.ttft",
        ),
        "engine child process vs llama-cpp-python: tokens/s, reload, TTFT after a reload",
        "~4 min / ~1 min",
    ),
    Benchmark(
        "fit",
        "benchmarks.bench_fit",
        "docs/fit-accuracy.md",
        ("fit.cpu", "fit.rpc", "fit.moe"),
        "memory estimate vs the buffers llama.cpp allocates (CPU, every RPC offload level, "
        "every MoE pair)",
        "~10 s (no quick mode)",
    ),
    Benchmark(
        "app",
        "benchmarks.bench_app",
        "docs/benchmarks-app.md",
        ("app",),
        "the whole TUI: tokens/s, event-loop lateness during loads and replies, launch",
        "~2.5 min / ~40 s",
    ),
    Benchmark(
        "resume",
        "benchmarks.bench_resume",
        "docs/benchmarks-app.md",
        ("app.resume",),
        "a saved 1,000-message conversation opened in the app: time to show its end, scrolling",
        "~1.5 min / ~30 s",
    ),
    Benchmark(
        "history",
        "benchmarks.bench_history",
        "docs/benchmarks.md",
        ("history",),
        "prompt tokens evaluated per turn of a conversation (KV cache reuse), SmolLM2",
        "~20 s / ~10 s",
    ),
    Benchmark(
        "history_search",
        "benchmarks.bench_history_search",
        "docs/benchmarks.md",
        ("history_search",),
        "full-text search of 10,000 saved conversations of 100 messages: latency per query",
        "~8 min / ~10 s",
    ),
    Benchmark(
        "hub_download",
        "benchmarks.bench_hub_download",
        "docs/benchmarks.md",
        ("hub_download",),
        "our Hub transfer loop vs hf_hub_download in a child: progress, cancel, resume",
        "~2.5 min / ~50 s",
    ),
    Benchmark(
        "sweep",
        "benchmarks.bench_sweep",
        "docs/benchmarks.md",
        ("sweep",),
        "the offload sweep's tokens/s vs llama-cpp-python driven directly, same settings",
        "~3 min / ~30 s",
    ),
    Benchmark(
        "reliability-faults",
        "benchmarks.bench_reliability:collect_faults",
        "docs/reliability.md",
        ("reliability.engine_faults",),
        "engine faults: SIGKILL, SIGSEGV, SIGABRT, SIGSTOP of the engine (and the RPC server) "
        "at load, prompt and reply, on the CPU and the RPC device",
        "~8 min / ~2 min",
    ),
    Benchmark(
        "reliability-soak",
        "benchmarks.bench_reliability:collect_soak",
        "docs/reliability.md",
        ("reliability.soak",),
        "the reload soak: 100 offload, context and model changes on the RPC device; UI memory "
        "and fds, engine and RPC server memory",
        "~4 min / ~30 s",
    ),
    Benchmark(
        "reliability-data",
        "benchmarks.bench_reliability:collect_data",
        "docs/reliability.md",
        ("reliability.data_safety",),
        "data safety: 50 SIGKILLs of tui-llm in tmux against one SQLite file, 50 of a "
        "settings write",
        "~12 min / ~1.5 min",
    ),
    Benchmark(
        "reliability-abuse",
        "benchmarks.bench_reliability:collect_abuse",
        "docs/reliability.md",
        ("reliability.input_abuse",),
        "input abuse: 1 MiB paste, 10,000 lines, a prompt over the context, 3,000 messages, "
        "key repeat, resizing; event-loop lateness",
        "~10 min / ~2 min",
    ),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


# ---- where and when figures were measured ------------------------------------------------------


def machine_description() -> str:
    """CPU, cores, NVIDIA GPUs, OS, Python and llama-cpp-python, on one line."""
    from tui_llm.sweep.machine import cpu_name, nvidia_gpus

    gpus, driver = nvidia_gpus()
    gpu = ", ".join(gpus) + (f" (driver {driver})" if driver else "") if gpus else "no NVIDIA GPU"
    try:
        from importlib.metadata import version

        llama = version("llama_cpp_python")
    except Exception:
        llama = "not installed"
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {gpu}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, llama-cpp-python {llama}"
    )


def source_state(repo: Path = REPO) -> str:
    """The commit measured and the uncommitted changes that could bear on the figures (files
    outside ``docs/``, which a run rewrites itself), e.g. ``abc1234, clean``."""
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, check=True
            ).stdout

        commit = git("rev-parse", "--short", "HEAD").strip()
        changed = [
            line[3:]
            for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
            if not line[3:].startswith("docs/")
        ]
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not changed:
        return f"`{commit}`, clean"
    shown = ", ".join(f"`{path}`" for path in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return f"`{commit}` with uncommitted changes ({shown}{more})"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


@dataclass(frozen=True)
class Provenance:
    """What a section's figures were measured on and how; one line on the page."""

    command: str
    started: datetime.datetime
    seconds: float
    machine: str
    source: str
    load_before: str

    def line(self) -> str:
        return (
            f"_Measured {self.started:%Y-%m-%d %H:%M} UTC by `{self.command}` "
            f"({self.seconds:.0f} s; load average {self.load_before} at the start) on "
            f"{self.machine}; commit {self.source}._"
        )


# ---- running ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One benchmark's run: its sections, or why there are none."""

    benchmark: Benchmark
    sections: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def command_for(benchmark: Benchmark, quick: bool) -> str:
    return f"{COMMAND} --only {benchmark.name}" + (" --quick" if quick else "")


def run_one(benchmark: Benchmark, quick: bool) -> Outcome:
    """Run ``benchmark`` in a fresh interpreter; its progress goes to this terminal."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tui-llm-suite-") as folder:
        out = Path(folder) / "sections.json"
        command = [sys.executable, "-m", "benchmarks", "--one", benchmark.name, "--out", str(out)]
        code = subprocess.run([*command, *(["--quick"] if quick else [])], cwd=REPO).returncode
        seconds = time.perf_counter() - started
        if code != 0:
            return Outcome(benchmark, error=f"exited with status {code}", seconds=seconds)
        sections = json.loads(out.read_text(encoding="utf-8"))
    return Outcome(benchmark, sections, seconds=seconds)


def collect_in_this_process(name: str, quick: bool, out: Path) -> int:
    """The child's side of ``run_one``: call the module's ``collect`` and write its sections."""
    module_name, _, function = BY_NAME[name].module.partition(":")
    module = importlib.import_module(module_name)
    sections: dict[str, str] = getattr(module, function or "collect")(quick)
    out.write_text(json.dumps(sections), encoding="utf-8")
    return 0


def write_sections(page: Path, sections: dict[str, str], dry_run: bool) -> list[str]:
    """Put ``sections`` between their markers on ``page``; the problems (missing markers)."""
    try:
        text = page.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"{page}: {exc.strerror or exc}"]
    rewrite = replace_sections(text, sections)
    if rewrite.replaced and rewrite.text != text and not dry_run:
        temporary = page.with_name(page.name + ".tmp")
        temporary.write_text(rewrite.text, encoding="utf-8")
        os.replace(temporary, page)
    return [f"{page.name}: {problem}" for problem in rewrite.problems]


def with_provenance(sections: dict[str, str], provenance: Provenance) -> dict[str, str]:
    return {name: f"{provenance.line()}\n\n{text.strip()}" for name, text in sections.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = ", ".join(BY_NAME)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmarks and rewrite the generated sections of the docs.",
        epilog="benchmarks: "
        + "; ".join(f"{b.name} ({b.duration}): {b.about}" for b in BENCHMARKS),
    )
    parser.add_argument("--only", metavar="NAME,...", help=f"some of: {names}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the benchmarks' quick modes (a smoke run); the docs are left alone unless --write",
    )
    written = parser.add_mutually_exclusive_group()
    written.add_argument("--write", action="store_true", help="write the docs after --quick too")
    written.add_argument("--dry-run", action="store_true", help="print the sections, write no page")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: the child of run_one
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BY_NAME)
    # A group name stands for its members: "reliability" for reliability-faults, -soak, ...
    chosen = [
        member
        for n in chosen
        for member in (
            [n] if n in BY_NAME else [b for b in BY_NAME if b.startswith(f"{n}-")] or [n]
        )
    ]
    unknown = [n for n in chosen if n not in BY_NAME]
    if unknown or not chosen:
        parser.error(f"--only: unknown benchmark {', '.join(unknown) or '(none)'}; known: {names}")
    args.chosen = [BY_NAME[n] for n in chosen]
    return args


def main(argv: Sequence[str] | None = None, root: Path = REPO) -> int:
    """Run the chosen benchmarks and rewrite their sections in the pages under ``root``; 0 when
    every benchmark ran and every section found its markers."""
    args = parse_args(argv)
    if args.one:
        return collect_in_this_process(args.one, args.quick, args.out)
    dry_run = args.dry_run or (args.quick and not args.write)
    source = source_state(root)
    machine = machine_description()
    failures: list[str] = []
    for benchmark in args.chosen:
        print(f"== {benchmark.name}: {benchmark.about}", file=sys.stderr, flush=True)
        started = datetime.datetime.now(datetime.timezone.utc)
        load_before = load_average()
        outcome = run_one(benchmark, args.quick)
        if outcome.error is not None:
            failures.append(f"{benchmark.name}: {outcome.error}")
            continue
        provenance = Provenance(
            command_for(benchmark, args.quick),
            started,
            outcome.seconds,
            machine,
            source,
            load_before,
        )
        sections = with_provenance(outcome.sections, provenance)
        for name, text in sections.items():
            print(f"\n<!-- bench:{name} -->\n{text}\n")
        unexpected = sorted(set(sections) - set(benchmark.sections))
        failures.extend(f"{benchmark.name}: undeclared section {name}" for name in unexpected)
        failures.extend(write_sections(root / benchmark.page, sections, dry_run))
    if dry_run:
        why = "--dry-run" if args.dry_run else "--quick is a smoke run; add --write to keep it"
        print(f"docs left alone ({why})", file=sys.stderr)
    for failure in failures:
        print(f"python -m benchmarks: {failure}", file=sys.stderr)
    return 1 if failures else 0
