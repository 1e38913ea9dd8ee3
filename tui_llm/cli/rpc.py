"""``tui-llm rpc-server``: this machine's device served to other hosts over llama.cpp RPC."""

from __future__ import annotations

import argparse
import os
import sys

from tui_llm.cli.args import UsageError, say


def run_rpc_server(args: argparse.Namespace) -> int:
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
