"""The figures line under a reply (``format_stats``)."""

from __future__ import annotations

from tui_llm.engine.protocol import ReplyStats
from tui_llm.widgets.message_view import format_stats


def stats(**values: object) -> ReplyStats:
    base: dict[str, object] = {
        "prompt_tokens": 4531,
        "prompt_tokens_evaluated": 4531,
        "generated_tokens": 40,
        "time_to_first_token_s": 2.5,
        "prompt_tokens_per_s": 1812.4,
        "generation_tokens_per_s": 21.0,
        "total_s": 4.4,
    }
    base.update(values)
    return ReplyStats(**base)  # type: ignore[arg-type]


def test_a_reply_has_its_rate_first_token_and_prompt() -> None:
    line = format_stats(stats(), "stop")
    assert line == "40 tokens · 21.0 tok/s · first token 2.5 s · prompt 4531 (4531 evaluated)"
    assert format_stats(stats(), "cancelled").endswith(" · stopped")


def test_stopped_during_its_prompt_says_so_without_a_rate() -> None:
    """No token came: no rate or first token to show, only what of the prompt was done."""
    line = format_stats(
        stats(generated_tokens=0, prompt_tokens_evaluated=1024, total_s=3.1), "cancelled"
    )
    assert line == "0 tokens · prompt 4531 (1024 evaluated) · stopped after 3.1 s"
