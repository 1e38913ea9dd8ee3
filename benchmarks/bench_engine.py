"""Engine benchmarks: what the engine child process costs over llama-cpp-python used directly.

Prints figures and ratios measured in one run; it is not a test and asserts nothing about time.
Run from the repository root (it writes its own models to a temporary folder):

    .venv/bin/python -m benchmarks.bench_engine [--quick] [--threads N]

Three measurements, raw and engine interleaved so that drift on a shared machine hits both:

1. generation tokens/s through ``EngineClient`` over ``Llama.generate`` in this process;
2. reload request-to-ready time of ``EngineClient.load`` over ``llm.close(); Llama(...)``;
3. time to first token after a reload under a long conversation, KV carried vs re-processed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime
import itertools
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.sections import markdown_table
from tui_llm.catalog.generate import read_demo_corpus, write_llama_gguf
from tui_llm.catalog.table_models import write_demo_model
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import ChatMessage, DoneEvent, LoadSettings, SamplingParams

REPO = Path(__file__).resolve().parents[1]
LARGE_NAME = "random 16 layers x 512 wide, f16"
DEMO_NAME = "demo (8 layers x 2560 wide, f16)"
RPC_OFFLOAD = 4
APP_BATCH_S = 0.04  # the client's default: what the app streams with
RARE_BATCH_S = 5.0  # longer than any reply here: the control run sends one batch at the end
BLOCKING_STALL_S = 3600.0
"""The engine client's stall deadline in the benchmarks that drive llama-cpp-python in their own
event loop's thread (and wait for an idle CPU there): the loop then reads no heartbeat for as
long as that takes, seconds on a loaded machine, which the app's 5 s deadline would take for a
silent engine. The deadline is a timer on the client's reads; it bears on no figure."""


@dataclass(frozen=True)
class Plan:
    """How much of each measurement one run does."""

    generation_reps: int
    max_tokens: int
    reload_reps: int
    ttft_reps: int
    conversation_tokens: int
    threads: int = 2


FULL = Plan(generation_reps=9, max_tokens=512, reload_reps=7, ttft_reps=3, conversation_tokens=2000)
QUICK = Plan(generation_reps=2, max_tokens=128, reload_reps=2, ttft_reps=1, conversation_tokens=600)


@dataclass(frozen=True)
class Generation:
    """One reply, timed the way the engine's ``ReplyStats`` times it."""

    n_tokens: int
    tokens_per_s: float
    reply_s: float
    text: str


@dataclass
class Report:
    """Result lines kept for the summary at the end, one markdown table per section."""

    sections: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    def add(self, section: str, *cells: str) -> None:
        self.sections.setdefault(section, []).append(cells)


