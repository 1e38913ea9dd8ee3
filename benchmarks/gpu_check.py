"""The checks that need a real NVIDIA GPU, as one run (docs/GPU.md; ``scripts/gpu-check.sh``).

``python -m benchmarks.gpu_check --out DIR [--phase dense|moe] [--deadline-s S] [--small]``

- **dense** (issues 7, 8 and 11): a generated llama model of 7B shape (32 layers, 4096 wide,
  q4_0, 3.6 GiB written as random blocks) loaded by the app's engine at several offload levels:
  our estimate against the buffers llama.cpp reported and NVML's used memory; the KV cache carried
  across an offload change on CUDA (tokens restored, tokens evaluated by the next turn); then
  ``tui-llm bench`` at CPU only, four steps and all (512 prompt and 128 generated tokens, 3
  repeats), as JSON.
- **moe** (issue 12): a generated qwen3moe model of realistic shape (24 layers, 2048 wide, 32
  experts of width 1024, 4 used; q8_0, 4.8 GiB), and placements at equal VRAM: the VRAM of all
  layers with every expert in RAM, given to plain layer offload instead; a budget halfway to full
  offload, given to all layers with the first N expert layers in RAM, to layers only, and to the
  auto placement; CPU only and all on the GPU for reference. For each: tokens/s measured as the
  sweep measures (512 prompt, 128 generated, a warm-up and 2 repeats), the estimate, llama.cpp's
  buffers and NVML.

Everything is written under DIR as JSON (``dense.json``, ``sweep-*.json``, ``moe.json``) plus the
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


def make_moe(folder: Path, small: bool) -> Path:
    from tui_llm.catalog.generate import write_moe_gguf

    path = folder / ("qwen3moe-small-q8_0.gguf" if small else "qwen3moe-24l-32e-q8_0.gguf")
    if not path.exists():
        write_moe_gguf(
            path,
            n_layer=24,
            n_embd=256 if small else 2048,
            n_expert=32,
            n_expert_used=4,
            n_ff_exp=128 if small else 1024,
            n_head=16,
            n_head_kv=4,
            n_ctx=4096,
            tensor_type="q8_0",
            weights="blocks",
            seed=12,
            chat_template=None,
        )
    return path


def largest_within(budget: int, candidates: range, vram: Any) -> int:
    """The largest candidate whose estimated VRAM is within ``budget`` (the first if none)."""
    best = candidates[0]
    for value in candidates:
        if vram(value) <= budget:
            best = value
    return best


async def moe_checks(model: Path, out: Path, deadline_s: float) -> dict[str, Any]:
    from tui_llm import fit
    from tui_llm.engine.client import EngineClient
    from tui_llm.engine.logparse import totals_by_device
    from tui_llm.engine.protocol import LoadSettings

    base = LoadSettings(model_path=str(model), n_ctx=4096)
    est = fit.estimate_pair
    n_layer = 24
    top = n_layer + 1  # every block and the output layer

    def vram(layers: int, n_cpu_moe: int) -> int:
        pair = est(model, base, layers, n_cpu_moe)
        assert pair is not None
        return sum(pair[0])

    experts_out = vram(top, n_layer)
    full = vram(top, 0)
    half = (experts_out + full) // 2
    auto = fit.auto_placement_for_path(model, base, [half], margin_bytes=0)
    same_vram_layers = largest_within(experts_out, range(top + 1), lambda n: vram(n, 0))
    half_layers = largest_within(half, range(top + 1), lambda n: vram(n, 0))
    half_gpu_experts = largest_within(half, range(n_layer + 1), lambda k: vram(top, n_layer - k))
    placements: list[tuple[str, int, int]] = [
        ("CPU only", 0, 0),
        ("all layers, every expert in RAM", top, n_layer),
        ("layers only, same VRAM", same_vram_layers, 0),
        ("all layers, first N experts in RAM, half budget", top, n_layer - half_gpu_experts),
        ("layers only, half budget", half_layers, 0),
    ]
    if auto is not None:
        placements.append(("auto at the half budget", auto.offload_layers, auto.n_cpu_moe))
    placements.append(("all on the GPU", top, 0))
    result: dict[str, Any] = {
        "model": str(model),
        "size_bytes": model.stat().st_size,
        "budgets": {"experts_in_ram": experts_out, "half": half, "full": full},
        "auto_reason": auto.reason if auto is not None else None,
        "rows": [],
    }
    client = EngineClient(log_path=out / "engine-moe.log")
    await client.start()
    started = nvml_used()
    try:
        for name, layers, n_cpu_moe in placements:
            if elapsed() > deadline_s:
                say(f"moe: deadline reached before '{name}'")
                break
            settings = dataclasses.replace(base, offload_layers=layers, n_cpu_moe=n_cpu_moe)
            loaded = await client.load(settings, keep_kv=False)
            used = nvml_used()
            runs = [await client.bench(512, 128, seed=repeat) for repeat in range(3)][1:]
            pair = est(model, base, layers, n_cpu_moe)
            reported = totals_by_device(loaded.buffers, loaded.devices)
            row = {
                "placement": name,
                "offload_layers": layers,
                "n_cpu_moe": n_cpu_moe,
                "estimate_gpu": sum(pair[0]) if pair else None,
                "estimate_cpu": pair[1] if pair else None,
                "reported_by_device": reported,
                "nvml_delta_after_load": None
                if used is None or started is None
                else used - started,
                "nvml_delta_after_bench": None if started is None else (nvml_used() or 0) - started,
                "prompt_tok_s": [run.prompt_tokens_per_s for run in runs],
                "gen_tok_s": [run.gen_tokens_per_s for run in runs],
                "load_s": loaded.load_seconds,
            }
            result["rows"].append(row)
            write_json(out / "moe.json", result)
            gpu = sum(v for k, v in reported.items() if k.startswith("CUDA"))
            gen = max(run.gen_tokens_per_s for run in runs)
            prompt = max(run.prompt_tokens_per_s for run in runs)
            estimated = sum(pair[0]) if pair else 0
            say(
                f"moe {name} ({layers} layers, {n_cpu_moe} expert layers in RAM): gen {gen:.1f} "
                f"tok/s, prompt {prompt:.0f} tok/s; VRAM est {estimated / GIB:.3f} GiB, reported "
                f"{gpu / GIB:.3f} GiB"
            )
            await client.unload()
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
    parser.add_argument("--phase", choices=("dense", "moe"), default="dense")
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
    if args.phase == "moe":
        model = make_moe(args.models, args.small)
        say(f"wrote {model.name}: {model.stat().st_size / GIB:.2f} GiB")
        asyncio.run(moe_checks(model, args.out, args.deadline_s))
    say("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
