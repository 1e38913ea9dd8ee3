"""Command line: argument parsing only; builds the objects and hands them to the engine or the app.

``tui-llm [MODEL]`` opens the app; the subcommands are the scriptable interface on the same
engine. Errors a user can cause exit 2 with one line on stderr and no traceback.

Output quotes outside text (model output, file names, GGUF metadata). What goes to stdout is made
inert on a terminal and left exact for a pipe (``textsafe.for_stream``); messages on stderr are
always made inert (``say``): they are for a person, and a log file is read on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

from tui_llm import __version__
from tui_llm.textsafe import for_stream, make_inert

SUBCOMMANDS = ("chat", "info", "demo-model", "rpc-server", "fit", "search", "pull")
DEMO_ALIASES = ("demo", ":demo")


class UsageError(Exception):
    """A bad argument or model; printed as one line, exit status 2."""


def say(message: str, *, one_line: bool = False) -> None:
    """A message for the person at the terminal, on stderr, with outside text in it made inert."""
    print(make_inert(message, one_line=one_line), file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_offload(value: str) -> int | str:
    """``all``, ``auto`` or a non-negative layer count."""
    if value in ("all", "auto"):
        return value
    try:
        layers = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"offload must be a number, 'all' or 'auto': {value}"
        ) from None
    if layers < 0:
        raise argparse.ArgumentTypeError("offload must be 0 or more layers")
    return layers


def positive_int(value: str) -> int:
    """An argparse type: a whole number above zero."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def stop_string(value: str) -> str:
    """An argparse type: a stop string, which cannot be empty (it would end every reply)."""
    if not value:
        raise argparse.ArgumentTypeError("a stop string cannot be empty")
    return value


def _rpc_list(value: str) -> tuple[str, ...]:
    servers = tuple(s.strip() for s in value.split(",") if s.strip())
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"RPC server must be HOST:PORT: {server}")
    return servers


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    from tui_llm.engine.chat_format import format_names
    from tui_llm.engine.protocol import KV_CACHE_TYPES

    parser.add_argument(
        "--offload",
        type=parse_offload,
        default=None,
        metavar="N|all|auto",
        help="layers on the GPU (0 .. n_layer+1, 'all', or 'auto')",
    )
    parser.add_argument(
        "--ctx", type=positive_int, default=None, metavar="N", help="context size in tokens"
    )
    parser.add_argument("--batch", type=positive_int, default=None, metavar="N")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N")
    parser.add_argument("--flash-attn", action="store_true", default=None)
    parser.add_argument("--kv-type", choices=KV_CACHE_TYPES, default=None)
    parser.add_argument("--no-mmap", action="store_true")
    parser.add_argument(
        "--rpc",
        type=_rpc_list,
        default=(),
        metavar="HOST:PORT[,...]",
        help="add llama.cpp RPC servers as devices to offload to",
    )
    parser.add_argument(
        "--chat-format",
        choices=format_names(),
        default=None,
        help="prompt format when the model has no chat template",
    )


