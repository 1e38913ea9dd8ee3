"""Automatic offload: the most layers that fit the free GPU memory, and ``tui-llm fit``.

The machine has no NVIDIA driver, so NVML is a fake ``pynvml`` module reporting a chosen amount of
free memory; everything else (the model file, the estimate) is real.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import pytest

from tui_llm.catalog.metadata import read_model_info
from tui_llm.cli.fit import add_fit_parser, run_fit
from tui_llm.engine.protocol import LoadSettings
from tui_llm.fit import auto_offload_for_path, estimate_level, fit_label
from tui_llm.fit.auto import GIB, MIB, choose_offload, safety_margin
from tui_llm.fit.estimate import CUDA, NO_GPU, Estimate, EstimateSettings, estimate
from tui_llm.gpu.free import read_gpu_memory


@pytest.fixture(scope="module")
def est_8l(model_8l: Path) -> Estimate:
    return estimate(read_model_info(model_8l), EstimateSettings(n_ctx=512), CUDA)


def install_fake_nvml(
    monkeypatch: pytest.MonkeyPatch, free: int, total: int, fail: bool = False
) -> None:
    """A stand-in for nvidia-ml-py reporting one GPU with ``free`` of ``total`` bytes."""
    fake = types.ModuleType("pynvml")

    def init() -> None:
        if fail:
            raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = init  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda index: object()  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda handle: b"NVIDIA Fake 8GB"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(  # type: ignore[attr-defined]
        free=free, total=total, used=total - free
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)


def test_margin_is_one_gib_scaled_down_on_small_cards() -> None:
    assert safety_margin(24 * GIB) == GIB
    assert safety_margin(8 * GIB) == GIB
    assert safety_margin(4 * GIB) == 512 * MIB
    assert safety_margin(512 * MIB) == 128 * MIB
    assert safety_margin(None, None) == GIB


@pytest.mark.parametrize("level", [1, 2, 5, 8])
def test_free_memory_drives_the_level_exactly(est_8l: Estimate, level: int) -> None:
    margin = 64 * MIB
    needed = est_8l.level(level).gpu.total
    just_enough = choose_offload(est_8l, needed + margin, margin_bytes=margin, check_host=False)
    one_short = choose_offload(est_8l, needed + margin - 1, margin_bytes=margin, check_host=False)
    assert just_enough.offload_layers == level
    assert one_short.offload_layers == level - 1
    assert f"{level} of 9 layers fit" in just_enough.reason
    assert just_enough.label == f"{level}/9 layers"


def test_everything_fits_on_a_big_card(est_8l: Estimate) -> None:
    choice = choose_offload(est_8l, 24 * GIB, total_gpu_bytes=24 * GIB, check_host=False)
    assert choice.offload_layers == 9 and choice.label == "full GPU"
    assert choice.reason.startswith("all 9 layers fit") and "keeping 1 GiB free" in choice.reason


def test_no_gpu_is_cpu_only(model_8l: Path) -> None:
    est = estimate(read_model_info(model_8l), EstimateSettings(n_ctx=512), NO_GPU)
    choice = choose_offload(est, None, check_host=False)
    assert choice.offload_layers == 0 and choice.label == "CPU only"
    assert choice.reason.startswith("no GPU found: CPU only")


def test_nothing_fits_even_on_the_cpu_says_by_how_much(est_8l: Estimate) -> None:
    needed = est_8l.level(0).cpu.total
    choice = choose_offload(est_8l, None, host_bytes=needed - 10 * MIB)
    assert not choice.fits and choice.label == "too big"
    assert choice.shortfall_bytes == 10 * MIB
    assert "short by 10 MiB" in choice.reason


def test_app_helpers_use_the_file_and_settings(model_8l: Path) -> None:
    settings = LoadSettings(model_path=str(model_8l), n_ctx=512)
    gpu, cpu = estimate_level(model_8l, settings, 9) or (0, 0)
    assert gpu > 0 and cpu > 0
    gpu_level, gpu_reason = auto_offload_for_path(model_8l, settings, 80 * GIB) or (-1, "")
    assert gpu_level == 9 and gpu_reason.startswith("all 9 layers fit")
    cpu_level, cpu_reason = auto_offload_for_path(model_8l, settings, None) or (-1, "")
    assert cpu_level == 0 and cpu_reason.startswith("no GPU found: CPU only")
    assert fit_label(read_model_info(model_8l), 80 * GIB) == "full GPU"
    assert fit_label(read_model_info(model_8l), None) == "CPU only"
    assert auto_offload_for_path(model_8l.with_name("missing.gguf"), settings, 8 * GIB) is None


# ---- tui-llm fit ---------------------------------------------------------------------------


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tui-llm")
    add_fit_parser(parser.add_subparsers(dest="command", required=True))
    return run_fit(parser.parse_args(["fit", *argv]))


def test_fit_recommends_the_level_the_fake_gpu_has_room_for(
    model_8l: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    est = estimate(read_model_info(model_8l), EstimateSettings(n_ctx=512), CUDA)
    margin = 128 * MIB  # a 1 GiB card keeps 1/8 free
    install_fake_nvml(monkeypatch, free=est.level(6).gpu.total + margin, total=GIB)
    assert run([str(model_8l), "--ctx", "512"]) == 0
    out = capsys.readouterr().out
    assert "GPU: NVIDIA Fake 8GB" in out
    table = [line for line in out.splitlines() if line[:1].isdigit() or line.startswith("all")]
    assert len(table) == 10  # levels 0 .. 9
    assert [line.split()[-1] for line in table] == ["yes"] * 7 + ["no"] * 3
    assert "recommended: --offload 6 (6 of 9 layers fit" in out


def test_fit_without_nvml_says_cpu_only(
    model_8l: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_nvml(monkeypatch, free=0, total=0, fail=True)
    assert read_gpu_memory() is None
    assert run([str(model_8l), "--ctx", "512", "--kv-type", "q8_0", "--flash-attn"]) == 0
    out = capsys.readouterr().out
    assert "no GPU found: CPU only" in out
    assert "recommended: --offload 0 (no GPU found: CPU only" in out
    assert "KV q8_0, flash attention on" in out


def test_fit_json(
    model_8l: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fake_nvml(monkeypatch, free=80 * GIB, total=80 * GIB)
    assert run([str(model_8l), "--ctx", "1000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kv_cells"] == 1024
    assert [lv["offload_layers"] for lv in data["levels"]] == list(range(10))
    assert all(lv["fits_now"] for lv in data["levels"])
    assert data["recommended"]["offload_layers"] == 9
    assert data["recommended"]["label"] == "full GPU"
    level = data["levels"][4]["gpu"]
    assert level["total"] == level["weights"] + level["kv"] + level["compute"] + level["output"]


def test_fit_bad_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model\n")
    assert run([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tui-llm: error: ") and err.count("\n") == 1
    assert run([str(tmp_path / "missing.gguf")]) == 2
    assert "no such model file" in capsys.readouterr().err
