"""The reload soak: offload, context and model changes in a row on the RPC device, with a reply
after each, through the headless app; the UI's memory and file descriptors, the engine's and the
RPC server's memory (the "VRAM") after each step and after each unload, and what is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.reliability.harness import (
    RpcServer,
    build_app,
    engine_processes,
    open_fds,
    poll,
    rss_of,
    send,
)
from benchmarks.sections import markdown_table
from tui_llm.engine.protocol import LoadedEvent, SamplingParams
from tui_llm.messages import ApplyLoadSettings
from tui_llm.screens.main import MainScreen

KINDS = ("offload", "context", "model")
CONTEXTS = (256, 512, 1024)
UNLOAD_EVERY = 5
NEW_CHAT_EVERY = 10
MiB = 2**20


@dataclass(frozen=True)
class SoakStep:
    """One change, measured after its reply (bytes, counts)."""

    index: int
    kind: str
    config: str  # model, layers on the device, context
    ui_rss: int
    ui_fds: int
    engines: int
    engine_rss: int | None
    rpc_rss: int | None


@dataclass(frozen=True)
class Unloaded:
    """The engine and the RPC server with nothing loaded, after ``step`` (bytes)."""

    step: int
    engine_rss: int | None
    rpc_rss: int | None


@dataclass
class SoakResult:
    steps: list[SoakStep] = field(default_factory=list)
    unloaded: list[Unloaded] = field(default_factory=list)
    baseline_unloaded: Unloaded | None = None
    engines_after_quit: int = -1
    leftover_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def spread(self, values: list[int]) -> int:
        return max(values) - min(values) if values else 0

    @property
    def ui_rss_growth(self) -> int:
        """UI RSS at the end less its lowest after the first ten steps (warm-up)."""
        warm = [s.ui_rss for s in self.steps[10:]] or [s.ui_rss for s in self.steps]
        return self.steps[-1].ui_rss - min(warm)

    @property
    def ui_fd_growth(self) -> int:
        return self.steps[-1].ui_fds - self.steps[0].ui_fds

    def unloaded_spread(self, which: str) -> int:
        return self.spread([getattr(u, which) or 0 for u in self.unloaded])

    def unloaded_trend(self, which: str) -> int:
        """The mean unloaded RSS of the last quarter of unloads less that of the first quarter
        (bytes): how much a process's empty level rose over the soak."""
        values = [getattr(u, which) or 0 for u in self.unloaded]
        quarter = max(1, len(values) // 4)
        return (sum(values[-quarter:]) - sum(values[:quarter])) // quarter if values else 0

    def per_config_spread(self, which: str) -> int:
        """The largest difference between two steps with the same configuration (bytes)."""
        by_config: dict[str, list[int]] = {}
        for step in self.steps:
            value = getattr(step, which)
            if value is not None:
                by_config.setdefault(step.config, []).append(value)
        return max((self.spread(v) for v in by_config.values() if len(v) > 1), default=0)


async def run_soak(
    models: tuple[Path, Path], rpc: RpcServer, user_root: Path, changes: int = 100, seed: int = 13
) -> SoakResult:
    """``changes`` reloads in a row (offload, context, model in turn), each followed by a reply;
    every ``UNLOAD_EVERY`` steps the model is unloaded and the memory measured empty."""
    rng = random.Random(seed)
    result = SoakResult()
    app = build_app(
        models[0],
        SamplingParams(temperature=0.0, max_tokens=8, seed=1),
        rpc_servers=(rpc.address,),
        offload="all",
    )
    files_before = _files(user_root)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.main_screen
        await poll(pilot, lambda: screen.loaded is not None, 120, 0.02)
        await send(pilot, app, "Hello there")
        result.baseline_unloaded = await _unload(app, rpc, -1)
        current = models[0]
        for index in range(changes):
            kind = KINDS[index % len(KINDS)]
            if index % NEW_CHAT_EVERY == 0:
                await pilot.press("ctrl+n")
            loaded = screen.loaded
            try:
                if loaded is None:
                    screen.load_model(current)
                elif kind == "model":
                    current = models[1] if current == models[0] else models[0]
                    screen.load_model(current)
                else:
                    layers = loaded.offloaded_layers
                    n_ctx = loaded.settings.n_ctx
                    if kind == "offload":
                        layers = rng.choice(
                            [n for n in range(loaded.total_layers + 1) if n != layers]
                        )
                    else:
                        n_ctx = rng.choice([c for c in CONTEXTS if c != n_ctx])
                    screen.post_message(
                        ApplyLoadSettings(
                            layers,
                            n_ctx,
                            loaded.settings.flash_attn,
                            loaded.settings.kv_cache_type,
                        )
                    )
                await poll(pilot, reloaded_from(screen, loaded), 120, 0.02)
                await send(pilot, app, f"Step {index}: say something short.")
            except Exception as exc:  # a failed step is recorded, the soak goes on
                result.errors.append(f"step {index} ({kind}): {type(exc).__name__}: {exc}")
                continue
            gc.collect()
            now = screen.loaded
            assert now is not None
            result.steps.append(
                SoakStep(
                    index,
                    kind,
                    f"{Path(now.settings.model_path).stem} {now.offloaded_layers}L "
                    f"ctx {now.settings.n_ctx}",
                    rss_of(os.getpid()) or 0,
                    open_fds(),
                    len(engine_processes()),
                    rss_of(app.engine.pid),
                    rpc.rss_bytes(),
                )
            )
            if (index + 1) % UNLOAD_EVERY == 0:
                result.unloaded.append(await _unload(app, rpc, index))
    result.engines_after_quit = await _engines_after_quit()
    result.leftover_files = sorted(
        str(p.relative_to(user_root))
        for p in _files(user_root) - files_before
        if not p.name.startswith("engine-") and not p.name.startswith("conversations.sqlite3")
    )
    return result


def reloaded_from(screen: MainScreen, previous: LoadedEvent | None) -> Callable[[], bool]:
    """A predicate: a model other than ``previous`` is loaded and no load runs."""

    def reloaded() -> bool:
        return (
            screen.loaded is not None and screen.loaded is not previous and not screen.model_loading
        )

    return reloaded


async def _unload(app: object, rpc: RpcServer, step: int) -> Unloaded:
    """Unload through the engine client (as a failed load leaves it), settle, measure."""
    from tui_llm.app import TuiLlmApp

    assert isinstance(app, TuiLlmApp)
    await app.engine.unload()
    await asyncio.sleep(0.3)
    return Unloaded(step, rss_of(app.engine.pid), rpc.rss_bytes())


async def _engines_after_quit(wait_s: float = 3.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while engine_processes() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return len(engine_processes())


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """One character per value, from ▁ (the lowest) to █ (the highest)."""
    low, high = min(values), max(values)
    span = max(high - low, 1)
    return "".join(_BARS[min(7, (v - low) * 8 // span)] for v in values)


def report(result: SoakResult) -> str:
    """The soak's section of docs/reliability.md: bounds, a text chart per curve, a table."""
    steps = result.steps
    if not steps:
        return "No step completed: " + "; ".join(result.errors[:3])
    ui = [s.ui_rss for s in steps]
    fds = [s.ui_fds for s in steps]
    engine = [s.engine_rss or 0 for s in steps]
    rpc = [s.rpc_rss or 0 for s in steps]
    un_engine = [u.engine_rss or 0 for u in result.unloaded]
    un_rpc = [u.rpc_rss or 0 for u in result.unloaded]

    def mib(value: int) -> str:
        return f"{value / MiB:.1f}"

    def line(name: str, values: list[int], unit: str = "MiB") -> str:
        shown = (lambda v: mib(v)) if unit == "MiB" else str
        return f"{name:<28} {shown(min(values)):>7} {sparkline(values)} {shown(max(values))} {unit}"

    chart = "\n".join(
        [
            f"{'after each step':<28} {'min':>7} curve (one mark per step) max",
            line("UI RSS", ui),
            line("UI open fds", fds, "fds"),
            line("engine RSS (loaded)", engine),
            line("RPC server RSS (loaded)", rpc),
            "",
            f"{'after each unload':<28} {'min':>7} curve (one mark per unload) max",
            line("engine RSS (unloaded)", un_engine),
            line("RPC server RSS (unloaded)", un_rpc),
        ]
    )
    base = result.baseline_unloaded
    summary = markdown_table(
        ("measure", "figure"),
        [
            ("changes completed", f"{len(steps)} ({', '.join(KINDS)} in turn), a reply after each"),
            (
                "UI RSS",
                f"{mib(min(ui))}-{mib(max(ui))} MiB; end less post-warm-up low "
                f"{result.ui_rss_growth / MiB:+.1f} MiB",
            ),
            (
                "UI open file descriptors",
                f"{min(fds)}-{max(fds)} (end less start {result.ui_fd_growth:+d})",
            ),
            (
                "engine processes during the run",
                f"{min(s.engines for s in steps)}-{max(s.engines for s in steps)}",
            ),
            ("engine processes after quitting", str(result.engines_after_quit)),
            (
                "engine RSS unloaded",
                f"{mib(min(un_engine))}-{mib(max(un_engine))} MiB "
                f"(before the soak {mib(base.engine_rss or 0) if base else '?'} MiB)",
            ),
            (
                'RPC server RSS unloaded (the "VRAM")',
                f"{mib(min(un_rpc))}-{mib(max(un_rpc))} MiB "
                f"(before the soak {mib(base.rpc_rss or 0) if base else '?'} MiB)",
            ),
            (
                "unloaded level, last quarter of the unloads less the first quarter",
                f"engine {result.unloaded_trend('engine_rss') / MiB:+.1f} MiB, RPC server "
                f"{result.unloaded_trend('rpc_rss') / MiB:+.1f} MiB",
            ),
            (
                "largest spread between steps with the same model, layers and context",
                f"engine {mib(result.per_config_spread('engine_rss'))} MiB, RPC server "
                f"{mib(result.per_config_spread('rpc_rss'))} MiB",
            ),
            (
                "files left in the user folders (engine logs and the database aside)",
                ", ".join(result.leftover_files) or "none",
            ),
            ("failed steps", "; ".join(result.errors) or "none"),
        ],
    )
    rows = [
        (
            str(s.index),
            s.kind,
            s.config,
            mib(s.ui_rss),
            str(s.ui_fds),
            mib(s.engine_rss or 0),
            mib(s.rpc_rss or 0),
        )
        for s in steps
        if s.index % 10 == 9 or s.index == 0
    ]
    table = markdown_table(
        ("step", "change", "loaded", "UI RSS MiB", "UI fds", "engine RSS MiB", "RPC RSS MiB"),
        rows,
    )
    return f"{summary}\n\n```text\n{chart}\n```\n\nEvery tenth step:\n\n{table}"
