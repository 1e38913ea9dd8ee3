"""``tui-llm info MODEL`` (GGUF metadata) and ``tui-llm demo-model PATH`` (the bigram model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tui_llm.cli.args import UsageError, resolve_model
from tui_llm.textsafe import for_stream


def run_info(args: argparse.Namespace) -> int:
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


def run_demo_model(args: argparse.Namespace) -> int:
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
