"""Hub search, quantization listing, downloads into the HF cache, cancel and faults, for real.

The server (tests/hubserver.py) runs on 127.0.0.1 and HF_ENDPOINT points at it; HF_HUB_CACHE is
a temporary folder per test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests import hub_fixtures
from tests.conftest import REPO
from tests.hubserver import GRANTED_TOKEN, INVALID_TOKEN, FakeHub
from tui_llm.catalog.hub import (
    HubError,
    HubSettings,
    QuantOption,
    RepoFiles,
    find_option,
    list_repo_ggufs,
    pick_best_option,
    quantization_from_name,
    rate_options,
    search_models,
)
from tui_llm.catalog.hub_cache import list_cached_ggufs, write_ref
from tui_llm.catalog.hub_download import DownloadProgress, DownloadRequest, download
from tui_llm.catalog.hub_queue import (
    DownloadCancelled,
    DownloadEvent,
    DownloadFinished,
    DownloadQueue,
    DownloadStarted,
)

hub_server_session = hub_fixtures.hub_server_session
hub_server = hub_fixtures.hub_server

GIB = 1024**3


def cache_dir() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


def request_for(repo_id: str, selector: str) -> DownloadRequest:
    return DownloadRequest.for_option(find_option(list_repo_ggufs(repo_id), selector))


def served(hub: FakeHub, repo_id: str, filename: str) -> bytes:
    return hub.repos[repo_id].files[filename]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


class Recorder:
    """Collects queue events from the worker thread."""

    def __init__(self) -> None:
        self.events: list[DownloadEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: DownloadEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[DownloadEvent], job_id: int | None = None) -> list[DownloadEvent]:
        with self._lock:
            return [
                e
                for e in self.events
                if isinstance(e, kind) and (job_id is None or e.job_id == job_id)
            ]


# -- search and listing --------------------------------------------------------------------------


def test_search_lists_gguf_repositories_most_downloaded_first(hub_server: FakeHub) -> None:
    models = search_models("acme")

    ids = [m.repo_id for m in models]
    assert ids[:3] == ["acme/TinyLlama-GGUF", "acme/Split-GGUF", "acme/Gated-GGUF"]
    assert "acme/tinyllama-safetensors" not in ids, "only GGUF repositories"
    assert "acme/Private-GGUF" not in ids
    assert [m.downloads for m in models] == sorted((m.downloads for m in models), reverse=True)
    tiny = models[0]
    assert (tiny.likes, tiny.parameter_count, tiny.architecture) == (42, 400_000, "llama")
    assert tiny.context_length == 2048
    assert tiny.last_modified is not None and tiny.last_modified.year == 2025
    assert models[2].gated
    (sent,) = hub_server.requests
    assert sent.query["filter"] == ["gguf"] and sent.query["sort"] == ["downloads"]
    assert {"gguf", "downloads", "likes", "lastModified"} <= set(sent.query["expand"])


def test_listing_groups_quantizations_and_sums_split_shards(hub_server: FakeHub) -> None:
    tiny = list_repo_ggufs("acme/TinyLlama-GGUF")
    split = list_repo_ggufs("acme/Split-GGUF")

    assert [o.quantization for o in tiny.options] == ["Q8_0", "F16", "F32"], "smallest first"
    for option in tiny.options:
        assert option.size_bytes == len(served(hub_server, option.repo_id, option.filenames[0]))
    assert tiny.commit == hub_server.repos["acme/TinyLlama-GGUF"].commit
    assert tiny.gguf["architecture"] == "llama"

    by_name = {o.name: o for o in split.options}
    assert set(by_name) == {"Split-Q8_0", "Split-F16"}, "mmproj projector is not a model"
    shards = by_name["Split-Q8_0"]
    assert shards.is_split and len(shards.filenames) == 3
    assert shards.filenames[0] == "Split-Q8_0-00001-of-00003.gguf"
    assert shards.size_bytes == sum(
        len(served(hub_server, "acme/Split-GGUF", name)) for name in shards.filenames
    )


@pytest.mark.parametrize(
    ("filename", "quantization"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q8_0-00001-of-00002.gguf", "Q8_0"),
        ("Q5_K_S/Model-00001-of-00002.gguf", "Q5_K_S"),
        ("Qwen3-30B-A3B.IQ4_XS.gguf", "IQ4_XS"),
        ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("phi-4-bf16.gguf", "BF16"),
        ("model.gguf", "?"),
    ],
)
def test_quantization_is_read_from_the_file_name(filename: str, quantization: str) -> None:
    assert quantization_from_name(filename) == quantization


def _options(*gib: float) -> list[QuantOption]:
    return [
        QuantOption("o/r", "main", "c" * 40, f"m{size}", "Q", (f"m{size}.gguf",), int(size * GIB))
        for size in gib
    ]


def test_best_option_is_the_largest_that_fits_the_gpu_else_ram() -> None:
    options = _options(1, 2, 4)

    def best(vram: float | None, ram: float | None) -> float | None:
        chosen = pick_best_option(
            options,
            free_vram_bytes=None if vram is None else int(vram * GIB),
            free_ram_bytes=None if ram is None else int(ram * GIB),
        )
        return None if chosen is None else (chosen.size_bytes or 0) / GIB

    assert best(4, 64) == 2, "4 GiB * 1.2 does not fit 4 GiB of VRAM"
    assert best(4.9, 64) == 4
    assert best(1, 6) == 4, "nothing fits the GPU: the largest that fits RAM"
    assert best(None, 3) == 2
    assert best(0.5, 1) is None


def test_rate_options_uses_a_plugged_in_fit_badge(hub_server: FakeHub) -> None:
    repo: RepoFiles = list_repo_ggufs("acme/TinyLlama-GGUF")
    seen: list[tuple[int, object, object]] = []

    def badge(size_bytes: int, metadata: Mapping[str, object]) -> str:
        seen.append((size_bytes, metadata["quantization"], metadata["architecture"]))
        return f"badge {size_bytes}"

    rated = rate_options(repo, free_vram_bytes=2_000_000, free_ram_bytes=None, fit_badge=badge)

    assert [r.badge for r in rated] == [f"badge {o.size_bytes}" for o in repo.options]
    assert [s[1:] for s in seen] == [("Q8_0", "llama"), ("F16", "llama"), ("F32", "llama")]
    assert [r.option.quantization for r in rated if r.best] == ["F16"]
    default = rate_options(repo, free_vram_bytes=2_000_000, free_ram_bytes=None)
    assert [r.badge for r in default] == ["fits GPU", "fits GPU", "too large"]


# -- downloads -----------------------------------------------------------------------------------


def test_download_reports_progress_and_lands_in_the_shared_cache(hub_server: FakeHub) -> None:
    hub_server.throttle_bytes_per_s = 4_000_000
    request = request_for("acme/TinyLlama-GGUF", "F32")
    events: list[DownloadProgress] = []

    result = download(request, on_progress=events.append)

    data = served(hub_server, "acme/TinyLlama-GGUF", "TinyLlama-F32.gguf")
    commit = hub_server.repos["acme/TinyLlama-GGUF"].commit
    storage = cache_dir() / "models--acme--TinyLlama-GGUF"
    assert result.model_path == storage / "snapshots" / commit / "TinyLlama-F32.gguf"
    assert result.model_path.read_bytes() == data
    assert result.info.quantization == "F32"
    assert (storage / "refs" / "main").read_text() == commit
    assert len(events) >= 3
    assert [e.done_bytes for e in events] == sorted(e.done_bytes for e in events)
    assert events[-1].done_bytes == events[-1].total_bytes == len(data)
    assert any(e.bytes_per_s and e.eta_s is not None for e in events[:-1])
    assert [c.path for c in list_cached_ggufs()] == [result.model_path]

    # huggingface_hub itself finds the file where hf_hub_download would have put it.
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        "acme/TinyLlama-GGUF", "TinyLlama-F32.gguf", cache_dir=cache_dir()
    )
    assert found == str(result.model_path)

    hub_server.requests.clear()
    again = download(request)
    assert again.model_path == result.model_path
    assert hub_server.requests == [], "in the cache at the listed commit: nothing is sent"

    other_branch = DownloadRequest(request.repo_id, request.filenames, revision="main")
    assert download(other_branch).model_path == result.model_path
    assert [r.method for r in hub_server.requests] == ["HEAD"], "a branch is checked, not fetched"


def test_huggingface_hub_and_tui_llm_share_the_downloaded_file(hub_server: FakeHub) -> None:
    from huggingface_hub import hf_hub_download

    theirs = hf_hub_download(
        "acme/TinyLlama-GGUF",
        "TinyLlama-Q8_0.gguf",
        cache_dir=cache_dir(),
        endpoint=hub_server.url,
        token=False,
    )
    hub_server.requests.clear()

    ours = download(request_for("acme/TinyLlama-GGUF", "Q8_0"))

    assert str(ours.model_path) == theirs
    assert [r.method for r in hub_server.requests] == ["GET"], "the listing only, no bytes"


def test_split_model_downloads_every_shard_and_is_listed_once(hub_server: FakeHub) -> None:
    result = download(request_for("acme/Split-GGUF", "Q8_0"))

    assert result.model_path.name == "Split-Q8_0-00001-of-00003.gguf"
    assert len(result.info.shards) == 3
    (cached,) = list_cached_ggufs()
    assert cached.path == result.model_path and len(cached.shard_paths) == 3
    assert cached.size_bytes == sum(p.stat().st_size for p in result.shard_paths)


def test_cancel_closes_the_connection_and_leaves_nothing(hub_server: FakeHub) -> None:
    hub_server.throttle_bytes_per_s = 2_000_000
    request = request_for("acme/Big-GGUF", "F32")
    recorder = Recorder()
    queue = DownloadQueue(recorder)
    try:
        job = queue.submit(request)
        wait_until(
            lambda: any(
                isinstance(e, DownloadProgress) and e.done_bytes >= 256 * 1024
                for e in recorder.of(DownloadProgress)
            )
        )
        asked = time.monotonic()
        assert queue.cancel(job)
        wait_until(lambda: bool(recorder.of(DownloadCancelled, job)), timeout_s=3)
        assert time.monotonic() - asked < 1.0, "cancel takes effect at once"
    finally:
        queue.close()

    transfer = hub_server.transfers[-1]
    assert hub_server.wait_for(lambda: transfer.aborted, timeout_s=5), "server saw the close"
    assert transfer.sent < transfer.total, "the server stopped before the end of the file"
    assert not recorder.of(DownloadFinished)
    assert list_cached_ggufs() == []
    blobs = cache_dir() / "models--acme--Big-GGUF" / "blobs"
    assert not any(blobs.iterdir()), "no partial file is left after a cancel"


def test_queue_runs_one_download_at_a_time_and_cancels_queued_ones(hub_server: FakeHub) -> None:
    hub_server.throttle_bytes_per_s = 2_000_000
    first = request_for("acme/TinyLlama-GGUF", "Q8_0")
    second = request_for("acme/TinyLlama-GGUF", "F16")
    third = request_for("acme/Split-GGUF", "Q8_0")
    recorder = Recorder()
    queue = DownloadQueue(recorder)
    try:
        a, b, c = queue.submit(first), queue.submit(second), queue.submit(third)
        assert queue.submit(second) == b, "the same request is not queued twice"
        assert queue.cancel(c)
        wait_until(lambda: bool(recorder.of(DownloadFinished, b)))
    finally:
        queue.close()

    order = [
        (type(e).__name__, e.job_id)
        for e in recorder.events
        if isinstance(e, DownloadStarted | DownloadFinished | DownloadCancelled)
    ]
    assert order.index(("DownloadCancelled", c)) < order.index(("DownloadFinished", a))
    assert order.index(("DownloadFinished", a)) < order.index(("DownloadStarted", b))
    assert ("DownloadStarted", c) not in order
    assert not hub_server.paths("/acme/Split-GGUF"), "a cancelled queued job sends nothing"
    assert {c.path.name for c in list_cached_ggufs()} == {
        "TinyLlama-Q8_0.gguf",
        "TinyLlama-F16.gguf",
    }


def test_cut_connection_is_reported_and_the_retry_resumes(hub_server: FakeHub) -> None:
    hub_server.cut_after_bytes = 512 * 1024
    hub_server.cuts_remaining = 1
    request = request_for("acme/TinyLlama-GGUF", "F32")

    with pytest.raises(HubError) as failed:
        download(request)

    assert failed.value.kind == "interrupted"
    assert "cut" in str(failed.value) and "\n" not in str(failed.value)
    assert list_cached_ggufs() == [], "a partial download is never listed"

    result = download(request)

    assert result.model_path.read_bytes() == served(
        hub_server, "acme/TinyLlama-GGUF", "TinyLlama-F32.gguf"
    )
    last_get = [r for r in hub_server.requests if r.method == "GET"][-1]
    assert last_get.headers.get("Range") == f"bytes={512 * 1024}-", "the retry resumed"
    assert [c.path for c in list_cached_ggufs()] == [result.model_path]


def test_a_stalled_transfer_times_out_and_resumes(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub_server.stall_body_after_bytes = 256 * 1024
    hub_server.stall_body_s = 1.5
    request = request_for("acme/TinyLlama-GGUF", "F16")

    with pytest.raises(HubError) as failed:
        download(request)

    assert failed.value.kind == "timeout"
    assert "0.5 s" in str(failed.value)
    assert download(request).model_path.is_file()


def test_file_that_is_not_gguf_is_reported_and_removed(hub_server: FakeHub) -> None:
    with pytest.raises(HubError) as failed:
        download(request_for("acme/Bad-GGUF", "Q4_K_M"))

    assert failed.value.kind == "invalid"
    assert "not a valid GGUF" in str(failed.value)
    assert list_cached_ggufs() == []
    storage = cache_dir() / "models--acme--Bad-GGUF"
    kept = [p for folder in ("blobs", "snapshots") for p in (storage / folder).rglob("*")]
    assert not any(p.is_file() or p.is_symlink() for p in kept), "its bytes left the cache"


def test_partial_and_broken_entries_are_never_listed(hub_server: FakeHub) -> None:
    good = download(request_for("acme/TinyLlama-GGUF", "Q8_0"))
    snapshot = good.model_path.parent
    (snapshot.parents[1] / "blobs" / ("0" * 64 + ".incomplete")).write_bytes(b"GGUF partial")
    shard = snapshot / "Half-Q8_0-00001-of-00002.gguf"
    shard.symlink_to(os.path.relpath(good.model_path.resolve(), snapshot))
    broken = download(request_for("acme/Split-GGUF", "F16")).model_path
    (broken.parent / "Dangling-Q4_0.gguf").symlink_to("../../blobs/" + "1" * 64)

    # huggingface_hub's scan reports a repository with a dangling link as broken: all of it is
    # left out (as `hf cache scan` shows it), the other repositories still list.
    assert [c.path for c in list_cached_ggufs()] == [good.model_path]


@pytest.mark.parametrize("filename", ["../../outside-Q8_0.gguf", "/etc/x.gguf", "a/./b.gguf"])
def test_unsafe_file_names_are_refused_before_any_request(
    hub_server: FakeHub, filename: str
) -> None:
    with pytest.raises(HubError) as failed:
        download(DownloadRequest("acme/TinyLlama-GGUF", (filename,)))

    assert failed.value.kind == "protocol" and "unsafe file name" in str(failed.value)
    assert hub_server.requests == []


@pytest.mark.parametrize("revision", ["../../../outside", "/tmp/x", "a/../../b", "a\\..\\b"])
def test_unsafe_revisions_are_refused_before_any_request(
    hub_server: FakeHub, revision: str, tmp_path: Path
) -> None:
    """A revision names a file under refs/: one that climbs out of the cache is refused."""
    request = DownloadRequest("acme/TinyLlama-GGUF", ("TinyLlama-Q8_0.gguf",), revision=revision)
    with pytest.raises(HubError) as failed:
        download(request)

    assert failed.value.kind == "protocol" and "unsafe revision" in str(failed.value)
    assert hub_server.requests == []
    with pytest.raises(ValueError):
        write_ref(tmp_path / "models--acme--x", revision, "abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- the Hub's rules and faults ------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_one_clear_line(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()

    with pytest.raises(HubError) as failed:
        search_models("tiny")

    assert failed.value.kind == "connection"
    assert "connection refused" in str(failed.value)
    assert time.monotonic() - started < 2, "no hidden retries"
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    assert search_models("tiny"), "the retry works"


def test_a_hub_that_does_not_answer_times_out(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    hub_server.stall_s = 1.5

    with pytest.raises(HubError) as failed:
        search_models("tiny")

    assert failed.value.kind == "timeout"
    hub_server.stall_s = 0
    assert search_models("tiny")


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (429, "rate_limited", "try again in 7 s"),
        (500, "server", "server error (500"),
        (503, "server", "server error (503"),
    ],
)
def test_search_error_statuses_then_retry(
    hub_server: FakeHub, status: int, kind: str, words: str
) -> None:
    hub_server.search_status = status

    with pytest.raises(HubError) as failed:
        search_models("tiny")

    assert (failed.value.kind, "\n" in str(failed.value)) == (kind, False)
    assert words in str(failed.value)
    assert len(hub_server.requests) == 1, "no hidden retries"
    hub_server.search_status = None
    assert search_models("tiny")


@pytest.mark.parametrize(
    ("repo_id", "kind", "words"),
    [
        ("acme/Busy-GGUF", "rate_limited", "(429)"),
        ("acme/Broken-GGUF", "server", "(500"),
    ],
)
def test_repository_error_statuses_then_retry(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch, repo_id: str, kind: str, words: str
) -> None:
    with pytest.raises(HubError) as failed:
        list_repo_ggufs(repo_id)
    assert failed.value.kind == kind and words in str(failed.value)

    monkeypatch.setattr(hub_server.repos[repo_id], "fault_status", None)
    assert download(request_for(repo_id, "Q8_0")).model_path.is_file()


def test_not_found_repository_revision_and_file(hub_server: FakeHub) -> None:
    with pytest.raises(HubError) as repo:
        list_repo_ggufs("acme/Nothing-GGUF")
    with pytest.raises(HubError) as revision:
        list_repo_ggufs("acme/TinyLlama-GGUF", revision="v9")
    with pytest.raises(HubError) as file:
        download(DownloadRequest("acme/TinyLlama-GGUF", ("Missing-Q2_K.gguf",)))
    with pytest.raises(HubError) as quant:
        find_option(list_repo_ggufs("acme/TinyLlama-GGUF"), "Q5_K_M")

    assert "no repository acme/Nothing-GGUF" in str(repo.value)
    assert "Missing-Q2_K.gguf" in str(file.value)
    assert "it has F16, F32, Q8_0" in str(quant.value)
    for error in (repo, revision, file, quant):
        assert error.value.kind == "not_found"


def test_private_repository_needs_a_login(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(HubError) as failed:
        list_repo_ggufs("acme/Private-GGUF")
    assert "hf auth login" in str(failed.value)
    assert hub_server.requests[-1].headers.get("Authorization") is None

    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)
    assert list_repo_ggufs("acme/Private-GGUF").options


def test_a_rejected_token_is_a_401_with_a_hint(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", INVALID_TOKEN)

    with pytest.raises(HubError) as failed:
        search_models("tiny")

    assert failed.value.kind == "unauthorized" and "(401)" in str(failed.value)
    assert INVALID_TOKEN not in str(failed.value)


def test_gated_repository_gives_the_license_url_then_works_with_access(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch, user_dirs: Path
) -> None:
    request = request_for("acme/Gated-GGUF", "Q8_0")
    url = f"{hub_server.url}/acme/Gated-GGUF"

    with pytest.raises(HubError) as anonymous:
        download(request)
    monkeypatch.setenv("HF_TOKEN", "hf_someone_without_access")
    with pytest.raises(HubError) as no_access:
        download(request)

    assert (anonymous.value.kind, no_access.value.kind) == ("gated", "gated")
    assert url in str(anonymous.value) and "hf auth login" in str(anonymous.value)
    assert url in str(no_access.value) and "accept its license" in str(no_access.value)

    # The user's login (the token `hf auth login` saved under HF_HOME) is used.
    monkeypatch.delenv("HF_TOKEN")
    (Path(os.environ["HF_HOME"]) / "token").parent.mkdir(parents=True, exist_ok=True)
    (Path(os.environ["HF_HOME"]) / "token").write_text(GRANTED_TOKEN + "\n")
    assert download(request).model_path.is_file()
    assert hub_server.requests[-1].headers.get("Authorization") == f"Bearer {GRANTED_TOKEN}"
    assert GRANTED_TOKEN not in repr(HubSettings.from_env())


def test_the_token_is_not_sent_to_a_cdn_redirect(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)

    result = download(request_for("acme/Cdn-GGUF", "Q8_0"))

    assert result.model_path.is_file()
    head = next(r for r in hub_server.requests if r.method == "HEAD")
    cdn = next(r for r in hub_server.requests if r.path.startswith("/cdn/"))
    assert head.headers.get("Authorization") == f"Bearer {GRANTED_TOKEN}"
    assert "Authorization" not in cdn.headers


def test_offline_mode_says_so_at_once_and_the_cache_still_lists(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = download(request_for("acme/TinyLlama-GGUF", "Q8_0")).model_path
    hub_server.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(HubError) as failed:
        search_models("tiny")
    with pytest.raises(HubError):
        list_repo_ggufs("acme/TinyLlama-GGUF")

    assert failed.value.kind == "offline" and "HF_HUB_OFFLINE" in str(failed.value)
    assert hub_server.requests == [], "offline: nothing is sent"
    assert [c.path for c in list_cached_ggufs()] == [model]


# -- command line --------------------------------------------------------------------------------


def tui_llm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui_llm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_cli_search_json(hub_server: FakeHub) -> None:
    result = tui_llm("search", "tiny", "--json")

    assert result.returncode == 0, result.stderr
    (model,) = json.loads(result.stdout)
    assert model["repo_id"] == "acme/TinyLlama-GGUF"
    assert (model["parameter_count"], model["architecture"]) == (400_000, "llama")


def test_cli_pull_picks_the_best_fit_and_prints_the_path(hub_server: FakeHub) -> None:
    # 1.5 MiB of "VRAM": F16 (0.9 MiB) fits with headroom, F32 (1.7 MiB) does not.
    result = tui_llm("pull", "acme/TinyLlama-GGUF", "--vram", str(1.5 / 1024), "--ram", "0")

    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name == "TinyLlama-F16.gguf" and path.is_file()
    assert path.is_relative_to(cache_dir())
    assert "100%" in result.stderr and "fits GPU" in result.stderr


def test_cli_pull_of_a_split_model_gives_a_model_that_chat_loads(hub_server: FakeHub) -> None:
    """``tui-llm chat "$(tui-llm pull REPO:QUANT)"`` on a model in three shards."""
    pulled = tui_llm("pull", "acme/Split-GGUF:Q8_0")
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert path.name == "Split-Q8_0-00001-of-00003.gguf" and path.is_symlink(), "a snapshot entry"

    chat = tui_llm("chat", str(path), "--prompt", "hi", "--max-tokens", "4", "--json")

    assert chat.returncode == 0, chat.stderr
    data = json.loads(chat.stdout)
    assert data["load"]["model_path"] == str(path)
    assert data["stats"]["generated_tokens"] == 4


def test_cli_pull_named_quantization_with_a_token_that_is_never_printed(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)

    result = tui_llm("pull", "acme/Gated-GGUF:Gated-Q8_0.gguf")

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).name == "Gated-Q8_0.gguf"
    assert GRANTED_TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("acme/Gated-GGUF", "/acme/Gated-GGUF"),
        ("not a repo!", "not a Hugging Face repository name"),
        ("acme/TinyLlama-GGUF:Q3_K_S", "no Q3_K_S quantization"),
    ],
)
def test_cli_pull_errors_are_one_line_and_exit_2(
    hub_server: FakeHub, target: str, words: str
) -> None:
    result = tui_llm("pull", target)

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("tui-llm: error: ")]
    assert words in line and result.stderr.endswith(line + "\n")


def test_cli_pull_cut_connection_is_one_line_and_the_next_pull_resumes(
    hub_server: FakeHub,
) -> None:
    hub_server.cut_after_bytes = 512 * 1024
    hub_server.cuts_remaining = 1

    failed = tui_llm("pull", "acme/TinyLlama-GGUF:F32")
    pulled = tui_llm("pull", "acme/TinyLlama-GGUF:F32")

    assert failed.returncode == 2 and failed.stdout == ""
    (line,) = [line for line in failed.stderr.splitlines() if line.startswith("tui-llm: error: ")]
    assert "was cut after 512 KiB" in line and "try again to resume" in line
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert path.read_bytes() == served(hub_server, "acme/TinyLlama-GGUF", "TinyLlama-F32.gguf")
    last_get = [r for r in hub_server.requests if r.method == "GET"][-1]
    assert last_get.headers.get("Range") == f"bytes={512 * 1024}-", "the second pull resumed"


def test_cli_pull_offline_answers_from_the_cache(
    hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = download(request_for("acme/TinyLlama-GGUF", "Q8_0")).model_path
    hub_server.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    cached = tui_llm("pull", "acme/TinyLlama-GGUF:Q8_0")
    missing = tui_llm("pull", "acme/TinyLlama-GGUF:F16")

    assert (cached.returncode, cached.stdout.strip()) == (0, str(model))
    assert missing.returncode == 2 and "HF_HUB_OFFLINE" in missing.stderr
    assert hub_server.requests == []
