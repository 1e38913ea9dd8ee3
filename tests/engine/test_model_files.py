"""A model whose file name is not UTF-8 loads (llama-cpp-python encodes paths as UTF-8)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.helpers import engine, settings
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.engine.model_files import needs_alias, openable_path


def latin1_name(folder: Path, name: bytes) -> Path:
    """A path in ``folder`` whose last part is the raw bytes ``name`` (not UTF-8)."""
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


async def test_a_model_named_in_latin1_loads_and_replies(tmp_path: Path) -> None:
    written = write_llama_gguf(tmp_path / "plain.gguf", n_layer=2, n_embd=64, n_head=4)
    model = latin1_name(tmp_path, b"caf\xe9.gguf")
    os.rename(written, model)
    assert needs_alias(str(model))
    async with engine() as client:
        loaded = await client.load(settings(model))
        assert loaded.settings.model_path == str(model)
        assert await client.count_tokens([]) is not None
    assert not list(Path(tempfile.gettempdir()).glob(f"tui-llm-model-{os.getpid()}-*"))


async def test_a_split_model_named_in_latin1_loads_every_shard(tmp_path: Path) -> None:
    first = write_llama_gguf(tmp_path / "m.gguf", n_layer=2, n_embd=64, n_head=4, n_shards=2)
    for shard in sorted(tmp_path.glob("m-0000*-of-00002.gguf")):
        os.rename(shard, latin1_name(tmp_path, b"m\xe9" + os.fsencode(shard.name)[1:]))
    model = latin1_name(tmp_path, b"m\xe9" + os.fsencode(first.name)[1:])
    async with engine() as client:
        loaded = await client.load(settings(model))
    assert loaded.total_layers == 3


def test_a_utf8_path_is_passed_as_it_is(tmp_path: Path) -> None:
    path = str(tmp_path / "café.gguf")
    with openable_path(path) as opened:
        assert opened == path
