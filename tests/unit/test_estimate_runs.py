"""Long runs of identically placed blocks are simulated short: the result must not change."""

from __future__ import annotations

import importlib
from pathlib import Path

from tui_llm.catalog.generate import write_moe_gguf
from tui_llm.catalog.metadata import read_model_info
from tui_llm.fit.estimate import RPC, EstimateSettings, estimate


def test_shortened_runs_give_the_same_compute_buffers(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    info = read_model_info(write_moe_gguf(tmp_path / "m.gguf", n_layer=12, n_embd=64, seed=4))
    settings = EstimateSettings(n_ctx=512)
    pairs = [(level, moe) for level in (0, 1, 2, 6, 12, 13) for moe in (0, 1, 5, 9, 12)]
    short = estimate(info, settings, RPC)
    monkeypatch.setattr(importlib.import_module("tui_llm.fit.estimate"), "_STEADY_RUN", 1000)
    whole = estimate(info, settings, RPC)
    for level, moe in pairs:
        assert short.pair(level, moe) == whole.pair(level, moe), (level, moe)
