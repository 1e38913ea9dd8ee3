"""The checks that need a real NVIDIA GPU, as one run (docs/GPU.md; ``scripts/gpu-check.sh``).

``python -m benchmarks.gpu_check --out DIR [--phase dense] [--deadline-s S]``

- **dense** (issues 7, 8 and 11): a generated llama model of 7B shape (32 layers, 4096 wide,
  q4_0, 3.6 GiB written as random blocks) loaded by the app's engine at several offload levels:
  our estimate against the buffers llama.cpp reported and NVML's used memory; the KV cache carried
  across an offload change on CUDA (tokens restored, tokens evaluated by the next turn); then
  ``tui-llm bench`` at CPU only, four steps and all (512 prompt and 128 generated tokens, 3
  repeats), as JSON.

Everything is written under DIR as JSON (``dense.json``, ``sweep-*.json``) plus the
engine logs, so a run that is cut short still leaves what it measured. No test depends on it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

START = time.monotonic()
GIB = 1 << 30


def elapsed() -> float:
    return time.monotonic() - START


def say(text: str) -> None:
    print(f"[{elapsed():6.1f} s] {text}", flush=True)


def nvml_used() -> int | None:
    """NVML's used memory on GPU 0 (bytes), or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:
        return None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def make_dense(folder: Path, small: bool, tensor_type: str = "q4_0") -> Path:
    from tui_llm.catalog.generate import write_llama_gguf

    size = "small" if small else "7b-shape"
    path = folder / f"llama-{size}-{tensor_type}.gguf"
    if not path.exists():
        write_llama_gguf(
            path,
            n_layer=32,
            n_embd=256 if small else 4096,
            n_head=32,
            n_ff=704 if small else 11008,
            n_ctx=4096,
            tensor_type=tensor_type,  # type: ignore[arg-type]
            weights="blocks",
            seed=7,
            chat_template=None,
        )
    return path


def level_row(
    loaded: Any, est: Any, used_load: int | None, used_gen: int | None, base: int | None
) -> dict[str, Any]:
    from tui_llm.engine.logparse import totals_by_device

    chosen = est.level(loaded.offloaded_layers)
    reported = totals_by_device(loaded.buffers, loaded.devices)
    by_kind: dict[str, dict[str, int]] = {}
    for buf in loaded.buffers:
        by_kind.setdefault(buf.device, {}).setdefault(buf.kind, 0)
        by_kind[buf.device][buf.kind] += buf.size_bytes
    gpu_reported = sum(size for name, size in reported.items() if name.startswith("CUDA"))
    return {
        "offloaded_layers": loaded.offloaded_layers,
        "total_layers": loaded.total_layers,
        "load_s": round(loaded.load_seconds, 3),
        "estimate_gpu": chosen.gpu.total,
        "estimate_cpu": chosen.cpu.total,
        "estimate_gpu_split": dataclasses.asdict(chosen.gpu),
        "estimate_cpu_split": dataclasses.asdict(chosen.cpu),
        "reported_by_device": reported,
        "reported_by_buffer": by_kind,
        "reported_gpu": gpu_reported,
        "estimate_error_gpu": chosen.gpu.total - gpu_reported,
        "nvml_used_after_load": used_load,
        "nvml_used_after_reply": used_gen,
        "nvml_baseline": base,
        "nvml_delta_after_load": None if used_load is None or base is None else used_load - base,
        "nvml_delta_after_reply": None if used_gen is None or base is None else used_gen - base,
    }