def log(text: str) -> None:
    """Progress goes to stderr so stdout holds only the summary."""
    print(text, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---- other people's work on a shared machine ----------------------------------------------------

CLEAN_SHARE = 0.03  # a run during which other processes took more of the machine is left out
IDLE_SHARE = 0.03  # before each timed run, wait (up to IDLE_WAIT_S) until others take less
IDLE_WAIT_S = 120.0


@dataclass(frozen=True)
class CpuSample:
    total: int
    busy: int
    ours: int


@dataclass
class CpuWatch:
    """How much of the machine's CPU went to processes other than this benchmark's own.

    On a 2-core machine one busy neighbour halves llama.cpp's speed (its threads spin-wait for
    each other), so each timed run records the others' share, from ``/proc`` jiffies.
    """

    pids: set[int] = field(default_factory=lambda: {os.getpid()})
    waited_s: float = 0.0

    def sample(self) -> CpuSample:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
        except OSError:
            return CpuSample(0, 0, 0)
        # user nice system idle iowait irq softirq steal: steal is CPU the host kept from us.
        busy = sum(fields[:3]) + sum(fields[5:8])
        ours = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                    rest = stat.read().rsplit(")", 1)[1].split()
                ours += int(rest[11]) + int(rest[12])
            except (OSError, IndexError, ValueError):
                continue
        return CpuSample(sum(fields[:8]), busy, ours)

    @staticmethod
    def others_share(before: CpuSample, after: CpuSample) -> float:
        """Share of all cores' time between two samples used by other processes."""
        total = after.total - before.total
        if total <= 0:
            return 0.0
        return max(0.0, (after.busy - before.busy) - (after.ours - before.ours)) / total

    def wait_for_idle(self, limit_s: float = IDLE_WAIT_S) -> None:
        """Wait until other processes leave the machine alone, or give up after ``limit_s``."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            before = self.sample()
            time.sleep(0.5)
            if self.others_share(before, self.sample()) < IDLE_SHARE:
                break
        self.waited_s += time.monotonic() - started


# ---- raw llama-cpp-python, in this process ---------------------------------------------------


@contextmanager
def engine_model_params() -> Iterator[bool]:
    """Make in-process ``Llama()`` build its model params exactly as the engine child does.

    The engine turns llama.cpp's extra (repacked) weight buffers off on AMX CPUs; the baseline
    must too, or it would time a different matmul path. Yields the ``use_extra_bufts`` value.
    """
    import llama_cpp.llama_cpp as llama_lib

    from tui_llm.engine.load_params import cpu_has_amx

    repack = not cpu_has_amx()
    original = llama_lib.llama_model_default_params

    def params() -> Any:
        model_params = original()
        model_params.use_extra_bufts = repack
        return model_params

    llama_lib.llama_model_default_params = params
    try:
        yield repack
    finally:
        llama_lib.llama_model_default_params = original


def raw_load(settings: LoadSettings) -> Any:
    """``Llama(...)`` with the arguments the engine child passes for these settings."""
    from llama_cpp import Llama

    from tui_llm.engine import native
    from tui_llm.engine.load_params import llama_kwargs

    for endpoint in settings.rpc_servers:
        native.add_rpc_server(endpoint)
    return Llama(settings.model_path, verbose=False, **llama_kwargs(settings))


def prompt_tokens(llm: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """The prompt the engine would build: the GGUF chat template, then the tokenizer."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="ignore")
    bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="ignore")
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"], eos_token=eos, bos_token=bos
    )
    chat: Any = [{"role": m.role, "content": m.content} for m in messages]
    prompt = formatter(messages=chat).prompt
    add_bos = not (bos and prompt.startswith(bos))
    tokens: list[int] = llm.tokenize(prompt.encode(), add_bos=add_bos, special=True)
    return tokens


def raw_generate(llm: Any, messages: Sequence[ChatMessage], sampling: SamplingParams) -> Generation:
    """One reply from ``Llama.generate``, with the engine's stop rules and its clock.

    The timed loop only records times; the text is built afterwards, from the same token pieces
    the engine decodes, so the two replies can be compared.
    """
    import llama_cpp

    started = time.perf_counter()
    tokens = prompt_tokens(llm, messages)
    vocab = llm._model.vocab
    generated: list[int] = []
    first_at: float | None = None
    last_at = started
    for token in llm.generate(
        tokens,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        temp=sampling.temperature,
        repeat_penalty=sampling.repeat_penalty,
        reset=True,
    ):
        now = time.perf_counter()
        if first_at is None:
            first_at = now
        last_at = now
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        generated.append(token)
        if len(generated) >= sampling.max_tokens:
            break
    ended = time.perf_counter()
    span = last_at - (first_at or last_at)
    rate = (len(generated) - 1) / span if len(generated) > 1 and span > 0 else 0.0
    piece = ctypes.create_string_buffer(256)
    raw_bytes = b""
    for token in generated:
        size = llama_cpp.llama_token_to_piece(vocab, token, piece, 256, 0, False)
        raw_bytes += piece.raw[: max(size, 0)]
    text = raw_bytes.decode("utf-8", errors="replace")
    return Generation(len(generated), rate, ended - started, text)


# ---- the engine, through its asyncio client --------------------------------------------------


