"""Placement options: MoE experts on the CPU, tensor overrides and the split between devices,
from the command line and the saved profile to the patterns llama.cpp receives."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tui_llm import config
from tui_llm.cli import build_app_parser, build_parser, main
from tui_llm.cli.args import UsageError
from tui_llm.cli.chat import load_settings_from_args
from tui_llm.engine.client import EngineClient
from tui_llm.engine.load_params import FFN_EXPS_PATTERN, llama_kwargs, tensor_overrides
from tui_llm.engine.protocol import LoadSettings
from tui_llm.launch import load_overrides_from_args
from tui_llm.session import ModelSession

EXPERT_TENSORS = [
    f"blk.{layer}.ffn_{part}_exps.weight" for layer in range(12) for part in ("gate", "up", "down")
]
OTHER_TENSORS = [
    "blk.0.ffn_gate_inp.weight",
    "blk.0.ffn_gate_shexp.weight",
    "blk.0.ffn_up_shexp.weight",
    "blk.0.ffn_gate_inp_shexp.weight",
    "blk.0.attn_q.weight",
    "blk.0.ffn_up.weight",
]


def on_cpu(settings: LoadSettings, names: list[str]) -> list[str]:
    """The names the first matching pattern puts on the CPU (llama.cpp's std::regex_search)."""
    pairs = tensor_overrides(settings)
    chosen = []
    for name in names:
        buffer_type = next((buft for pat, buft in pairs if re.search(pat, name)), None)
        if buffer_type == "CPU":
            chosen.append(name)
    return chosen


def test_n_cpu_moe_patterns_match_exactly_the_first_n_layers_experts() -> None:
    settings = LoadSettings("/m.gguf", n_cpu_moe=2)
    assert on_cpu(settings, EXPERT_TENSORS + OTHER_TENSORS) == EXPERT_TENSORS[:6]
    assert on_cpu(LoadSettings("/m.gguf", n_cpu_moe=0), EXPERT_TENSORS) == []
    everything = LoadSettings("/m.gguf", n_cpu_moe="all")
    assert tensor_overrides(everything) == ((FFN_EXPS_PATTERN, "CPU"),)
    assert on_cpu(everything, EXPERT_TENSORS + OTHER_TENSORS) == EXPERT_TENSORS
    fused = ["blk.3.ffn_gate_up_exps.weight", "blk.3.ffn_down_chexps.weight"]
    assert on_cpu(everything, fused) == fused


def test_user_overrides_come_first() -> None:
    settings = LoadSettings("/m.gguf", n_cpu_moe=1, tensor_overrides=((r"blk\.0\.ffn_up", "RPC0"),))
    pairs = tensor_overrides(settings)
    assert pairs[0] == (r"blk\.0\.ffn_up", "RPC0")
    assert on_cpu(settings, EXPERT_TENSORS[:3]) == [
        "blk.0.ffn_gate_exps.weight",
        "blk.0.ffn_down_exps.weight",
    ]


def test_split_settings_reach_llama() -> None:
    kwargs = llama_kwargs(
        LoadSettings("/m.gguf", tensor_split=(1.0, 3.0), split_mode="row", main_gpu=1)
    )
    assert (kwargs["tensor_split"], kwargs["split_mode"], kwargs["main_gpu"]) == ([1.0, 3.0], 2, 1)
    plain = llama_kwargs(LoadSettings("/m.gguf"))
    assert (plain["tensor_split"], plain["split_mode"], plain["main_gpu"]) == (None, 1, 0)


def chat_args(*options: str) -> argparse.Namespace:
    return build_parser().parse_args(["chat", "m.gguf", "--prompt", "x", *options])


def test_chat_options_become_load_settings() -> None:
    args = chat_args(
        "--n-cpu-moe",
        "3",
        "-ot",
        r"blk\.1\.=CPU",
        "--override-tensor",
        "output=RPC0[127.0.0.1:50052],token_embd=CPU",
        "--tensor-split",
        "1,3",
        "--split-mode",
        "row",
        "--main-gpu",
        "1",
    )
    settings = load_settings_from_args(args, Path("m.gguf"))
    assert isinstance(settings, LoadSettings)
    assert settings.n_cpu_moe == 3
    assert settings.tensor_overrides == (
        (r"blk\.1\.", "CPU"),
        ("output", "RPC0[127.0.0.1:50052]"),
        ("token_embd", "CPU"),
    )
    assert (settings.tensor_split, settings.split_mode, settings.main_gpu) == ((1.0, 3.0), "row", 1)
    cpu_moe = load_settings_from_args(chat_args("--cpu-moe"), Path("m.gguf"))
    assert isinstance(cpu_moe, LoadSettings) and cpu_moe.n_cpu_moe == "all"


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (("--cpu-moe", "--n-cpu-moe", "2"), "not allowed with"),
        (("--n-cpu-moe", "-1"), "must be 0 or more"),
        (("-ot", "exps"), "PATTERN=BUFFER_TYPE"),
        (("-ot", "exps="), "PATTERN=BUFFER_TYPE"),
        (("-ot", "ffn_(up=CPU"), "bad pattern"),
        (("--tensor-split", "1,x"), "numbers like 1,3"),
        (("--tensor-split", "0,0"), "one above 0"),
        (("--tensor-split", "1,-3"), "0 or more"),
        (("--split-mode", "diagonal"), "invalid choice"),
        (("--main-gpu", "one"), "not a number"),
    ],
)
def test_bad_placement_values_are_one_line_at_parse_time(
    options: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UsageError, match=re.escape(said)):
        chat_args(*options)
    assert main(["chat", "m.gguf", "--prompt", "x", *options]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tui-llm: error:")


def test_app_options_reach_the_session_and_the_profile_remembers_n_cpu_moe() -> None:
    args = build_app_parser().parse_args(["--n-cpu-moe", "5", "--tensor-split", "2,1"])
    overrides = load_overrides_from_args(args)
    assert overrides == {"n_cpu_moe": 5, "tensor_split": (2.0, 1.0)}
    user = config.Settings()
    session = ModelSession(EngineClient(), user, load_overrides=overrides)
    chosen = session.load_settings_for(Path("/models/m.gguf"))
    assert (chosen.n_cpu_moe, chosen.tensor_split) == (5, (2.0, 1.0))

    config.remember_load(user, LoadSettings("/models/m.gguf", n_cpu_moe="all"))
    config.save_settings(user)
    saved = config.load_settings()[0]
    assert config.profile_for(saved, "/models/m.gguf").n_cpu_moe == "all"
    reopened = ModelSession(EngineClient(), saved).load_settings_for(Path("/models/m.gguf"))
    assert reopened.n_cpu_moe == "all"
    assert config.profile_for(saved, "/models/other.gguf").n_cpu_moe == 0


def test_a_bad_saved_n_cpu_moe_falls_back_with_a_warning() -> None:
    path = config.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[profiles."/m/a.gguf"]\nn_cpu_moe = -2\nn_ctx = 1024\n')
    settings, warning = config.load_settings()
    assert warning is not None and "n_cpu_moe" in warning
    assert config.profile_for(settings, "/m/a.gguf").n_cpu_moe == 0
    assert config.profile_for(settings, "/m/a.gguf").n_ctx == 1024
