"""Two ways to download a model from the Hub, measured on the fake Hub: cancel, progress, resume.

- **ours**: `tui_llm.catalog.hub_download.download` (huggingface_hub's metadata HEAD and HTTP
  client, our transfer loop), run as the app runs it: in a thread, cancelled with a
  `CancelToken`, progress from its callback;
- **child**: `huggingface_hub.hf_hub_download` in a child process, as the alternative would run
  it: cancel is a kill, progress comes from a `tqdm_class` that prints each update on stdout.

Both fetch the same ~34 MiB GGUF from the fake Hub (tests/hubserver.py) on 127.0.0.1, which sends
it at `--rate` bytes/s. Figures per way, medians over `--rounds`:

1. progress: updates per second while bytes flow, and the time to the first update;
2. cancel: from the cancel (or kill) to the download returning (or the process gone), and to the
   server seeing its connection closed; bytes left in the cache's blobs folder;
3. resume after a dropped connection (the server cuts once after 12 MiB): where the next request
   starts (its Range), bytes sent again, total time;
4. resume after the process is killed after 12 MiB (``tui-llm pull`` for ours) and started
   again: where the next request starts, and what the killed run left in the cache.

    .venv/bin/python -m benchmarks.bench_hub_download [--rounds N] [--rate BYTES_PER_S]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.sections import markdown_table
from tests.hubserver import FakeHub, FakeRepo, Transfer
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.catalog.hub_client import HubError, HubSettings
from tui_llm.catalog.hub_download import CancelToken, DownloadProgress, DownloadRequest, download

REPO_ID = "bench/Bench-GGUF"
FILENAME = "Bench-F32.gguf"
MIB = 1024 * 1024
CUT_AT = 12 * MIB  # past hf_hub_download's first 10 MiB chunk, so it has one to keep
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One download, as its caller saw it: progress update times (s) and how it ended."""

    updates: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    error: str | None = None


# -- the child process way -----------------------------------------------------------------


def child_main(args: list[str]) -> None:
    """``--child REPO FILE COMMIT CACHE ENDPOINT``: hf_hub_download, progress lines on stdout."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    repo_id, filename, commit, cache, endpoint = args

    class LineBar(tqdm):  # type: ignore[misc]
        def __init__(self, *a: object, **k: object) -> None:
            k.pop("name", None)
            super().__init__(*a, file=open(os.devnull, "w"), **k)  # type: ignore[arg-type]  # noqa: SIM115

        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            print(f"progress {self.n}", flush=True)
            return shown

    from huggingface_hub import hf_hub_download

    path = hf_hub_download(
        repo_id,
        filename,
        revision=commit,
        cache_dir=cache,
        endpoint=endpoint,
        token=False,
        tqdm_class=LineBar,
    )
    print(f"done {path}", flush=True)


def _child_env(hub: FakeHub, cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": str(REPO_ROOT),
    }


def start_child(hub: FakeHub, cache: Path, commit: str, run: Run) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "benchmarks.bench_hub_download", "--child"]
    command += [REPO_ID, FILENAME, commit, str(cache), hub.url]
    run.started = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(hub, cache),
        cwd=REPO_ROOT,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("progress"):
                run.updates.append(time.monotonic())
        run.ended = time.monotonic()

    threading.Thread(target=read, daemon=True).start()
    return proc


def start_tui_llm_pull(hub: FakeHub, cache: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tui_llm", "pull", f"{REPO_ID}:{FILENAME}"]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(hub, cache),
        cwd=REPO_ROOT,
    )


# -- our way -------------------------------------------------------------------------------


def start_ours(
    hub: FakeHub, cache: Path, commit: str, run: Run
) -> tuple[threading.Thread, CancelToken]:
    settings = HubSettings(hub.url, cache, offline=False, timeout_s=10.0)
    request = DownloadRequest(REPO_ID, (FILENAME,), commit=commit)
    token = CancelToken()

    def on_progress(event: DownloadProgress) -> None:
        run.updates.append(time.monotonic())

    def work() -> None:
        try:
            download(request, settings=settings, cancel=token, on_progress=on_progress)
        except HubError as error:
            run.error = error.kind
        run.ended = time.monotonic()

    run.started = time.monotonic()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, token


# -- measurements --------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long")
        time.sleep(0.002)


def transfers_of(hub: FakeHub) -> list[Transfer]:
    return [t for t in hub.transfers if FILENAME in t.path or "/cdn/" in t.path]


def progress_rate(run: Run) -> tuple[float, float]:
    """(updates per second while bytes flowed, seconds from the start to the first update)."""
    ups = run.updates
    span = (ups[-1] - ups[0]) if len(ups) > 1 else 0.0
    rate = (len(ups) - 1) / span if span > 0 else 0.0
    return rate, (ups[0] - run.started) if ups else float("nan")


def blob_bytes(cache: Path) -> int:
    blobs = cache / f"models--{REPO_ID.replace('/', '--')}" / "blobs"
    return sum(p.stat().st_size for p in blobs.glob("*incomplete")) if blobs.is_dir() else 0


def _fresh(hub: FakeHub, root: Path, rate: int) -> Path:
    """Clear the server's faults and logs, set its rate; a new empty cache folder."""
    hub.reset()
    hub.throttle_bytes_per_s = rate
    return Path(tempfile.mkdtemp(dir=root))