async def engine_generate(
    client: EngineClient,
    messages: Sequence[ChatMessage],
    sampling: SamplingParams,
    batch_interval_s: float = APP_BATCH_S,
) -> tuple[Generation, DoneEvent]:
    """One reply through the child process; ``reply_s`` is request to ``DoneEvent`` here."""
    started = time.perf_counter()
    done: DoneEvent | None = None
    async for event in client.generate(list(messages), sampling, batch_interval_s):
        if isinstance(event, DoneEvent):
            done = event
    ended = time.perf_counter()
    assert done is not None
    stats = done.stats
    return (
        Generation(
            stats.generated_tokens, stats.generation_tokens_per_s, ended - started, done.text
        ),
        done,
    )


# ---- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rpc_server(folder: Path, name: str, threads: int, watch: CpuWatch) -> Iterator[str]:
    """A llama.cpp RPC server on 127.0.0.1 backed by this CPU, the benchmark's "GPU"."""
    port = free_port()
    log_path = folder / f"rpc-server-{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tui_llm",
                "rpc-server",
                "--port",
                str(port),
                "--threads",
                str(threads),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    watch.pids.add(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rpc-server exited: {log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("rpc-server did not start listening") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        watch.pids.discard(proc.pid)


def machine_line() -> str:
    import llama_cpp

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            cpu = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return (
        f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, no GPU, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')}"
    )


def source_line() -> str:
    """The commit measured, and whether the package had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "tui_llm"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes in tui_llm/" if changed else "")


def fmt_ratio(value: float, target: str) -> str:
    return f"{value:.3f} (target {target})"


# ---- 1. generation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """One interleaved round: raw, the engine as the app runs it, the engine with rare batches."""

    raw: Generation
    engine: Generation
    engine_rare_batches: Generation


async def bench_generation(
    client: EngineClient,
    settings: LoadSettings,
    label: str,
    plan: Plan,
    watch: CpuWatch,
    report: Report,
) -> None:
    """Raw, engine, and engine with one token batch every RARE_BATCH_S, interleaved.

    The third run is a control: it has the child process and the pipe but almost no batches,
    so it separates the cost of batching every 40 ms from the cost of being another process.
    """
    messages = [ChatMessage("user", "Tell me about the terminal and the quiet work it holds.")]
    sampling = SamplingParams(temperature=0.0, max_tokens=plan.max_tokens)
    llm = raw_load(settings)
    await client.load(settings, keep_kv=False)
    # One untimed reply each: the prompt lands in the KV cache, pages are touched.
    raw_generate(llm, messages, sampling)
    await engine_generate(client, messages, sampling)
    rounds: list[Round] = []
    quiet: list[Round] = []
    for rep in range(plan.generation_reps):
        watch.wait_for_idle()
        start = watch.sample()
        this = Round(
            raw_generate(llm, messages, sampling),
            (await engine_generate(client, messages, sampling))[0],
            (await engine_generate(client, messages, sampling, RARE_BATCH_S))[0],
        )
        busy = watch.others_share(start, watch.sample())
        rounds.append(this)
        if busy < CLEAN_SHARE:
            quiet.append(this)
        log(
            f"  {label} rep {rep + 1}: raw {this.raw.tokens_per_s:.1f} tok/s, "
            f"engine {this.engine.tokens_per_s:.1f} tok/s, "
            f"engine with rare batches {this.engine_rare_batches.tokens_per_s:.1f} tok/s, "
            f"others took {busy:.0%} of the CPU"
        )
    llm.close()
    used = quiet or rounds
    raw_rate = median([r.raw.tokens_per_s for r in used])
    engine_rate = median([r.engine.tokens_per_s for r in used])
    rare_rate = median([r.engine_rare_batches.tokens_per_s for r in used])
    pair_ratios = [r.engine.tokens_per_s / r.raw.tokens_per_s for r in used]
    all_ratio = median([r.engine.tokens_per_s for r in rounds]) / median(
        [r.raw.tokens_per_s for r in rounds]
    )
    raw_reply = median([r.raw.reply_s for r in used])
    engine_reply = median([r.engine.reply_s for r in used])
    runs = [run for r in rounds for run in (r.raw, r.engine, r.engine_rare_batches)]
    counts = {run.n_tokens for run in runs}
    same_text = all(run.text == runs[0].text for run in runs)
    report.add(
        "generation",
        label,
        f"{raw_rate:.1f}",
        f"{engine_rate:.1f}",
        fmt_ratio(engine_rate / raw_rate, ">= 0.97"),
        f"{median(pair_ratios):.3f} ({min(pair_ratios):.3f}-{max(pair_ratios):.3f})",
        f"{rare_rate:.1f} ({rare_rate / raw_rate:.3f})",
        f"{len(quiet)} of {len(rounds)} (all rounds: {all_ratio:.3f})"
        if quiet
        else f"none quiet: all {len(rounds)} used",
        f"{raw_reply * 1000:.0f} / {engine_reply * 1000:.0f}",
        f"{'/'.join(str(c) for c in sorted(counts))}{'' if same_text else ' (texts differ!)'}",
    )


# ---- 2. reload ----------------------------------------------------------------------------------


async def bench_reload(
    client: EngineClient,
    label: str,
    first: LoadSettings,
    second: LoadSettings,
    raw_rpc_servers: tuple[str, ...],
    directions: tuple[str, str],
    plan: Plan,
    watch: CpuWatch,
    report: Report,
) -> None:
    """Flip between two settings ``reload_reps`` times each way, raw then engine each time.

    The raw side loads the same settings with its own RPC servers (``raw_rpc_servers``).
    """

    def raw(settings: LoadSettings) -> LoadSettings:
        return replace(settings, rpc_servers=raw_rpc_servers) if settings.rpc_servers else settings

    llm = raw_load(raw(first))
    loaded = await client.load(first, keep_kv=False)
    raw_total: dict[str, list[float]] = {d: [] for d in directions}
    raw_close: dict[str, list[float]] = {d: [] for d in directions}
    engine_total: dict[str, list[float]] = {d: [] for d in directions}
    engine_llama: dict[str, list[float]] = {d: [] for d in directions}
    offloaded: dict[str, set[int]] = {d: set() for d in directions}
    for _ in range(plan.reload_reps):
        watch.wait_for_idle()
        for direction, target in zip(directions, (second, first), strict=True):
            started = time.perf_counter()
            llm.close()
            closed = time.perf_counter()
            llm = raw_load(raw(target))
            ready = time.perf_counter()
            raw_total[direction].append(ready - started)
            raw_close[direction].append(closed - started)

            started = time.perf_counter()
            loaded = await client.load(target)
            engine_total[direction].append(time.perf_counter() - started)
            engine_llama[direction].append(loaded.load_seconds)
            offloaded[direction].add(loaded.offloaded_layers)
    llm.close()
    for direction in directions:
        raw_ms = median(raw_total[direction]) * 1000
        engine_ms = median(engine_total[direction]) * 1000
        log(f"  {label}, {direction}: raw {raw_ms:.1f} ms, engine {engine_ms:.1f} ms")
        report.add(
            "reload",
            f"{label}, {direction}",
            f"{raw_ms:.1f} (close {median(raw_close[direction]) * 1000:.1f})",
            f"{engine_ms:.1f} (Llama() {median(engine_llama[direction]) * 1000:.1f})",
            f"{engine_ms - raw_ms:+.1f}",
            fmt_ratio(engine_ms / raw_ms, "<= 1.2"),
            "/".join(str(n) for n in sorted(offloaded[direction])),
        )


def bench_fixed_costs(models: Sequence[tuple[str, Path]], report: Report) -> None:
    """Steps the engine adds around ``Llama()`` on every reload, timed here, median of 9.

    This process imports more than the engine child (asyncio, the client), so its collection
    walks somewhat more objects; the count is printed with it.
    """
    import gc

    from tui_llm.catalog.metadata import read_model_info

    def timed(step: Any) -> float:
        times = []
        for _ in range(9):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return median(times) * 1000

    collect_ms = timed(gc.collect)
    report.add(
        "fixed",
        f"gc.collect() after closing the model ({len(gc.get_objects())} tracked objects)",
        f"{collect_ms:.1f}",
    )
    for name, path in models:
        report.add(
            "fixed",
            f"read_model_info (GGUF metadata), {name}",
            f"{timed(lambda path=path: read_model_info(str(path))):.1f}",
        )


# ---- 3. time to first token after a reload ------------------------------------------------------


def build_conversation(
    model_path: str, target_tokens: int
) -> tuple[list[ChatMessage], list[ChatMessage], int, int]:
    """Readable turns from the demo corpus until the prompt is ``target_tokens`` long.

    Returns the history (ending with a user turn), the history one exchange later (a fixed
    assistant reply and a new user turn), and both prompts' token counts.
    """
    sentences = re.findall(r"[^.!?]+[.!?]", read_demo_corpus().replace("\n", " "))
    source = itertools.cycle(s.strip() for s in sentences)
    tokenizer = raw_load(LoadSettings(model_path, n_ctx=256, n_threads=1))
    history: list[ChatMessage] = [ChatMessage("user", next(source))]
    while len(prompt_tokens(tokenizer, history)) < target_tokens:
        history.append(ChatMessage("assistant", " ".join(next(source) for _ in range(4))))
        history.append(ChatMessage("user", next(source)))
    later = [
        *history,
        ChatMessage("assistant", " ".join(next(source) for _ in range(2))),
        ChatMessage("user", next(source)),
    ]
    counts = len(prompt_tokens(tokenizer, history)), len(prompt_tokens(tokenizer, later))
    tokenizer.close()
    return history, later, *counts


def bench_state_copy(
    settings: LoadSettings, history: Sequence[ChatMessage], report: Report
) -> None:
    """Time the engine's way of taking a KV cache out of llama.cpp against a bulk copy.

    A raw ``Llama`` holds the same conversation the engine carries across the reload; the
    engine's ``_save_state`` copies the state with ``bytes(buffer[:n])``, which goes through a
    Python list of n ints; ``ctypes.string_at`` copies the same bytes in one go.
    """
    import llama_cpp

    llm = raw_load(replace(settings, rpc_servers=(), offload_layers=0))
    raw_generate(llm, history, SamplingParams(temperature=0.0, max_tokens=8))
    ctx = llm._ctx.ctx
    as_list: list[float] = []
    bulk: list[float] = []
    fetch: list[float] = []
    written = 0
    for _ in range(3):
        started = time.perf_counter()
        size = llama_cpp.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(ctx, buffer, size)
        fetched = time.perf_counter()
        via_list = bytes(buffer[:written])
        listed = time.perf_counter()
        via_bulk = ctypes.string_at(buffer, written)
        copied = time.perf_counter()
        assert via_list == via_bulk
        fetch.append(fetched - started)
        as_list.append(listed - fetched)
        bulk.append(copied - listed)
        del buffer, via_list, via_bulk
    n_tokens = int(llm.n_tokens)
    llm.close()
    report.add(
        "state copy",
        f"{n_tokens} tokens, {written / 1e6:.1f} MB",
        f"{median(fetch) * 1000:.0f}",
        f"{median(as_list) * 1000:.0f}",
        f"{median(bulk) * 1000:.0f}",
    )


async def bench_ttft(
    client: EngineClient,
    before: LoadSettings,
    after: LoadSettings,
    plan: Plan,
    watch: CpuWatch,
    report: Report,
) -> None:
    history, later, history_tokens, later_tokens = build_conversation(
        before.model_path, plan.conversation_tokens
    )
    log(f"  conversation: {history_tokens} prompt tokens, next turn {later_tokens}")
    bench_state_copy(before, history, report)
    sampling = SamplingParams(temperature=0.0, max_tokens=8)
    modes = ("no reload", "reload, keep_kv=True", "reload, keep_kv=False")
    ttft: dict[str, list[float]] = {m: [] for m in modes}
    reload_s: dict[str, list[float]] = {m: [] for m in modes}
    evaluated: dict[str, set[int]] = {m: set() for m in modes}
    restored: dict[str, set[int]] = {m: set() for m in modes}
    cold: list[float] = []
    for _ in range(plan.ttft_reps):
        for mode in modes:
            watch.wait_for_idle()
            # The previous reply: the whole history is prefilled into the KV cache.
            await client.load(after if mode == "no reload" else before, keep_kv=False)
            _, first = await engine_generate(client, history, sampling)
            cold.append(first.stats.time_to_first_token_s)
            if mode != "no reload":
                started = time.perf_counter()
                loaded = await client.load(after, keep_kv=mode.endswith("True"))
                reload_s[mode].append(time.perf_counter() - started)
                restored[mode].add(loaded.kv_restored_tokens)
            _, done = await engine_generate(client, later, sampling)
            ttft[mode].append(done.stats.time_to_first_token_s)
            evaluated[mode].add(done.stats.prompt_tokens_evaluated)
            log(
                f"  {mode}: TTFT {done.stats.time_to_first_token_s * 1000:.0f} ms, "
                f"evaluated {done.stats.prompt_tokens_evaluated}/{done.stats.prompt_tokens}"
            )
    base = median(ttft["reload, keep_kv=False"])
    report.add(
        "ttft",
        f"previous reply, whole history prefilled ({history_tokens} tokens)",
        f"{median(cold) * 1000:.0f}",
        f"{history_tokens}",
        "-",
        "-",
        "-",
    )
    for mode in modes:
        report.add(
            "ttft",
            f"{mode} ({later_tokens} prompt tokens)",
            f"{median(ttft[mode]) * 1000:.0f}",
            "/".join(str(n) for n in sorted(evaluated[mode])),
            f"{median(ttft[mode]) / base:.3f}",
            f"{median(reload_s[mode]) * 1000:.0f}" if reload_s[mode] else "-",
            "/".join(str(n) for n in sorted(restored[mode])) or "-",
        )


# ---- the run ------------------------------------------------------------------------------------

HEADERS = {
    "generation": (
        "model",
        "raw tok/s",
        "engine tok/s",
        "engine / raw",
        "per-pair ratio median (range)",
        f"engine, {RARE_BATCH_S:g} s batches tok/s (/ raw)",
        "quiet rounds used",
        "reply ms raw / engine",
        "tokens",
    ),
    "reload": (
        "model, change",
        "raw ms",
        "engine ms",
        "engine - raw ms",
        "engine / raw",
        "offloaded layers",
    ),
    "state copy": (
        "KV state of the conversation",
        "get_size + buffer + get_data ms",
        "bytes(buffer[:n]) ms (the engine's copy)",
        "ctypes.string_at ms",
    ),
    "fixed": ("engine work per reload, timed in this process", "ms"),
    "ttft": (
        "next reply",
        "TTFT ms",
        "prompt tokens evaluated",
        "TTFT / keep_kv=False",
        "reload ms",
        "KV tokens restored",
    ),
}


def run_notes(
    plan: Plan,
    repack: bool,
    elapsed: float,
    load_before: tuple[float, float, float],
    waited_s: float,
) -> list[str]:
    """The run's settings and the machine's load, one line each."""
    load_after = os.getloadavg()
    return [
        f"settings: n_threads {plan.threads}, n_batch 512, f16 KV, temperature 0, "
        f"max_tokens {plan.max_tokens}, use_extra_bufts={repack} for raw and engine alike; "
        f"{plan.generation_reps} generation reps, {plan.reload_reps} reloads each way, "
        f"{plan.ttft_reps} TTFT reps per mode; run took {elapsed:.0f} s, "
        f"{waited_s:.0f} s of it waiting for other processes to go quiet",
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load_after),
    ]


def tables(report: Report) -> dict[str, str]:
    """One Markdown table per section of the report, in the order measured."""
    return {
        section: markdown_table(HEADERS[section], rows) for section, rows in report.sections.items()
    }


def print_summary(report: Report, command: str, notes: Sequence[str]) -> None:
    print(f"command: {command}")
    print(f"machine: {machine_line()}")
    print(f"source: {source_line()}")
    for note in notes:
        print(note)
    for table in tables(report).values():
        print()
        print(table)


# Section of the report -> section of docs/benchmarks.md (``python -m benchmarks``).
DOC_SECTIONS = {
    "generation": "engine.generation",
    "reload": "engine.reload",
    "fixed": "engine.fixed",
    "state copy": "engine.state_copy",
    "ttft": "engine.ttft",
}


def collect(quick: bool, threads: int = 2) -> dict[str, str]:
    """Run the benchmark; its Markdown by section of ``docs/benchmarks.md``. The run's settings
    go with the first table."""
    plan = replace(QUICK if quick else FULL, threads=threads)
    with tempfile.TemporaryDirectory(prefix="tui-llm-bench-") as tmp:
        report, notes = asyncio.run(run(plan, Path(tmp)))
    sections = {DOC_SECTIONS[name]: table for name, table in tables(report).items()}
    first = next(iter(sections))
    sections[first] = "\n\n".join([*(f"{note}." for note in notes), sections[first]])
    return sections


async def run(plan: Plan, folder: Path) -> tuple[Report, list[str]]:
    began = time.perf_counter()
    load_before = os.getloadavg()
    log("writing models...")
    demo = write_demo_model(folder / "demo.gguf")
    large = write_llama_gguf(
        folder / "random-16x512.gguf", n_layer=16, n_embd=512, n_ctx=4096, seed=16
    )
    demo_settings = LoadSettings(str(demo), n_ctx=2048, n_threads=plan.threads)
    large_settings = LoadSettings(str(large), n_ctx=4096, n_threads=plan.threads)
    report = Report()
    client = EngineClient(log_path=folder / "engine.log", stall_timeout_s=BLOCKING_STALL_S)
    await client.start()
    watch = CpuWatch()
    if client.pid is not None:
        watch.pids.add(client.pid)
    try:
        with engine_model_params() as repack:
            log("1. generation")
            await bench_generation(client, demo_settings, DEMO_NAME, plan, watch, report)
            await bench_generation(client, large_settings, LARGE_NAME, plan, watch, report)

            log("2. reload, CPU only")
            other_threads = 1 if plan.threads > 1 else 2
            for name, base in ((DEMO_NAME, demo_settings), (LARGE_NAME, large_settings)):
                await bench_reload(
                    client,
                    name,
                    base,
                    replace(base, n_threads=other_threads),
                    (),
                    (
                        f"n_threads {plan.threads} -> {other_threads}",
                        f"n_threads {other_threads} -> {plan.threads}",
                    ),
                    plan,
                    watch,
                    report,
                )
            bench_fixed_costs(((DEMO_NAME, demo), (LARGE_NAME, large)), report)
            # An RPC server serves one client connection at a time, and each process keeps
            # its connection open: the raw baseline and the engine child need one server each.
            with (
                rpc_server(folder, "raw", plan.threads, watch) as raw_endpoint,
                rpc_server(folder, "engine", plan.threads, watch) as endpoint,
            ):
                log(f"2. reload, RPC devices at {raw_endpoint} (raw), {endpoint} (engine)")
                on_cpu = replace(large_settings, rpc_servers=(endpoint,))
                on_rpc = replace(on_cpu, offload_layers=RPC_OFFLOAD)
                await bench_reload(
                    client,
                    LARGE_NAME,
                    on_cpu,
                    on_rpc,
                    (raw_endpoint,),
                    (f"offload 0 -> {RPC_OFFLOAD} (RPC)", f"offload {RPC_OFFLOAD} -> 0 (RPC)"),
                    plan,
                    watch,
                    report,
                )
                log("3. time to first token after a reload")
                await bench_ttft(client, on_cpu, on_rpc, plan, watch, report)
    finally:
        await client.close()
    notes = run_notes(plan, repack, time.perf_counter() - began, load_before, watch.waited_s)
    return report, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter replies")
    parser.add_argument(
        "--threads", type=int, default=2, help="llama.cpp threads for generation (default 2)"
    )
    args = parser.parse_args(argv)
    plan = replace(QUICK if args.quick else FULL, threads=args.threads)
    command = " ".join([".venv/bin/python -m benchmarks.bench_engine", *(argv or sys.argv[1:])])
    with tempfile.TemporaryDirectory(prefix="tui-llm-bench-") as tmp:
        report, notes = asyncio.run(run(plan, Path(tmp)))
    print_summary(report, command, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
