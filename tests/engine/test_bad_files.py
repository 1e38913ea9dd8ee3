"""A corpus of bad files through the engine: each is one typed error, and the engine lives on."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.engine.client import EngineError
from tui_llm.engine.protocol import SamplingParams


def bad_corpus(good: Path, folder: Path) -> list[Path]:
    data = good.read_bytes()
    files: dict[str, bytes] = {
        "empty.gguf": b"",
        "random.gguf": os.urandom(4096),
        "wrong-magic.gguf": b"GGML" + data[4:],
        "version-99.gguf": data[:4] + struct.pack("<I", 99) + data[8:],
        "huge-tensor-count.gguf": data[:8] + struct.pack("<Q", 2**62) + data[16:],
        "huge-kv-count.gguf": data[:16] + struct.pack("<Q", 2**62) + data[24:],
        "huge-string.gguf": data[:24] + struct.pack("<Q", 2**60) + data[32:],
    }
    for fraction in (0.001, 0.01, 0.1, 0.5, 0.9, 0.999):
        files[f"truncated-{fraction}.gguf"] = data[: int(len(data) * fraction)]
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    return paths


async def test_bad_files_through_the_engine(tiny_model: Path, tmp_path: Path) -> None:
    corpus = bad_corpus(tiny_model, tmp_path)
    async with engine() as client:
        for path in corpus:
            with pytest.raises(EngineError) as caught:
                await client.load(settings(path))
            message = str(caught.value)
            assert caught.value.kind == "bad_model", (path.name, message)
            assert "\n" not in message and path.name in message
        await client.load(settings(tiny_model))
        done = await client.chat([user("still here")], SamplingParams(max_tokens=4))
    assert done.stats.generated_tokens > 0
