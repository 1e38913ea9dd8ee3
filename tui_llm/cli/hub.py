"""``tui-llm search QUERY`` and ``tui-llm pull REPO[:QUANT|:FILE]``: the Hub from the command line.

Errors are one line on stderr and exit status 2; the local path of a pulled model is the only
thing written to stdout, so ``tui-llm chat "$(tui-llm pull org/repo)"`` works.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from tui_llm.catalog.hub import (
    HubError,
    HubModel,
    find_option,
    list_repo_ggufs,
    parse_repo_target,
    pick_best_option,
    quantization_from_name,
    search_models,
    size_fit_badge,
)
from tui_llm.catalog.hub_cache import CachedGGUF, list_cached_ggufs
from tui_llm.catalog.hub_download import DownloadProgress, DownloadRequest, download
from tui_llm.catalog.metadata import human_bytes, human_count
from tui_llm.cli.args import positive_int, say
from tui_llm.gpu.free import read_gpu_memory
from tui_llm.textsafe import for_stream, make_inert

_GIB = 1024**3
_BAR_WIDTH = 24
_PLAIN_INTERVAL_S = 2.0


def _gib(value: str) -> int:
    try:
        gib = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of GiB: {value}") from None
    if gib < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return int(gib * _GIB)


def add_hub_parsers(subparsers: Any) -> None:
    """Add the ``search`` and ``pull`` subcommands to an argparse subparsers object."""
    search = subparsers.add_parser("search", help="search GGUF models on the Hugging Face Hub")
    search.add_argument("query", help="words in the repository name, e.g. 'llama 8b'")
    search.add_argument("--limit", type=positive_int, default=20, metavar="N")
    search.add_argument("--json", action="store_true", help="print a JSON list")

    pull = subparsers.add_parser(
        "pull", help="download a GGUF model into the Hugging Face cache and print its path"
    )
    pull.add_argument(
        "target",
        metavar="REPO[:QUANT|:FILE]",
        help="e.g. org/Model-GGUF, org/Model-GGUF:Q4_K_M or org/Model-GGUF:model-Q4_K_M.gguf "
        "(without QUANT: the largest that fits free GPU memory, else RAM)",
    )
    pull.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    pull.add_argument(
        "--vram", type=_gib, default=None, metavar="GIB", help="free GPU memory to plan for"
    )
    pull.add_argument("--ram", type=_gib, default=None, metavar="GIB", help="free RAM to plan for")


def _error(message: str) -> int:
    say(f"tui-llm: error: {message}", one_line=True)
    return 2


def _model_json(model: HubModel) -> dict[str, object]:
    return {
        "repo_id": model.repo_id,
        "downloads": model.downloads,
        "likes": model.likes,
        "last_modified": model.last_modified.isoformat() if model.last_modified else None,
        "parameter_count": model.parameter_count,
        "architecture": model.architecture,
        "context_length": model.context_length,
        "gated": model.gated,
    }


def _table(models: Sequence[HubModel], inert: bool = False) -> str:
    """The search results as aligned columns; ``inert``: names made inert before aligning."""

    def shown(text: str) -> str:
        return make_inert(text, one_line=True) if inert else text

    rows = [("REPOSITORY", "PARAMS", "ARCH", "DOWNLOADS", "LIKES", "UPDATED")]
    for model in models:
        rows.append(
            (
                shown(model.repo_id) + (" (gated)" if model.gated else ""),
                human_count(model.parameter_count) if model.parameter_count else "-",
                shown(model.architecture or "-"),
                human_count(model.downloads),
                human_count(model.likes),
                model.last_modified.date().isoformat() if model.last_modified else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def run_search(args: argparse.Namespace) -> int:
    """``tui-llm search QUERY [--json]``."""
    try:
        models = search_models(args.query, limit=args.limit)
    except HubError as exc:
        return _error(str(exc))
    if args.json:
        print(json.dumps([_model_json(m) for m in models], indent=2))
    elif not models:
        say(f"no GGUF models match {args.query!r}")
    else:
        text = _table(models, inert=sys.stdout.isatty())
        print(for_stream(text, sys.stdout))
    return 0


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def format_progress(event: DownloadProgress) -> str:
    """``[#####-----]  45%  1.2 GiB / 2.6 GiB  12 MiB/s  ETA 1:02`` (parts unknown are left out)."""
    parts = []
    if event.total_bytes:
        fraction = min(1.0, event.done_bytes / event.total_bytes)
        filled = int(fraction * _BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
        parts.append(f"{human_bytes(event.done_bytes)} / {human_bytes(event.total_bytes)}")
    else:
        parts.append(human_bytes(event.done_bytes))
    if event.bytes_per_s:
        parts.append(f"{human_bytes(int(event.bytes_per_s))}/s")
    if event.eta_s is not None:
        parts.append(f"ETA {_duration(event.eta_s)}")
    return "  ".join(parts)


class _ProgressLine:
    """A progress bar redrawn in place on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._last_plain = 0.0
        self._drawn = False

    def update(self, event: DownloadProgress) -> None:
        line = format_progress(event)
        if self.live:
            self.stream.write(f"\r{line}\x1b[K")
            self._drawn = True
        elif time.monotonic() - self._last_plain >= _PLAIN_INTERVAL_S or (
            event.total_bytes is not None and event.done_bytes >= event.total_bytes
        ):
            self._last_plain = time.monotonic()
            self.stream.write(f"{line}\n")
        self.stream.flush()

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _free_vram() -> int | None:
    """Free memory of the GPU with the most room (the one rule in ``tui_llm.gpu.free``: a plan
    must fit one GPU, not the sum of several), or None without NVML."""
    gpu = read_gpu_memory()
    return gpu.free if gpu is not None else None


def _free_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _cached_match(repo_id: str, selector: str | None) -> CachedGGUF | None:
    """The one cached model of `repo_id` that `selector` names (any, if it names none)."""
    matches = [
        cached
        for cached in list_cached_ggufs()
        if cached.repo_id == repo_id
        and (
            selector is None
            or selector in (cached.filename, cached.filename.rsplit("/", 1)[-1])
            or quantization_from_name(cached.filename) == selector.upper()
        )
    ]
    return matches[0] if len(matches) == 1 else None


def run_pull(args: argparse.Namespace) -> int:
    """``tui-llm pull REPO[:QUANT|:FILE]``: download, validate, print the local path."""
    progress = _ProgressLine(sys.stderr)
    try:
        repo_id, selector = parse_repo_target(args.target)
    except HubError as exc:
        return _error(str(exc))
    try:
        repo = list_repo_ggufs(repo_id, revision=args.revision)
        if not repo.options:
            return _error(f"{repo_id} has no GGUF model files")
        vram = args.vram if args.vram is not None else _free_vram()
        ram = args.ram if args.ram is not None else _free_ram()
        if selector is not None:
            option = find_option(repo, selector)
        else:
            picked = pick_best_option(repo.options, free_vram_bytes=vram, free_ram_bytes=ram)
            if picked is None:
                smallest = repo.options[0]
                return _error(
                    f"no model in {repo_id} fits free memory (smallest: {smallest.quantization}, "
                    f"{smallest.size_text}); name one: tui-llm pull {repo_id}:QUANT"
                )
            option = picked
        badge = size_fit_badge(vram, ram)(option.size_bytes or 0, repo.gguf)
        shards = f", {len(option.filenames)} shards" if option.is_split else ""
        say(f"{repo_id}: {option.quantization} {option.name} ({option.size_text}{shards}, {badge})")
        result = download(DownloadRequest.for_option(option), on_progress=progress.update)
    except HubError as exc:
        progress.end()
        cached = _cached_match(repo_id, selector) if exc.kind == "offline" else None
        if cached is None:
            return _error(str(exc))
        say(f"tui-llm: offline: using the cached {cached.filename}")
        print(for_stream(str(cached.path), sys.stdout))
        return 0
    except KeyboardInterrupt:
        progress.end()
        print(
            "tui-llm: interrupted; the partial download is kept and resumes on the next pull",
            file=sys.stderr,
        )
        return 130
    progress.end()
    print(for_stream(str(result.model_path), sys.stdout))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tui_llm.cli.hub search|pull ...``, as ``tui-llm search|pull``."""
    parser = argparse.ArgumentParser(prog="tui-llm")
    add_hub_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_search(args) if args.command == "search" else run_pull(args)


if __name__ == "__main__":
    sys.exit(main())
