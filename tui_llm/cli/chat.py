"""``tui-llm chat MODEL --prompt …``: one reply, streamed; thinking on stderr; ``--json``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tui_llm.cli.args import UsageError, placement_from_args, resolve_model, say
from tui_llm.textsafe import for_stream

if TYPE_CHECKING:
    from tui_llm.context_fit import OverflowPolicy


def load_settings_from_args(args: argparse.Namespace, model: Path) -> object:
    """``LoadSettings`` from the common load options (defaults from ``LoadSettings``)."""
    from tui_llm.engine.protocol import LoadSettings

    defaults = LoadSettings(model_path=str(model))
    offload = args.offload if args.offload is not None else defaults.offload_layers
    settings = LoadSettings(
        model_path=os.path.abspath(model),  # symlinks kept: a shard's name finds the others
        offload_layers=0 if offload == "auto" else offload,
        n_ctx=args.ctx or defaults.n_ctx,
        n_batch=args.batch or defaults.n_batch,
        n_ubatch=min(args.batch or defaults.n_ubatch, defaults.n_ubatch),
        n_threads=args.threads,
        flash_attn=bool(args.flash_attn),
        kv_cache_type=args.kv_type or defaults.kv_cache_type,
        use_mmap=not args.no_mmap,
        rpc_servers=tuple(args.rpc),
        chat_format=args.chat_format,
        **placement_from_args(args),
    )
    if offload == "auto":
        from dataclasses import replace

        from tui_llm.fit import auto_offload_for_path
        from tui_llm.gpu.free import read_gpu_memory

        gpu = read_gpu_memory()
        choice = auto_offload_for_path(model, settings, gpu.free if gpu else None)
        layers, reason = choice if choice is not None else (0, "no estimate: CPU only")
        say(f"tui-llm: --offload auto: {layers} layers ({reason})")
        settings = replace(settings, offload_layers=layers)
    return settings


def overflow_policy(args: argparse.Namespace) -> OverflowPolicy:
    """``--context-overflow``, else the settings' ``[chat] context_overflow`` (a bad settings
    file is said once and its defaults used)."""
    if args.context_overflow is not None:
        return cast("OverflowPolicy", args.context_overflow)
    from tui_llm.config import load_settings

    settings, warning = load_settings()
    if warning:
        say(f"tui-llm: {warning}")
    return settings.context_overflow


async def run_chat(args: argparse.Namespace) -> int:
    from tui_llm.catalog.gguf_reader import GGUFError
    from tui_llm.catalog.metadata import read_model_info
    from tui_llm.context_fit import ContextOverflow, engine_counter, plan_context, reply_reserve
    from tui_llm.engine.client import EngineClient, EngineError
    from tui_llm.engine.protocol import ChatMessage, DoneEvent, LoadSettings, SamplingParams

    model = resolve_model(args.model)
    try:
        read_model_info(model)
    except GGUFError as exc:
        raise UsageError(str(exc)) from None
    settings = load_settings_from_args(args, model)
    assert isinstance(settings, LoadSettings)
    from tui_llm.fit import too_big_reason
    from tui_llm.gpu.free import read_gpu_memory

    gpu = read_gpu_memory()
    too_big = too_big_reason(model, settings, gpu.free if gpu else None)
    if too_big is not None:
        raise UsageError(f"{model.name} cannot load here: {too_big}")
    sampling = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty,
        max_tokens=args.max_tokens,
        seed=args.seed,
        stop=tuple(args.stop),
    )
    messages = []
    if args.system:
        messages.append(ChatMessage("system", args.system))
    messages.append(ChatMessage("user", args.prompt))
    client = EngineClient()
    try:
        await client.start()
        try:
            loaded = await client.load(settings)
        except EngineError as exc:
            raise UsageError(str(exc)) from None
        if loaded.chat_template_warning:
            say(f"tui-llm: note: {loaded.chat_template_warning}")
        try:
            plan = await plan_context(
                args.system or "",
                messages[1:] if args.system else messages,
                engine_counter(client),
                sampling.max_tokens,
                overflow_policy(args),
            )
        except ContextOverflow as exc:
            say(f"tui-llm: not sent: {exc} (raise it with --ctx)")
            return 1
        if plan.reply_room < reply_reserve(sampling.max_tokens, plan.n_ctx) or plan.trimmed:
            say(
                f"tui-llm: note: the prompt is {plan.prompt_tokens} tokens of the context's "
                f"{plan.n_ctx}: the reply has room for {plan.reply_room}"
            )
        done: DoneEvent | None = None
        thinking_shown = False
        async for event in client.generate(plan.messages, sampling):
            if isinstance(event, DoneEvent):
                done = event
                continue
            if args.json:
                continue
            if event.reasoning and not args.hide_thinking:
                thinking_shown = True
                sys.stderr.write(for_stream(event.reasoning, sys.stderr))
                sys.stderr.flush()
            if event.text:
                if thinking_shown:
                    sys.stderr.write("\n")  # the thinking ends; the answer follows on stdout
                    thinking_shown = False
                sys.stdout.write(for_stream(event.text, sys.stdout))
                sys.stdout.flush()
        assert done is not None
        if args.json:
            result = {
                "text": done.text,
                "reasoning": done.reasoning,
                "finish_reason": done.finish_reason,
                "stats": asdict(done.stats),
                "load": asdict(loaded.settings),
                "offloaded_layers": loaded.offloaded_layers,
                "total_layers": loaded.total_layers,
                "buffers": [asdict(b) for b in loaded.buffers],
                "devices": [asdict(d) for d in loaded.devices],
                "chat_template": loaded.chat_template_source,
                "load_seconds": loaded.load_seconds,
                "log_path": str(client.log_path),
            }
            print(json.dumps(result, indent=2))
        else:
            sys.stdout.write("\n")
            stats = done.stats
            thinking = ""
            if stats.reasoning_tokens:
                first_answer = stats.time_to_first_answer_s
                thinking = f"{stats.reasoning_tokens} thinking + {stats.answer_tokens} answer, " + (
                    f"first answer token {first_answer * 1000:.0f} ms, "
                    if first_answer is not None
                    else ""
                )
            ended = {"length": ", max tokens reached", "context": ", context full"}.get(
                done.finish_reason, ""
            )
            print(
                f"[{stats.generated_tokens} tokens{ended}, {thinking}"
                f"{stats.generation_tokens_per_s:.1f} tok/s, "
                f"first token {stats.time_to_first_token_s * 1000:.0f} ms, "
                f"prompt {stats.prompt_tokens} tokens]",
                file=sys.stderr,
            )
        return 0
    except EngineError as exc:
        say(f"tui-llm: {exc}")
        return 1
    finally:
        await client.close()
