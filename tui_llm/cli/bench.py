"""``tui-llm bench MODEL``: the offload sweep on the command line, llama-bench style.

Rows print as each level finishes (a progress line on stderr on a terminal), then the whole
table again in the format asked for (``--json``, ``--csv``, ``--markdown``; else aligned text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace

from tui_llm.cli.args import UsageError, add_load_options, positive_int, resolve_model, say
from tui_llm.textsafe import for_stream


def add_bench_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    bench: argparse.ArgumentParser = sub.add_parser(
        "bench", help="tokens/s at each GPU offload level (the offload sweep)"
    )
    bench.add_argument("model", help="a .gguf file, or 'demo'")
    bench.add_argument(
        "--offload",
        default=None,
        metavar="LEVELS",
        help="levels: 0,8,16,all | auto | 0-32+8; for mixture-of-experts models LAYERS:EXPERTS "
        "keeps the expert weights of EXPERTS layers in RAM (all:12, all:all), all:~8 as many "
        "as give level 8's VRAM, and 'experts' adds all:all and all:~L for each level L "
        "(default: CPU only, four steps to all, auto; MoE models add the expert levels)",
    )
    bench.add_argument("--prompt-tokens", type=positive_int, default=512, metavar="N")
    bench.add_argument("--gen-tokens", type=positive_int, default=128, metavar="N")
    bench.add_argument("--repeat", type=positive_int, default=3, metavar="N")
    output = bench.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object at the end")
    output.add_argument("--csv", action="store_true")
    output.add_argument("--markdown", action="store_true")
    add_load_options(bench, offload=False)
    return bench


async def run_bench(args: argparse.Namespace) -> int:
    from tui_llm.catalog.gguf_reader import GGUFError
    from tui_llm.catalog.metadata import read_model_info
    from tui_llm.cli.chat import load_settings_from_args
    from tui_llm.engine.client import EngineClient, EngineError
    from tui_llm.engine.protocol import LoadSettings
    from tui_llm.gpu.free import free_for_load, read_gpu_memory
    from tui_llm.sweep import LevelResult, LevelSyntaxError, default_levels, parse_levels
    from tui_llm.sweep import table as sweep_table
    from tui_llm.sweep.machine import machine_info
    from tui_llm.sweep.run import SweepPlan, run_sweep

    model = resolve_model(args.model)
    try:
        info = read_model_info(model)
    except (GGUFError, OSError) as exc:
        raise UsageError(str(exc)) from None
    total = (info.n_layer or 0) + 1
    moe = (info.expert_count or 0) > 0
    try:
        levels = parse_levels(args.offload) if args.offload else default_levels(total, moe=moe)
    except LevelSyntaxError as exc:
        raise UsageError(f"--offload: {exc}") from None
    args.offload = None
    settings = load_settings_from_args(args, model)
    assert isinstance(settings, LoadSettings)
    plan = SweepPlan(
        model_path=model,
        total_layers=total,
        levels=tuple(levels),
        load=replace(settings, offload_layers=0),
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        repeats=args.repeat,
        moe=moe,
    )
    interactive = sys.stderr.isatty()
    client = EngineClient()
    try:
        ready = await client.start()
        machine = await asyncio.to_thread(machine_info, ready)

        def devices() -> tuple:  # type: ignore[type-arg]
            return client.loaded.devices if client.loaded is not None else ready.devices

        def free_gpu_bytes() -> int | None:
            gpu = read_gpu_memory()
            return gpu.free if gpu is not None else free_for_load([], devices())

        def has_gpu_device() -> bool:
            return bool(settings.rpc_servers) or any(d.kind != "cpu" for d in devices())

        def vram_used() -> int | None:
            gpu = read_gpu_memory()
            return None if gpu is None else gpu.total - gpu.free

        partial_rows: list[LevelResult] = []

        def on_level(row: LevelResult) -> None:
            partial_rows.append(row)
            if interactive:
                sys.stderr.write("\r\x1b[K")
            if not (args.json or args.csv or args.markdown):
                shown = sweep_table.row_cells(progress_result, row)
                print(for_stream("  ".join(cell for cell in shown if cell), sys.stdout))
                sys.stdout.flush()

        def on_progress(text: str) -> None:
            if interactive:
                sys.stderr.write("\r\x1b[K" + for_stream(f"tui-llm bench: {text}", sys.stderr))
                sys.stderr.flush()

        from tui_llm.sweep.records import SweepResult, SweepSettings

        progress_result = SweepResult(
            str(model), model.name, total,
            SweepSettings(plan.load, plan.prompt_tokens, plan.gen_tokens, plan.repeats),
            machine, 0.0, partial_rows,
        )  # fmt: skip
        say(f"tui-llm bench: {model.name}, levels {', '.join(s.label for s in levels)}")
        result = await run_sweep(
            client,
            plan,
            machine,
            free_gpu_bytes=free_gpu_bytes,
            has_gpu_device=has_gpu_device,
            vram_used=vram_used,
            on_level=on_level,
            on_progress=on_progress,
        )
    except EngineError as exc:
        say(f"tui-llm: {exc}")
        return 1
    finally:
        await client.close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif args.csv:  # names from the file: inert on a terminal, exact into a pipe or file
        sys.stdout.write(for_stream(sweep_table.as_csv(result), sys.stdout))
    elif args.markdown:
        print(for_stream(sweep_table.as_markdown(result), sys.stdout))
        print()
        print(for_stream(sweep_table.describe(result), sys.stdout))
    else:
        print()
        print(for_stream(sweep_table.as_text(result), sys.stdout))
        print(for_stream(sweep_table.describe(result), sys.stdout))
    return 0