def _sent_at_least(hub: FakeHub, n_bytes: int) -> Callable[[], bool]:
    return lambda: bool(transfers_of(hub)) and transfers_of(hub)[-1].sent >= n_bytes


def measure_progress(way: str, hub: FakeHub, cache: Path, commit: str) -> dict[str, float]:
    run = Run()
    if way == "ours":
        thread = start_ours(hub, cache, commit, run)[0]
        wait_for(lambda: bool(transfers_of(hub)))
        first_byte = time.monotonic() - run.started
        thread.join()
    else:
        proc = start_child(hub, cache, commit, run)
        wait_for(lambda: bool(transfers_of(hub)))
        first_byte = time.monotonic() - run.started
        proc.wait()
        wait_for(lambda: run.ended > 0)
    updates_per_s, first_update = progress_rate(run)
    return {
        "first_byte_s": first_byte,
        "first_update_s": first_update,
        "updates_per_s": updates_per_s,
        "full_s": run.ended - run.started,
    }


def measure_cancel(way: str, hub: FakeHub, cache: Path, commit: str) -> dict[str, float]:
    """Cancel (ours) or kill (child) once the server has sent 4 MiB."""
    if way == "ours":
        thread, token = start_ours(hub, cache, commit, Run())
        wait_for(_sent_at_least(hub, 4 * MIB))
        asked = time.monotonic()
        token.cancel()
        thread.join()
    else:
        proc = start_child(hub, cache, commit, Run())
        wait_for(_sent_at_least(hub, 4 * MIB))
        asked = time.monotonic()
        proc.kill()
        proc.wait()
    stopped = time.monotonic() - asked
    transfer = transfers_of(hub)[-1]
    wait_for(lambda: transfer.aborted or transfer.finished, timeout_s=10)
    return {
        "cancel_s": stopped,
        "server_saw_close_s": time.monotonic() - asked,
        "left_after_cancel_mib": blob_bytes(cache) / MIB,
    }


def measure_cut(way: str, hub: FakeHub, cache: Path, commit: str) -> dict[str, float]:
    """The server cuts the connection once after CUT_AT bytes; then the next try."""
    hub.cut_after_bytes, hub.cuts_remaining = CUT_AT, 1
    began = time.monotonic()
    if way == "ours":
        first = Run()
        start_ours(hub, cache, commit, first)[0].join()
        reported = float(first.error == "interrupted")
        start_ours(hub, cache, commit, Run())[0].join()
    else:
        reported = float(start_child(hub, cache, commit, Run()).wait() != 0)
    after_cut = transfers_of(hub)[1:]
    return {
        "cut_reported_as_error": reported,
        "cut_total_s": time.monotonic() - began,
        "cut_next_start_mib": after_cut[0].start / MIB if after_cut else float("nan"),
        "cut_resent_mib": sum(t.sent for t in after_cut) / MIB,
    }


def measure_kill(way: str, hub: FakeHub, cache: Path, commit: str) -> dict[str, float]:
    """Kill the downloading process after CUT_AT bytes, then start it again."""

    def start() -> subprocess.Popen[str]:
        if way == "ours":
            return start_tui_llm_pull(hub, cache)
        return start_child(hub, cache, commit, Run())

    killed = start()
    wait_for(_sent_at_least(hub, CUT_AT))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = blob_bytes(cache) / MIB
    start().wait()
    return {
        "left_after_kill_mib": left,
        "restart_start_mib": transfers_of(hub)[-1].start / MIB,
        "left_after_restart_mib": blob_bytes(cache) / MIB,
    }


