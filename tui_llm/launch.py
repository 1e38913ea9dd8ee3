"""``tui-llm [MODEL]``: the app built with the user's settings and the real parts."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tui_llm import config as config_mod
from tui_llm.app import make_app
from tui_llm.cli.args import placement_from_args
from tui_llm.engine.client import EngineClient
from tui_llm.engine.protocol import LoadSettings


def run_app(model: Path | None, args: argparse.Namespace) -> int:
    """Open the app (``tui-llm [MODEL]``) with the user's settings and real parts."""
    from tui_llm.catalog.discovery import iter_local_models
    from tui_llm.gpu import MonitorThread, create_monitor
    from tui_llm.store import ConversationStore

    settings, warning = config_mod.load_settings()
    dirs = config_mod.model_dirs(settings)
    interval = 1.0
    monitor = MonitorThread(create_monitor(), interval_s=interval)
    app = make_app(
        settings,
        EngineClient(),
        monitor,
        scanner=lambda: scan_with_demo(iter_local_models, dirs),
        initial_model=model,
        settings_warning=warning,
        sample_interval_s=interval,
        store=ConversationStore(),
    )
    app.load_overrides = load_overrides_from_args(args)
    if model is not None:
        from tui_llm.catalog.demo import demo_session

        app.sampling, app.system_prompt = demo_session(
            model, settings.sampling, settings.system_prompt
        )
    app.run()
    return 0


def scan_with_demo(
    iter_local_models: Callable[[list[Path]], Iterable[Any]], dirs: list[Path]
) -> Iterable[Any]:
    """The user's models, with a demo model always offered: SmolLM2 if installed, else the
    built-in bigram model (written on first use)."""
    from tui_llm.catalog.demo import demo_model_path

    try:
        demo = demo_model_path()
    except OSError:
        return iter_local_models(dirs)
    return iter_local_models([demo.parent, *dirs])


def load_overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Load options given on the command line; they win over saved profiles for this run."""
    overrides: dict[str, Any] = {}
    if getattr(args, "offload", None) is not None:
        overrides["offload"] = args.offload
    if getattr(args, "ctx", None):
        overrides["n_ctx"] = args.ctx
    if getattr(args, "flash_attn", None):
        overrides["flash_attn"] = True
    if getattr(args, "kv_type", None):
        overrides["kv_cache_type"] = args.kv_type
    if getattr(args, "rpc", None):
        overrides["rpc_servers"] = tuple(args.rpc)
    if getattr(args, "chat_format", None):
        overrides["chat_format"] = args.chat_format
    if getattr(args, "threads", None):
        overrides["n_threads"] = args.threads
    if getattr(args, "batch", None):
        overrides["n_batch"] = args.batch
        overrides["n_ubatch"] = min(args.batch, LoadSettings.n_ubatch)
    if getattr(args, "no_mmap", False):
        overrides["use_mmap"] = False
    overrides.update(placement_from_args(args))
    return overrides
