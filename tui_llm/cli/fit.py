"""``tui-llm fit MODEL``: the memory table for every offload level and the recommended level.

The GPU's free memory comes from NVML (``pynvml``, imported only here and only when run); without
a GPU the table still shows what each level would need on one, and the recommendation is the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tui_llm.catalog.metadata import human_bytes
from tui_llm.cli.args import positive_int, say
from tui_llm.gpu.free import GpuMemory, read_gpu_memory
from tui_llm.textsafe import for_stream

DEMO_ALIASES = ("demo", ":demo")


def _size(value: str) -> int:
    """A byte count such as 512M, 1.5G or 1073741824."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in units else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {value}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return int(number * units[unit])


def add_fit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``fit`` to the ``tui-llm`` subcommands (``subparsers`` from add_subparsers)."""
    from tui_llm.engine.protocol import KV_CACHE_TYPES

    fit = subparsers.add_parser(
        "fit",
        help="memory needed at each GPU offload level, and the level that fits now",
        description="Estimate GPU and CPU memory for every offload level of a model and "
        "recommend the most layers that fit the GPU's free memory.",
    )
    fit.add_argument("model", help="a .gguf file, or 'demo'")
    fit.add_argument("--ctx", type=positive_int, default=4096, metavar="N", help="context size")
    fit.add_argument("--batch", type=positive_int, default=512, metavar="N")
    fit.add_argument("--kv-type", choices=KV_CACHE_TYPES, default="f16")
    fit.add_argument("--flash-attn", action="store_true")
    fit.add_argument(
        "--margin",
        type=_size,
        default=None,
        metavar="BYTES",
        help="GPU memory to keep free (default 1G, less on small cards)",
    )
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    return fit  # type: ignore[no-any-return]


def _resolve(name: str) -> Path:
    if name in DEMO_ALIASES:
        from tui_llm.catalog.demo import demo_model_path

        return demo_model_path()
    return Path(name).expanduser()


def _fail(message: str) -> int:
    say(f"tui-llm: error: {' '.join(message.split())}", one_line=True)
    return 2


def run_fit(args: argparse.Namespace) -> int:
    """Print the table (or JSON) for ``args.model``; 2 with one line for a bad model."""
    from tui_llm.catalog.gguf_reader import GGUFError
    from tui_llm.catalog.metadata import read_model_info
    from tui_llm.engine.protocol import LoadSettings
    from tui_llm.fit import auto
    from tui_llm.fit.estimate import CUDA, NO_GPU, EstimateError, EstimateSettings, estimate

    path = _resolve(args.model)
    if not path.exists():
        return _fail(f"no such model file: {args.model}")
    if path.is_dir():
        return _fail(f"{args.model} is a folder, not a .gguf file")
    try:
        info = read_model_info(path)
    except (GGUFError, OSError) as exc:
        return _fail(str(exc))
    load = LoadSettings(
        model_path=str(path),
        n_ctx=args.ctx,
        n_batch=args.batch,
        n_ubatch=min(args.batch, 512),
        flash_attn=args.flash_attn,
        kv_cache_type=args.kv_type,
    )
    settings = EstimateSettings.from_load_settings(load)
    try:
        est = estimate(info, settings, CUDA)
    except (EstimateError, ValueError) as exc:
        return _fail(str(exc))
    gpu = read_gpu_memory()
    # without a GPU the table still shows a CUDA card's needs; the advice is for this machine
    advised = est if gpu else estimate(info, settings, NO_GPU)
    choice = auto.choose_offload(
        advised,
        gpu.free if gpu else None,
        total_gpu_bytes=gpu.total if gpu else None,
        margin_bytes=args.margin,
    )
    placement = auto.choose_placement(
        advised,
        [gpu.free] if gpu else None,
        total_bytes=[gpu.total] if gpu else None,
        margin_bytes=args.margin,
    )
    budget = gpu.free - choice.margin_bytes if gpu else None
    if args.json:
        out = _as_json(info.name, path, est, gpu, budget, choice)
        out["pairs"] = _pairs_json(est, budget)
        out["recommended"] = _placement_json(placement)
        print(json.dumps(out, indent=2))
        return 0
    text = _as_text(info.name, est, gpu, budget, choice)
    if est.is_moe:
        text = _moe_text(text, est, budget, placement)
    print(for_stream(text, sys.stdout))
    return 0


def _distinct_moe_counts(est: Any, level: int) -> list[int]:
    """Expert-layer counts that change anything at ``level``: 0, then past the CPU blocks."""
    if not est.is_moe or level == 0:
        return [0]
    on_cpu_anyway = max(est.n_layer + 1 - level, 0)
    return [0, *range(on_cpu_anyway + 1, est.n_layer + 1)]


def _pairs_json(est: Any, budget: int | None) -> list[dict[str, object]]:
    """Every (layers, expert layers in RAM) pair with its bytes per device and whether it fits
    the GPU now (pairs that place nothing differently from an earlier one are left out)."""
    rows: list[dict[str, object]] = []
    for level in range(est.max_level + 1):
        for moe in _distinct_moe_counts(est, level):
            pair = est.pair(level, moe)
            rows.append(
                {
                    "offload_layers": level,
                    "n_cpu_moe": moe,
                    "devices": [
                        {"name": name, **asdict(split), "total": split.total}
                        for name, split in pair.devices
                    ],
                    "cpu": {**asdict(pair.cpu), "total": pair.cpu.total},
                    "fits_now": _fits(pair.gpu.total, budget),
                }
            )
    return rows


def _placement_json(choice: Any) -> dict[str, object]:
    return {
        "offload_layers": choice.offload_layers,
        "n_cpu_moe": choice.n_cpu_moe,
        "reason": choice.reason,
        "fits": choice.fits,
        "devices": [
            {"name": name, "bytes": used, "budget": budget}
            for name, used, budget in zip(
                choice.device_names, choice.device_bytes, choice.device_budgets, strict=False
            )
        ],
        "gpu_bytes": choice.gpu_bytes,
        "cpu_bytes": choice.cpu_bytes,
        "shortfall_bytes": choice.shortfall_bytes,
    }


def _moe_text(text: str, est: Any, budget: int | None, choice: Any) -> str:
    """The level table followed by each level with every expert layer in RAM, and the advice
    as a (layers, expert layers) pair."""
    lines = text.splitlines()
    advice = next(i for i, line in enumerate(lines) if line.startswith("recommended:"))
    rows = [("level", "GPU, experts in RAM", "CPU, experts in RAM", "fits now")]
    for level in range(1, est.max_level + 1):
        pair = est.pair(level, est.n_layer)
        fits = _fits(pair.gpu.total, budget)
        rows.append(
            (
                "all" if level == est.max_level else str(level),
                human_bytes(pair.gpu.total),
                human_bytes(pair.cpu.total),
                "-" if fits is None else ("yes" if fits else "no"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    level_text = "all" if choice.offload_layers == est.max_level else str(choice.offload_layers)
    moe_text = f" --n-cpu-moe {choice.n_cpu_moe}" if choice.n_cpu_moe else ""
    head = lines[:advice]
    tail = lines[advice + 1 :]
    return "\n".join(
        [
            *head,
            f"mixture of experts: {est.expert_layers} layers with experts",
            "",
            *table,
            "",
            f"recommended: --offload {level_text}{moe_text} ({choice.reason})",
            *tail,
        ]
    )


def _fits(gpu_bytes: int, budget: int | None) -> bool | None:
    return None if budget is None else gpu_bytes <= budget


def _as_json(
    name: str, path: Path, est: Any, gpu: GpuMemory | None, budget: int | None, choice: Any
) -> dict[str, object]:
    return {
        "model": str(path),
        "name": name,
        "settings": asdict(est.settings),
        "kv_cells": est.kv_cells,
        "gpu": asdict(gpu) if gpu else None,
        "margin_bytes": choice.margin_bytes if gpu else None,
        "levels": [
            {
                "offload_layers": level.offload_layers,
                "gpu": {**asdict(level.gpu), "total": level.gpu.total},
                "cpu": {**asdict(level.cpu), "total": level.cpu.total},
                "fits_now": _fits(level.gpu.total, budget),
            }
            for level in est.levels
        ],
        "recommended": {
            "offload_layers": choice.offload_layers,
            "label": choice.label,
            "reason": choice.reason,
            "fits": choice.fits,
            "gpu_bytes": choice.gpu_bytes,
            "cpu_bytes": choice.cpu_bytes,
            "shortfall_bytes": choice.shortfall_bytes,
        },
        "problems": list(est.problems),
        "notes": list(est.notes),
    }


def _as_text(name: str, est: Any, gpu: GpuMemory | None, budget: int | None, choice: Any) -> str:
    s = est.settings
    kv = s.type_k if s.type_k == s.type_v else f"{s.type_k}/{s.type_v}"
    lines = [
        f"{name}: {est.n_layer} layers + output; context {s.n_ctx} "
        f"({est.kv_cells} cells), KV {kv}, flash attention {'on' if s.flash_attn else 'off'}",
    ]
    if gpu:
        lines.append(
            f"GPU: {gpu.name}, {human_bytes(gpu.free)} free of {human_bytes(gpu.total)}, "
            f"keeping {human_bytes(choice.margin_bytes)} free"
        )
    else:
        lines.append("no GPU found: CPU only (GPU columns: what a CUDA GPU would need)")
    rows = [("level", "GPU", "CPU", "fits now")]
    for level in est.levels:
        fits = _fits(level.gpu.total, budget)
        label = "all" if level.offload_layers == est.max_level else str(level.offload_layers)
        rows.append(
            (
                label if level.offload_layers else "0 (CPU)",
                human_bytes(level.gpu.total),
                human_bytes(level.cpu.total),
                "-" if fits is None else ("yes" if fits else "no"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines.append("")
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
    lines.append("")
    level_text = "all" if choice.offload_layers == est.max_level else str(choice.offload_layers)
    lines.append(f"recommended: --offload {level_text} ({choice.reason})")
    lines += [f"warning: {problem}" for problem in est.problems]
    lines += [f"note: {note}" for note in est.notes]
    return "\n".join(lines)
