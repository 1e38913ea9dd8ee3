"""What every ``tui-llm`` subcommand shares: argument types, the load options, the usage error,
the model argument, and how a message reaches the person at the terminal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from tui_llm.textsafe import make_inert

DEMO_ALIASES = ("demo", ":demo")


class UsageError(Exception):
    """A bad argument or model; printed as one line, exit status 2."""


def say(message: str, *, one_line: bool = False) -> None:
    """A message for the person at the terminal, on stderr, with outside text in it made inert."""
    print(make_inert(message, one_line=one_line), file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting."""

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


def rpc_list(value: str) -> tuple[str, ...]:
    """An argparse type: comma-separated RPC servers, each ``HOST:PORT`` with a port 1-65535."""
    from tui_llm.engine.rpc_endpoint import EndpointError, parse_endpoint

    servers = []
    for server in (s.strip() for s in value.split(",") if s.strip()):
        try:
            servers.append(str(parse_endpoint(server)))
        except EndpointError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not servers:
        raise argparse.ArgumentTypeError(f"no RPC server in {value!r}")
    return tuple(servers)


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {value!r}")
    return int(value)


def add_load_options(parser: argparse.ArgumentParser, offload: bool = True) -> None:
    """The load options every model-loading command takes (``offload=False``: the command
    reads ``--offload`` its own way, as ``bench`` does)."""
    from tui_llm.engine.chat_format import format_names
    from tui_llm.engine.protocol import KV_CACHE_TYPES

    if offload:
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
        type=rpc_list,
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