def build_parser() -> argparse.ArgumentParser:
    """The subcommand parser (``tui-llm chat|info|...``)."""
    parser = _Parser(prog="tui-llm", description="Chat with local GGUF models on llama.cpp.")
    parser.add_argument("--version", action="version", version=f"tui-llm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    chat = sub.add_parser("chat", help="one reply to a prompt, streamed to stdout")
    chat.add_argument("model", help="a .gguf file, or 'demo' for the built-in demo model")
    chat.add_argument("--prompt", required=True)
    chat.add_argument("--system", default=None, help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--seed", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=0.8)
    chat.add_argument("--top-p", type=float, default=0.95)
    chat.add_argument("--top-k", type=int, default=40)
    chat.add_argument("--min-p", type=float, default=0.05)
    chat.add_argument("--repeat-penalty", type=float, default=1.1)
    chat.add_argument(
        "--stop", action="append", type=stop_string, default=[], help="stop string (repeatable)"
    )
    chat.add_argument(
        "--json", action="store_true", help="print one JSON object (text and reasoning apart)"
    )
    chat.add_argument(
        "--hide-thinking",
        action="store_true",
        help="leave out a reasoning model's thinking (shown on stderr by default)",
    )
    _add_load_options(chat)

    info = sub.add_parser("info", help="print a GGUF file's metadata")
    info.add_argument("model")
    info.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo-model", help="write the built-in demo model to PATH")
    demo.add_argument("path")

    rpc = sub.add_parser("rpc-server", help="serve this machine's device to other tui-llm hosts")
    rpc.add_argument("--host", default="127.0.0.1")
    rpc.add_argument("--port", type=int, default=50052)
    rpc.add_argument("--threads", type=positive_int, default=None)

    from tui_llm.catalog.hub_cli import add_hub_parsers
    from tui_llm.fit.cli import add_fit_parser

    add_fit_parser(sub)
    add_hub_parsers(sub)
    return parser


def build_app_parser() -> argparse.ArgumentParser:
    """The parser for ``tui-llm [MODEL]``, which opens the app."""
    parser = _Parser(
        prog="tui-llm",
        description="Chat with local GGUF models on llama.cpp.",
        epilog=f"subcommands: {', '.join(SUBCOMMANDS)} (tui-llm COMMAND --help)",
    )
    parser.add_argument("--version", action="version", version=f"tui-llm {__version__}")
    parser.add_argument("model", nargs="?", default=None, help="a .gguf file to open, or 'demo'")
    _add_load_options(parser)
    return parser


def resolve_model(name: str) -> Path:
    """A model argument as a path; ``demo`` writes the demo model on first use."""
    if name in DEMO_ALIASES:
        from tui_llm.catalog.demo import demo_model_path

        return demo_model_path()
    path = Path(name).expanduser()
    if not path.exists():
        raise UsageError(f"no such model file: {name}")
    if path.is_dir():
        raise UsageError(f"{name} is a folder, not a .gguf file")
    return path


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


async def _run_chat(args: argparse.Namespace) -> int:
    from tui_llm.catalog.gguf_reader import GGUFError
    from tui_llm.catalog.metadata import read_model_info
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
        done: DoneEvent | None = None
        thinking_shown = False
        async for event in client.generate(messages, sampling):
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
            print(
                f"[{stats.generated_tokens} tokens, {thinking}"
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


def _run_info(args: argparse.Namespace) -> int:
    from tui_llm.catalog.gguf_reader import GGUFError
    from tui_llm.catalog.metadata import format_info, info_to_json, read_model_info

    model = resolve_model(args.model)
    try:
        info = read_model_info(model)
    except (GGUFError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(info_to_json(info), indent=2))
    else:
        print(for_stream(format_info(info), sys.stdout))
    return 0


def _run_demo_model(args: argparse.Namespace) -> int:
    from tui_llm.catalog.table_models import write_demo_model

    path = Path(args.path).expanduser()
    if path.is_dir():
        path = path / "tui-llm-demo-bigram.gguf"
    try:
        written = write_demo_model(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(for_stream(str(written), sys.stdout))
    return 0


def _run_rpc_server(args: argparse.Namespace) -> int:
    from tui_llm.engine.native import serve_rpc, served_device_name, supports_rpc

    if not supports_rpc():
        raise UsageError(
            "this llama-cpp-python has no RPC backend; reinstall with "
            'CMAKE_ARGS="-DGGML_RPC=on" pip install --no-cache-dir --force-reinstall '
            "llama-cpp-python"
        )
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    say(f"tui-llm rpc-server: serving {served_device_name()} on {args.host}:{args.port}")
    if not loopback:
        print(
            "tui-llm rpc-server: WARNING: the llama.cpp RPC protocol has no authentication or "
            "encryption; anyone who can reach this port can use this machine's device. "
            "Expose it only on a trusted network.",
            file=sys.stderr,
        )
    serve_rpc(f"{args.host}:{args.port}", args.threads or os.cpu_count() or 1)
    return 0


def _run_app(argv: Sequence[str]) -> int:
    args = build_app_parser().parse_args(list(argv))
    model = resolve_model(args.model) if args.model else None
    from tui_llm.launch import run_app

    return run_app(model=model, args=args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tui-llm`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if not arguments or arguments[0] not in (*SUBCOMMANDS, "--version"):
            return _run_app(arguments)
        args = build_parser().parse_args(arguments)
        if args.command == "chat":
            return asyncio.run(_run_chat(args))
        if args.command == "info":
            return _run_info(args)
        if args.command == "demo-model":
            return _run_demo_model(args)
        if args.command == "rpc-server":
            return _run_rpc_server(args)
        if args.command == "fit":
            from tui_llm.fit.cli import run_fit

            return run_fit(args)
        if args.command in ("search", "pull"):
            from tui_llm.catalog.hub_cli import run_pull, run_search

            return run_search(args) if args.command == "search" else run_pull(args)
        raise UsageError(f"unknown command {args.command}")
    except UsageError as exc:
        say(f"tui-llm: error: {exc}", one_line=True)
        return 2
    except KeyboardInterrupt:
        return 130
