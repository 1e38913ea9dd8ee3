"""A GGUF chat template that reaches for Python internals: one line, and the engine lives on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import SamplingParams

ESCAPE = "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}{{ messages[0].content }}"


async def test_a_template_escaping_the_sandbox_fails_and_the_engine_stays_up(
    tiny_model: Path, tmp_path: Path
) -> None:
    hostile = write_llama_gguf(
        tmp_path / "escape.gguf", n_layer=2, n_embd=64, seed=4, chat_template=ESCAPE
    )
    async with engine() as client:
        await client.load(settings(hostile))
        with pytest.raises(EngineError) as caught:
            await client.chat([user("hello")], SamplingParams(max_tokens=4))
        message = str(caught.value)
        assert "\n" not in message and "unsafe" in message
        assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
        await client.load(settings(tiny_model))
        done = await client.chat([user("still here")], SamplingParams(max_tokens=4))
    assert done.stats.generated_tokens > 0
