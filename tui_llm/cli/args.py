"""What every ``tui-llm`` subcommand shares: argument types, the load options, the usage error,
the model argument, and how a message reaches the person at the terminal."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

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


def non_negative_int(value: str) -> int:
    """An argparse type: a whole number, zero or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return number


def tensor_override_list(value: str) -> tuple[tuple[str, str], ...]:
    """An argparse type: llama.cpp's ``-ot`` value, ``PATTERN=BUFFER_TYPE[,...]``.

    Each pattern must be a regular expression; the buffer type (``CPU``, ``CUDA0``, ``RPC1`` or
    ``RPC0[host:port]``) is checked when the model loads, where the devices are known.
    """
    pairs = []
    for item in value.split(","):
        pattern, equals, buffer_type = item.rpartition("=")
        if not equals or not pattern or not buffer_type.strip():
            raise argparse.ArgumentTypeError(f"override must be PATTERN=BUFFER_TYPE: {item}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise argparse.ArgumentTypeError(f"bad pattern {pattern!r}: {exc}") from None
        pairs.append((pattern, buffer_type.strip()))
    return tuple(pairs)


def tensor_split_list(value: str) -> tuple[float, ...]:
    """An argparse type: proportions per device, ``1,3``; none negative, at least one above 0."""
    try:
        parts = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tensor split must be numbers like 1,3: {value}"
        ) from None
    if any(part < 0 or part != part for part in parts) or not any(parts):
        raise argparse.ArgumentTypeError(
            f"tensor split needs proportions of 0 or more, one above 0: {value}"
        )
    return parts


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    """Where the weights go beyond the layer count: MoE experts on the CPU, tensor overrides,
    the split between several devices (``placement_from_args`` reads them)."""
    experts = parser.add_mutually_exclusive_group()
    experts.add_argument(
        "--cpu-moe",
        dest="n_cpu_moe",
        action="store_const",
        const="all",
        default=None,
        help="keep every mixture-of-experts layer's expert weights in RAM",
    )
    experts.add_argument(
        "--n-cpu-moe",
        dest="n_cpu_moe",
        type=non_negative_int,
        metavar="N",
        help="keep the expert weights of the first N layers in RAM",
    )
    parser.add_argument(
        "-ot",
        "--override-tensor",
        dest="tensor_overrides",
        type=tensor_override_list,
        action="append",
        default=[],
        metavar="PATTERN=BUFT",
        help="put tensors whose names match PATTERN on a buffer type (CPU, CUDA0, RPC1, ...); "
        "repeatable, the first match wins",
    )
    parser.add_argument(
        "--tensor-split",
        type=tensor_split_list,
        default=None,
        metavar="P,P,...",
        help="proportions of the model per GPU, in device order (e.g. 1,3)",
    )
    parser.add_argument(
        "--split-mode",
        choices=("layer", "row", "none"),
        default=None,
        help="split between GPUs by layer, by rows of each matrix, or not at all",
    )
    parser.add_argument(
        "--main-gpu",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="the GPU for the whole model (--split-mode none) or its small tensors (row)",
    )


def placement_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``LoadSettings`` fields the placement options set (only those given)."""
    values: dict[str, Any] = {}
    if getattr(args, "n_cpu_moe", None) is not None:
        values["n_cpu_moe"] = args.n_cpu_moe
    overrides = [pair for group in getattr(args, "tensor_overrides", None) or () for pair in group]
    if overrides:
        values["tensor_overrides"] = tuple(overrides)
    if getattr(args, "tensor_split", None):
        values["tensor_split"] = tuple(args.tensor_split)
    if getattr(args, "split_mode", None):
        values["split_mode"] = args.split_mode
    if getattr(args, "main_gpu", None) is not None:
        values["main_gpu"] = args.main_gpu
    return values


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
    add_placement_options(parser)


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