async def dense_checks(model: Path, out: Path) -> dict[str, Any]:
    from tui_llm.engine.client import EngineClient
    from tui_llm.engine.protocol import ChatMessage, LoadSettings, SamplingParams
    from tui_llm.fit.estimate import EstimateSettings, device_for_devices, estimate_file

    greedy = SamplingParams(temperature=0.0, max_tokens=32, seed=1)
    result: dict[str, Any] = {"model": str(model), "size_bytes": model.stat().st_size}
    base_before_engine = nvml_used()
    client = EngineClient(log_path=out / "engine-dense.log")
    ready = await client.start()
    result["devices"] = [dataclasses.asdict(d) for d in ready.devices]
    result["system_info"] = ready.system_info
    base = nvml_used()
    result["nvml_before_engine"] = base_before_engine
    result["nvml_engine_started"] = base
    rows = []
    try:
        for level in (0, 8, 16, 24, "all"):
            settings = LoadSettings(model_path=str(model), offload_layers=level, n_ctx=4096)
            loaded = await client.load(settings, keep_kv=False)
            used_load = nvml_used()
            await client.chat([ChatMessage("user", "Tell me about the sea.")], greedy)
            used_gen = nvml_used()
            est = estimate_file(
                model,
                EstimateSettings.from_load_settings(settings),
                device_for_devices(loaded.devices),
            )
            row = level_row(loaded, est, used_load, used_gen, base)
            row["level"] = level
            rows.append(row)
            load_delta = (row["nvml_delta_after_load"] or 0) / GIB
            reply_delta = (row["nvml_delta_after_reply"] or 0) / GIB
            say(
                f"level {level}: estimate GPU {row['estimate_gpu'] / GIB:.3f} GiB, reported "
                f"{row['reported_gpu'] / GIB:.3f} GiB, NVML +{load_delta:.3f} GiB after load, "
                f"+{reply_delta:.3f} GiB after a reply"
            )
            result["levels"] = rows
            write_json(out / "dense.json", result)
            await client.unload()
            result.setdefault("nvml_after_unload", []).append(nvml_used())

        # The KV cache carried across an offload change on CUDA: the same prompt again after the
        # reload must find all of it cached (a random model's reply need not re-tokenize to the
        # tokens it generated, so the check asks about the prompt, not a second turn).
        part = LoadSettings(model_path=str(model), offload_layers=16, n_ctx=4096)
        await client.load(part, keep_kv=False)
        prompt = [ChatMessage("user", "Tell me a long story about a lighthouse keeper.")]
        first = await client.chat(prompt, greedy)
        carried = await client.load(dataclasses.replace(part, offload_layers="all"), keep_kv=True)
        again = await client.chat(prompt, greedy)
        result["kv_carry"] = {
            "prompt_tokens": first.stats.prompt_tokens,
            "n_past_before_reload": first.n_past,
            "kv_restored_tokens": carried.kv_restored_tokens,
            "prompt_tokens_evaluated_after_reload": again.stats.prompt_tokens_evaluated,
            "same_reply": again.text == first.text,
        }
        say(f"KV carry: {result['kv_carry']}")
        write_json(out / "dense.json", result)
    finally:
        await client.close()
    return result


def run_sweep(model: Path, out: Path, name: str, levels: str, repeat: int, timeout: float) -> None:
    command = [
        sys.executable, "-m", "tui_llm", "bench", str(model), "--offload", levels,
        "--repeat", str(repeat), "--json",
    ]  # fmt: skip
    say("sweep: " + " ".join(command[1:]))
    with open(out / f"sweep-{name}.log", "wb") as log:
        try:
            done = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=log, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            say(f"sweep {name}: cut at {timeout:.0f} s")
            return
    (out / f"sweep-{name}.json").write_bytes(done.stdout)
    say(f"sweep {name}: exit {done.returncode}, {len(done.stdout)} bytes of JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phase", choices=("dense",), default="dense")
    parser.add_argument("--models", type=Path, default=Path("/tmp/tui-llm-gpu-models"))
    parser.add_argument("--deadline-s", type=float, default=420.0)
    parser.add_argument("--small", action="store_true", help="a 256-wide model: a dry run here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.models.mkdir(parents=True, exist_ok=True)
    for name in ("CONFIG", "DATA", "STATE", "LOG"):
        os.environ.setdefault(f"TUI_LLM_{name}_DIR", str(args.models / name.lower()))
    say(f"nvml used at start: {nvml_used()}")
    if args.phase in ("dense", "all"):
        model = make_dense(args.models, args.small)
        say(f"wrote {model.name}: {model.stat().st_size / GIB:.2f} GiB")
        asyncio.run(dense_checks(model, args.out))
        left = args.deadline_s - elapsed()
        run_sweep(model, args.out, "q4_0", "0,8,16,24,all", 3, max(30.0, left - 15))
        if args.deadline_s - elapsed() > 120:  # time left: the same at q8_0, fewer levels
            model = make_dense(args.models, args.small, "q8_0")
            say(f"wrote {model.name}: {model.stat().st_size / GIB:.2f} GiB")
            run_sweep(model, args.out, "q8_0", "0,16,all", 2, args.deadline_s - elapsed() - 10)
    say("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
