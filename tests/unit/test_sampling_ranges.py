"""The one table of sampling ranges, as the settings file reader applies it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tui_llm.config import load_settings
from tui_llm.engine.protocol import SamplingParams
from tui_llm.sampling_ranges import SAMPLING_RANGES, SamplingRange

REPO = Path(__file__).resolve().parents[2]


def test_every_numeric_sampling_setting_has_a_range() -> None:
    numeric = [f.name for f in dataclasses.fields(SamplingParams) if f.name != "stop"]
    assert list(SAMPLING_RANGES) == numeric


def test_ranges_in_words() -> None:
    assert SAMPLING_RANGES["top_p"].describe() == "a number from 0 to 1"
    assert SAMPLING_RANGES["max_tokens"].describe() == "a whole number from 1 up"
    assert SamplingRange(0.5, 2.5, float).describe() == "a number from 0.5 to 2.5"


def test_a_range_holds_its_ends_and_no_nan_or_infinity() -> None:
    top_p = SAMPLING_RANGES["top_p"]
    assert top_p.contains(0.0) and top_p.contains(1.0) and top_p.contains(0.95)
    assert not any(top_p.contains(x) for x in (7.0, -0.01, 1.0001, float("nan"), float("inf")))
    assert SAMPLING_RANGES["top_k"].contains(10**9)


def toml_number(valid: SamplingRange, value: float) -> str:
    return str(int(value)) if valid.kind is int else repr(float(value))


@pytest.mark.parametrize("name", list(SAMPLING_RANGES))
def test_settings_file_keeps_the_ends_and_ignores_values_outside(name: str, tmp_path: Path) -> None:
    """What the panel refuses, the settings reader ignores (named in its warning), and the
    other way round: both read ``SAMPLING_RANGES``."""
    valid = SAMPLING_RANGES[name]
    path = tmp_path / "settings.toml"
    ends = [valid.low] if valid.high is None else [valid.low, valid.high]
    for end in ends:
        path.write_text(f"[sampling]\n{name} = {toml_number(valid, end)}\n")
        settings, warning = load_settings(path)
        assert (getattr(settings.sampling, name), warning) == (end, None)
    outside = [valid.low - 1] + ([] if valid.high is None else [valid.high + 1])
    for value in outside:
        path.write_text(f"[sampling]\n{name} = {toml_number(valid, value)}\n")
        settings, warning = load_settings(path)
        assert getattr(settings.sampling, name) == getattr(SamplingParams(), name)
        assert warning is not None and f"sampling.{name}" in warning
