"""The offload sweep's expert levels for mixture-of-experts models: the syntax, the saved rows,
and the equal-VRAM level worked out from the estimate (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_sweep import sample_result
from tui_llm import fit
from tui_llm.engine.protocol import LoadSettings
from tui_llm.placement import experts_text, parse_split, placement_label
from tui_llm.sweep import LevelSpec, LevelSyntaxError, SweepResult, default_levels, parse_levels
from tui_llm.sweep.run import experts_for_vram


def test_expert_levels_are_written_layers_colon_experts() -> None:
    specs = parse_levels("0,all:12,all:all,all:~8,4:2")
    assert specs == [
        LevelSpec(0),
        LevelSpec("all", experts=12),
        LevelSpec("all", experts="all"),
        LevelSpec("all", vram_of=8),
        LevelSpec(4, experts=2),
    ]
    # The sweep form shows the labels and reads them back.
    assert parse_levels(", ".join(spec.label for spec in specs)) == specs


def test_the_experts_keyword_matches_each_layer_split() -> None:
    specs = parse_levels("0,8,16,all,experts")
    assert [spec.label for spec in specs] == [
        "0", "8", "16", "all", "all:all", "all:~8", "all:~16",
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["all:", "all:x", "x:2", "all:~", "all:~all", "auto:2"])
def test_bad_expert_levels_say_what_goes_after_the_colon(text: str) -> None:
    with pytest.raises(LevelSyntaxError, match=r"':'"):
        parse_levels(text)


def test_default_levels_of_an_moe_model_add_the_expert_levels() -> None:
    dense = default_levels(25)
    assert [spec.label for spec in default_levels(25, moe=True)] == [
        *(spec.label for spec in dense), "all:all", "all:~6", "all:~12", "all:~19",
    ]  # fmt: skip


def test_old_saved_sweeps_load_and_new_ones_keep_the_expert_placement() -> None:
    result = sample_result()
    old = result.to_json()
    for level in old["levels"]:
        del level["n_cpu_moe"]  # saved before expert levels
    assert [row.n_cpu_moe for row in SweepResult.from_json(old).levels] == [0, 0, 0]
    from dataclasses import replace

    result.levels[1] = replace(result.levels[1], label="all, experts CPU 12", n_cpu_moe=12)
    result.levels.append(replace(result.levels[1], n_cpu_moe="all"))
    back = SweepResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back == result
    assert [row.n_cpu_moe for row in back.levels] == [0, 12, 0, "all"]


def test_placement_words() -> None:
    assert placement_label(25, 25, 12) == "all, experts CPU 12"
    assert placement_label(25, 25, "all") == "all, experts CPU all"
    assert placement_label(8, 25, 0) == "8"
    # 24 blocks, all offloaded (25 with the output): n_cpu_moe alone says where experts are.
    assert experts_text(24, 25, 12) == "experts: CPU for 12/24 layers"
    assert experts_text(24, 25, 0) == "experts: on the GPU with their layers"
    assert experts_text(24, 25, "all") == "experts: all on the CPU"
    # 10 of 25 offloaded: blocks 0..14 are on the CPU with their experts, n_cpu_moe 4 adds none.
    assert experts_text(24, 10, 4) == "experts: CPU for 15/24 layers"
    assert parse_split("1:3", 2) == (1.0, 3.0) and parse_split(" ", 2) == ()


def test_the_equal_vram_level_keeps_enough_expert_layers_in_ram(moe_model: Path) -> None:
    load = LoadSettings(str(moe_model), n_ctx=512, rpc_servers=("127.0.0.1:1",), use_mmap=False)
    total = 5  # 4 blocks and the output layer

    def vram(layers: int, experts: int) -> int:
        pair = fit.estimate_pair(moe_model, load, layers, experts)
        assert pair is not None
        return sum(pair[0])

    found = experts_for_vram(moe_model, load, total, 4)
    assert found is not None
    experts, gpu, budget = found
    assert budget == vram(4, 0) and gpu == vram(total, experts) <= budget
    assert 0 < experts < 4 and vram(total, experts - 1) > budget
    # Level 2 holds less than every layer does with all its experts in RAM: no match.
    experts, gpu, budget = experts_for_vram(moe_model, load, total, 2) or (0, 0, 0)
    assert experts == 4 and gpu > budget