def measure_round(hub: FakeHub, root: Path, commit: str, rate: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for way in ("ours", "child"):
        figures[way] = {}
        for measure in (measure_progress, measure_cancel, measure_cut, measure_kill):
            figures[way].update(measure(way, hub, _fresh(hub, root, rate), commit))
    return figures


# figure -> (row label, how a median is shown)
FIGURES: dict[str, tuple[str, Callable[[float], str]]] = {
    "first_byte_s": ("start to first byte at the server", lambda v: f"{v:.2f} s"),
    "first_update_s": ("start to first progress update", lambda v: f"{v:.2f} s"),
    "updates_per_s": ("progress updates per second while bytes flow", lambda v: f"{v:.2f}"),
    "full_s": ("whole download", lambda v: f"{v:.2f} s"),
    "cancel_s": ("cancel (or kill) to the download stopped", lambda v: f"{v * 1000:.0f} ms"),
    "server_saw_close_s": (
        "cancel (or kill) to the server seeing the connection closed",
        lambda v: f"{v * 1000:.0f} ms",
    ),
    "left_after_cancel_mib": (
        "bytes left in the cache after a cancel at 4 MiB",
        lambda v: f"{v:.1f} MiB",
    ),
    "cut_reported_as_error": (
        "connection cut after 12 MiB: reported to the caller",
        lambda v: "yes" if v >= 0.5 else "no (retried inside)",
    ),
    "cut_next_start_mib": ("cut: where the next request starts", lambda v: f"{v:.1f} MiB"),
    "cut_resent_mib": ("cut: sent again after the cut", lambda v: f"{v:.1f} MiB"),
    "cut_total_s": ("cut: until the file is complete", lambda v: f"{v:.2f} s"),
    "left_after_kill_mib": (
        "process killed after 12 MiB: partial file left",
        lambda v: f"{v:.1f} MiB",
    ),
    "restart_start_mib": ("killed: where the next run starts", lambda v: f"{v:.1f} MiB"),
    "left_after_restart_mib": (
        "killed: partial file left after the next run completes",
        lambda v: f"{v:.1f} MiB",
    ),
}


@dataclass
class Measured:
    """Every round's figures for both ways, and what was downloaded how."""

    rounds: list[dict[str, dict[str, float]]]
    setup: str


def measure(rounds: int, rate: int) -> Measured:
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as folder:
        root = Path(folder)
        data = write_llama_gguf(
            root / FILENAME, n_layer=2, n_embd=512, tensor_type="f32", seed=1
        ).read_bytes()
        hub = FakeHub({REPO_ID: FakeRepo(REPO_ID, {FILENAME: data})})
        hub.start()
        commit = hub.repos[REPO_ID].commit
        import huggingface_hub

        setup = (
            f"file {len(data) / MIB:.1f} MiB at {rate / 1e6:g} MB/s; huggingface_hub "
            f"{huggingface_hub.__version__}; {rounds} rounds; medians"
        )
        print(setup)
        figures = []
        for number in range(rounds):
            figures.append(measure_round(hub, root, commit, rate))
            print(f"round {number + 1}: {json.dumps(figures[-1])}", flush=True)
        hub.stop()
    return Measured(figures, setup)


def medians(measured: Measured, way: str) -> dict[str, float]:
    names = list(measured.rounds[0][way])
    return {name: statistics.median(r[way][name] for r in measured.rounds) for name in names}


def markdown(measured: Measured) -> str:
    ours, child = medians(measured, "ours"), medians(measured, "child")
    rows = [
        (label, show(ours[name]), show(child[name]))
        for name, (label, show) in FIGURES.items()
        if name in ours
    ]
    return f"{measured.setup[0].upper()}{measured.setup[1:]}.\n\n" + markdown_table(
        ("figure", "ours", "child"), rows
    )


def collect(quick: bool) -> dict[str, str]:
    """Run the benchmark (``quick``: one round); its Markdown for ``docs/benchmarks.md``."""
    return {"hub_download": markdown(measure(1 if quick else 3, 8_000_000))}


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--child"]:
        child_main(args_in[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=8_000_000, help="bytes/s the server sends")
    args = parser.parse_args(args_in)
    measured = measure(args.rounds, args.rate)
    ours, child = medians(measured, "ours"), medians(measured, "child")
    print(f"\n{'figure':28} {'ours':>10} {'child':>10}")
    for name in ours:
        print(f"{name:28} {ours[name]:10.3f} {child[name]:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
