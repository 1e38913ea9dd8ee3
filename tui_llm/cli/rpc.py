"""``tui-llm rpc-server``: this machine's device served to other hosts over llama.cpp RPC."""

from __future__ import annotations

import argparse
import os
import sys

from tui_llm.cli.args import UsageError, say


def run_rpc_server(args: argparse.Namespace) -> int:
    """Serve until killed; exit status 1 with one line when the port cannot be listened on."""
    from tui_llm.engine.native import serve_rpc, served_device_name, supports_rpc

    if not supports_rpc():
        raise UsageError(
            "this llama-cpp-python has no RPC backend; reinstall with "
            'CMAKE_ARGS="-DGGML_RPC=on" pip install --no-cache-dir --force-reinstall '
            "llama-cpp-python"
        )
    from tui_llm.engine.rpc_endpoint import port_taken_reason

    taken = port_taken_reason(args.host, args.port)
    if taken is not None:
        say(f"tui-llm rpc-server: {taken}", one_line=True)
        return 1
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    say(f"tui-llm rpc-server: serving {served_device_name()} on {args.host}:{args.port}")
    if not loopback:
        print(
            "tui-llm rpc-server: WARNING: the llama.cpp RPC protocol has no authentication or "
            "encryption; anyone who can reach this port can use this machine's device. "
            "Expose it only on a trusted network.",
            file=sys.stderr,
        )
    endpoint = f"{args.host}:{args.port}"
    serve_rpc(endpoint, args.threads or os.cpu_count() or 1)
    # llama.cpp's server returns only when it could not listen (it prints why, and returns).
    say(f"tui-llm rpc-server: could not serve on {endpoint} (llama.cpp's reason is above)")
    return 1
