"""A sweep's rows as text: an aligned table for a terminal, Markdown, CSV, and JSON lines.

Columns as LM Studio's offload table and llama-bench show them: the level, GPU layers, prompt
and generation tokens/s (median, with the range of the repeats), speedup of generation against
CPU only, time to first token, load time, and memory per device.
"""

from __future__ import annotations

import csv
import io

from tui_llm.catalog.metadata import human_bytes
from tui_llm.sweep.records import LevelResult, Spread, SweepResult

COLUMNS = (
    "level",
    "GPU layers",
    "prompt tok/s",
    "gen tok/s",
    "speedup",
    "first token",
    "load",
    "memory",
)


def _rate(spread: Spread | None) -> str:
    if spread is None:
        return ""
    return f"{spread.median:.1f} ({spread.low:.1f}-{spread.high:.1f})"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def row_cells(result: SweepResult, row: LevelResult) -> list[str]:
    """One row's cells, in ``COLUMNS`` order; a skipped or failed level says why instead."""
    layers = "" if row.gpu_layers is None else f"{row.gpu_layers}/{result.total_layers}"
    if row.status != "ok":
        return [row.label, layers, "", "", "", "", "", f"{row.status}: {row.reason}"]
    speedup = result.speedup(row)
    memory = ", ".join(f"{device} {human_bytes(size)}" for device, size in row.bytes_by_device)
    if row.vram_used_bytes is not None:
        memory += f" (NVML used {human_bytes(row.vram_used_bytes)})"
    return [
        row.label,
        layers,
        _rate(row.prompt_tokens_per_s),
        _rate(row.gen_tokens_per_s),
        "" if speedup is None else f"{speedup:.2f}x",
        _seconds(row.time_to_first_token_s.median if row.time_to_first_token_s else None),
        _seconds(row.load_s),
        memory,
    ]


def as_text(result: SweepResult) -> str:
    """An aligned table for a terminal."""
    rows = [list(COLUMNS), *(row_cells(result, r) for r in result.levels)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def as_markdown(result: SweepResult) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in result.levels:
        cells = [cell.replace("|", "\\|") for cell in row_cells(result, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_csv(result: SweepResult) -> str:
    """Machine-readable: medians and ranges in their own columns, bytes as integers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "level", "gpu_layers", "status", "reason", "offloaded_layers",
            "prompt_tps", "prompt_tps_low", "prompt_tps_high",
            "gen_tps", "gen_tps_low", "gen_tps_high", "speedup",
            "ttft_s", "load_s", "gpu_bytes", "cpu_bytes", "vram_used_bytes", "n_cpu_moe",
        ]
    )  # fmt: skip
    for row in result.levels:
        pp, tg, ttft = row.prompt_tokens_per_s, row.gen_tokens_per_s, row.time_to_first_token_s
        cpu = sum(size for device, size in row.bytes_by_device if device.startswith("CPU"))
        gpu = sum(size for device, size in row.bytes_by_device if not device.startswith("CPU"))
        speedup = result.speedup(row)

        def num(value: float | None) -> str:
            return "" if value is None else f"{value:.4g}"

        writer.writerow(
            [
                row.label, row.gpu_layers, row.status, row.reason, row.offloaded_layers,
                num(pp.median if pp else None), num(pp.low if pp else None),
                num(pp.high if pp else None), num(tg.median if tg else None),
                num(tg.low if tg else None), num(tg.high if tg else None), num(speedup),
                num(ttft.median if ttft else None), num(row.load_s),
                gpu if row.bytes_by_device else "", cpu if row.bytes_by_device else "",
                row.vram_used_bytes if row.vram_used_bytes is not None else "",
                row.n_cpu_moe,
            ]
        )  # fmt: skip
    return out.getvalue()


def describe(result: SweepResult) -> str:
    """One paragraph: the model, the settings, the machine and the build the figures come from."""
    load = result.settings.load
    machine = result.machine
    gpus = ", ".join(machine.gpus) or "no NVIDIA GPU"
    devices = ", ".join(d.name for d in machine.devices) or "none"
    return (
        f"{result.model_name}: {result.settings.prompt_tokens} prompt and "
        f"{result.settings.gen_tokens} generated tokens, {result.settings.repeats} repeats; "
        f"n_ctx {load.n_ctx}, n_batch {load.n_batch}, n_ubatch {load.n_ubatch}, "
        f"threads {load.n_threads or 'default'}, KV {load.kv_cache_type}, "
        f"flash attention {'on' if load.flash_attn else 'off'}. CPU {machine.cpu}; {gpus}"
        f"{f' (driver {machine.driver})' if machine.driver else ''}; llama.cpp devices: "
        f"{devices}; llama-cpp-python {machine.llama_cpp_python}."
    )
