"""The offload sweep's pieces that need no engine: levels, records, tables."""

from __future__ import annotations

import json

import pytest

from tui_llm.engine.protocol import DeviceInfo, LoadSettings
from tui_llm.sweep import (
    LevelResult,
    LevelSpec,
    LevelSyntaxError,
    MachineInfo,
    Spread,
    SweepResult,
    SweepSettings,
    default_levels,
    parse_levels,
)
from tui_llm.sweep import table as sweep_table
from tui_llm.sweep.levels import resolve


def test_level_lists_as_llama_bench_and_the_issue_write_them() -> None:
    assert [s.value for s in parse_levels("0,8,16,all")] == [0, 8, 16, "all"]
    assert [s.value for s in parse_levels("auto")] == ["auto"]
    assert [s.value for s in parse_levels("0-32+8")] == [0, 8, 16, 24, 32]
    assert [s.value for s in parse_levels("0-2,2,all,all")] == [0, 1, 2, "all"]


@pytest.mark.parametrize("text", ["", "0,,8", "eight", "8-4", "0-8+0", "-3"])
def test_bad_level_lists_say_which_part(text: str) -> None:
    with pytest.raises(LevelSyntaxError):
        parse_levels(text)


def test_default_levels_are_cpu_only_four_steps_and_auto() -> None:
    assert [s.value for s in default_levels(33)] == [0, 8, 16, 25, 33, "auto"]
    assert [s.value for s in default_levels(2)] == [0, 1, 2, "auto"]
    assert resolve(LevelSpec("all"), 33, None) == 33
    assert resolve(LevelSpec(99), 33, None) == 33
    assert resolve(LevelSpec("auto"), 33, 20) == 20
    assert resolve(LevelSpec("auto"), 33, None) is None


def sample_result() -> SweepResult:
    machine = MachineInfo(
        cpu="Test CPU",
        gpus=("NVIDIA H100",),
        driver="580.1",
        llama_cpp_python="0.3.36",
        system_info="CPU : AVX2 = 1",
        devices=(DeviceInfo("CUDA0", "NVIDIA H100", "gpu", 70 << 30, 80 << 30),),
    )
    result = SweepResult(
        "/m/model.gguf",
        "model.gguf",
        33,
        SweepSettings(LoadSettings("/m/model.gguf", rpc_servers=("h:1",)), 512, 128, 3),
        machine,
        1.5e9,
    )
    result.levels += [
        LevelResult(
            "0", 0, "ok", "", 0, Spread(100, 90, 110), Spread(10, 9.5, 10.5), Spread(5.1, 5, 6),
            1.2, (("CPU", 4 << 30),), 100 << 20,
        ),
        LevelResult(
            "33", 33, "ok", "", 33, Spread(2000, 1900, 2100), Spread(55, 54, 56),
            Spread(0.3, 0.29, 0.31), 2.0, (("CPU", 300 << 20), ("CUDA0", 4 << 30)), 5 << 30,
        ),
        LevelResult("auto", None, "skipped", "no estimate for this model"),
    ]  # fmt: skip
    return result


def test_speedup_and_fastest() -> None:
    result = sample_result()
    assert result.speedup(result.levels[1]) == pytest.approx(5.5)
    fastest = result.fastest()
    assert fastest is not None and fastest.label == "33"


def test_json_round_trip_is_lossless() -> None:
    result = sample_result()
    data = json.loads(json.dumps(result.to_json()))
    assert SweepResult.from_json(data) == result


def test_tables_show_figures_and_why_a_level_was_skipped() -> None:
    result = sample_result()
    text = sweep_table.as_text(result)
    assert "55.0 (54.0-56.0)" in text and "5.50x" in text and "CUDA0 4 GiB" in text
    assert "skipped: no estimate for this model" in text
    markdown = sweep_table.as_markdown(result)
    assert markdown.splitlines()[0].startswith("| level | GPU layers | prompt tok/s")
    rows = sweep_table.as_csv(result).splitlines()
    assert rows[2].split(",")[:3] == ["33", "33", "ok"] and ",5.5," in rows[2]
    described = sweep_table.describe(result)
    assert "NVIDIA H100 (driver 580.1)" in described and "llama-cpp-python 0.3.36" in described
