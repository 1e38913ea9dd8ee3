"""The command line: argument parsing only; builds the objects, hands them to the engine or app.

``tui-llm [MODEL]`` opens the app; the subcommands are the scriptable interface on the same
engine. Errors a user can cause exit 2 with one line on stderr and no traceback.

Output quotes outside text (model output, file names, GGUF metadata). What goes to stdout is made
inert on a terminal and left exact for a pipe (``textsafe.for_stream``); messages on stderr are
always made inert (``say``): they are for a person, and a log file is read on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from tui_llm import __version__
from tui_llm.cli.args import (
    Parser,
    UsageError,
    add_load_options,
    port_number,
    positive_int,
    resolve_model,
    say,
    stop_string,
)

SUBCOMMANDS = ("chat", "bench", "info", "demo-model", "rpc-server", "fit", "search", "pull")


def build_parser() -> argparse.ArgumentParser:
    """The subcommand parser (``tui-llm chat|info|...``)."""
    parser = Parser(prog="tui-llm", description="Chat with local GGUF models on llama.cpp.")
    parser.add_argument("--version", action="version", version=f"tui-llm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    add_load_options(chat)

    info = sub.add_parser("info", help="print a GGUF file's metadata")
    info.add_argument("model")
    info.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo-model", help="write the built-in demo model to PATH")
    demo.add_argument("path")

    rpc = sub.add_parser("rpc-server", help="serve this machine's device to other tui-llm hosts")
    rpc.add_argument("--host", default="127.0.0.1")
    rpc.add_argument("--port", type=port_number, default=50052)
    rpc.add_argument("--threads", type=positive_int, default=None)

    from tui_llm.cli.bench import add_bench_parser
    from tui_llm.cli.fit import add_fit_parser
    from tui_llm.cli.hub import add_hub_parsers

    add_bench_parser(sub)
    add_fit_parser(sub)
    add_hub_parsers(sub)
    return parser


def build_app_parser() -> argparse.ArgumentParser:
    """The parser for ``tui-llm [MODEL]``, which opens the app."""
    parser = Parser(
        prog="tui-llm",
        description="Chat with local GGUF models on llama.cpp.",
        epilog=f"subcommands: {', '.join(SUBCOMMANDS)} (tui-llm COMMAND --help)",
    )
    parser.add_argument("--version", action="version", version=f"tui-llm {__version__}")
    parser.add_argument("model", nargs="?", default=None, help="a .gguf file to open, or 'demo'")
    add_load_options(parser)
    return parser


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
            from tui_llm.cli.chat import run_chat

            return asyncio.run(run_chat(args))
        if args.command == "bench":
            from tui_llm.cli.bench import run_bench

            return asyncio.run(run_bench(args))
        if args.command == "info":
            from tui_llm.cli.files import run_info

            return run_info(args)
        if args.command == "demo-model":
            from tui_llm.cli.files import run_demo_model

            return run_demo_model(args)
        if args.command == "rpc-server":
            from tui_llm.cli.rpc import run_rpc_server

            return run_rpc_server(args)
        if args.command == "fit":
            from tui_llm.cli.fit import run_fit

            return run_fit(args)
        if args.command in ("search", "pull"):
            from tui_llm.cli.hub import run_pull, run_search

            return run_search(args) if args.command == "search" else run_pull(args)
        raise UsageError(f"unknown command {args.command}")
    except UsageError as exc:
        say(f"tui-llm: error: {exc}", one_line=True)
        return 2
    except KeyboardInterrupt:
        return 130
