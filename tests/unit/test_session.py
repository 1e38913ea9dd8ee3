"""The model session: the one owner of what is loaded and of the memory figures."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from types import SimpleNamespace

from tests.helpers import settings
from tui_llm import config
from tui_llm.engine.client import EngineClient
from tui_llm.gpu.free import free_for_load
from tui_llm.gpu.samples import GpuSample, MonitorSnapshot
from tui_llm.launch import load_overrides_from_args
from tui_llm.session import ModelSession

GIB = 1 << 30
MIB = 1 << 20


def with_free_gpu(free: int, total: int = 24 * GIB) -> SimpleNamespace:
    gpu = GpuSample(0, "NVIDIA RTX 4090", total - free, total, 0, 40, 100.0, 450.0)
    snapshot = MonitorSnapshot(timestamp=1.0, gpus=(gpu,), processes={}, host=None)
    return SimpleNamespace(latest=snapshot)


def test_the_safety_margin_setting_is_what_auto_keeps_free(model_8l: Path) -> None:
    """Case: gpu_safety_margin_mib was documented and saved, and nothing read it."""
    user = config.Settings()
    session = ModelSession(EngineClient(), user, with_free_gpu(8 * GIB))
    load = settings(model_8l)
    automatic = session.auto_offload(model_8l, load)
    assert automatic is not None and automatic[0] > 0
    user.gpu_safety_margin_mib = 8 * 1024  # keep all of it free: nothing fits on the GPU
    kept = session.auto_offload(model_8l, load)
    assert kept is not None and kept[0] == 0


def test_one_free_memory_rule_is_the_best_single_gpu() -> None:
    """Two GPUs with 10 and 6 GiB free: a plan must fit one of them (10), not the sum (16)."""
    gpus = [
        GpuSample(0, "A", 14 * GIB, 24 * GIB, 0, 40, None, None),
        GpuSample(1, "B", 18 * GIB, 24 * GIB, 0, 40, None, None),
    ]
    assert free_for_load(gpus) == 10 * GIB
    assert free_for_load(gpus, held={"CUDA1": 8 * GIB}) == 14 * GIB  # a load frees it first
    assert free_for_load([]) is None


def test_app_options_batch_and_no_mmap_reach_the_load() -> None:
    """Case: `tui-llm MODEL --batch 256 --no-mmap` dropped both silently."""
    args = argparse.Namespace(batch=256, no_mmap=True, offload=None, ctx=None)
    overrides = load_overrides_from_args(args)
    assert overrides["n_batch"] == 256 and overrides["n_ubatch"] == 256
    assert overrides["use_mmap"] is False
    session = ModelSession(EngineClient(), config.Settings(), load_overrides=overrides)
    chosen = session.load_settings_for(Path("/models/m.gguf"))
    assert (chosen.n_batch, chosen.use_mmap) == (256, False)


async def test_settings_are_written_from_a_snapshot_taken_on_the_ui_thread(
    monkeypatch: object,
) -> None:
    """Case: the save thread iterated ``profiles`` while a handler added one ("dictionary
    changed size during iteration" ended the app)."""
    from tests.ui.test_app import build

    started, release = threading.Event(), threading.Event()
    written: list[config.Settings] = []

    def slow_save(snapshot: config.Settings, path: Path | None = None) -> None:
        started.set()
        release.wait(10)
        written.append(snapshot)

    app = build()
    app.autostart_engine = False
    app.save_enabled = True
    monkeypatch.setattr(config, "save_settings", slow_save)  # type: ignore[attr-defined]
    async with app.run_test() as pilot:
        app.settings.profiles["/a.gguf"] = config.LoadProfile()
        app.save()
        await pilot.pause()
        assert started.wait(10)
        app.settings.profiles["/b.gguf"] = config.LoadProfile()  # the UI thread goes on
        release.set()
        await app.workers.wait_for_complete()
    assert written and written[0] is not app.settings
    assert sorted(written[0].profiles) == ["/a.gguf"]


def test_pull_plans_for_one_gpu_not_the_sum(monkeypatch: object) -> None:
    """Case: `pull` summed free memory over GPUs and picked a quant no single GPU holds."""
    import sys

    from tests.fake_pynvml import FakeGpu, FakePynvml
    from tui_llm.cli.hub import _free_vram

    fake = FakePynvml(
        [
            FakeGpu(memory_total=24 * GIB, memory_used=14 * GIB),
            FakeGpu(name="NVIDIA RTX A2000", memory_total=12 * GIB, memory_used=6 * GIB),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # type: ignore[attr-defined]
    assert _free_vram() == 10 * GIB
