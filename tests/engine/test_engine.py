"""The real engine process on generated models: load, stream, stop, reload, crash."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.protocol import ChatMessage, DoneEvent, SamplingParams, TokensEvent

GREEDY = SamplingParams(temperature=0.0, max_tokens=24, seed=7)


async def test_ready_reports_what_the_build_can_do() -> None:
    async with engine() as client:
        ready = client.ready
        assert ready is not None
        assert ready.pid != 0 and ready.llama_cpp_version
        assert any(d.kind == "cpu" for d in ready.devices)
        assert all(d.memory_total >= d.memory_free >= 0 for d in ready.devices)


async def test_load_reports_buffers_and_progress(model_8l: Path) -> None:
    progress: list[float] = []
    async with engine() as client:
        loaded = await client.load(settings(model_8l), on_progress=progress.append)
    assert progress and progress[-1] == pytest.approx(1.0)
    assert progress == sorted(progress)
    kinds = {b.kind for b in loaded.buffers}
    assert {"model", "kv", "compute"} <= kinds
    assert loaded.offloaded_layers == 0 and loaded.total_layers == 9
    assert loaded.n_layer == 8
    assert loaded.chat_template_source == "gguf"


async def test_stream_batches_and_stats(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        batches: list[TokensEvent] = []
        done: DoneEvent | None = None
        sampling = SamplingParams(temperature=0.0, max_tokens=64)
        async for event in client.generate([user("hello there")], sampling, 0.0):
            if isinstance(event, TokensEvent):
                batches.append(event)
            else:
                done = event
    assert done is not None
    assert done.text == "".join(b.text for b in batches)
    assert done.stats.generated_tokens == 64 and done.finish_reason == "length"
    assert done.stats.prompt_tokens > 3
    assert done.stats.prompt_tokens_evaluated == done.stats.prompt_tokens
    assert done.stats.time_to_first_token_s > 0
    assert done.stats.generation_tokens_per_s > 0


async def test_same_seed_same_text(model_8l: Path) -> None:
    sampling = SamplingParams(temperature=0.9, max_tokens=16, seed=42)
    async with engine() as client:
        await client.load(settings(model_8l))
        first = await client.chat([user("a question")], sampling)
        second = await client.chat([user("a question")], sampling)
    assert first.text == second.text


async def test_stop_mid_stream_then_keep_working(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        sampling = SamplingParams(temperature=0.0, max_tokens=400)
        stream = client.generate([user("tell me everything")], sampling, 0.0)
        received = 0
        async for event in stream:
            assert isinstance(event, TokensEvent)
            received += event.n_tokens
            if received >= 3:
                break
        await stream.aclose()
        after = await client.chat([user("again")], SamplingParams(temperature=0.0, max_tokens=5))
        assert after.stats.generated_tokens == 5


async def test_cancel_reports_cancelled(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        sampling = SamplingParams(temperature=0.0, max_tokens=400)

        async def consume() -> DoneEvent | None:
            async for event in client.generate([user("go on")], sampling, 0.0):
                if isinstance(event, DoneEvent):
                    return event
            return None

        task = asyncio.create_task(consume())
        while not client._pending or len(client._pending) < 1:
            await asyncio.sleep(0.001)
        await client.cancel_all()
        done = await task
    assert done is not None and done.finish_reason == "cancelled"
    assert done.stats.generated_tokens < 400


async def test_stop_during_a_long_prompt_ends_inside_its_processing(model_8l: Path) -> None:
    """A reply stopped while its prompt is processed stops inside that work (llama.cpp's abort
    callback), not after the whole prompt: the KV cache then holds fewer tokens than the
    prompt. What the aborted decode left is consistent: the same prompt then gives the same
    greedy text as on a fresh engine."""
    prompt = [user("word " * 6000)]
    greedy = SamplingParams(temperature=0.0, max_tokens=6)
    async with engine() as client:
        await client.load(settings(model_8l, n_ctx=8192))

        async def consume() -> DoneEvent | None:
            async for event in client.generate(prompt, greedy, 0.0):
                if isinstance(event, DoneEvent):
                    return event
            return None

        task = asyncio.create_task(consume())
        while not client._pending:
            await asyncio.sleep(0.001)
        await client.cancel_all()
        done = await task
        assert done is not None and done.finish_reason == "cancelled"
        assert done.stats.generated_tokens == 0
        assert done.n_past < done.stats.prompt_tokens
        assert done.stats.prompt_tokens_evaluated == done.n_past  # what the KV cache kept
        after = await client.chat(prompt, greedy)
    async with engine() as fresh:
        await fresh.load(settings(model_8l, n_ctx=8192))
        expected = await fresh.chat(prompt, greedy)
    assert after.text == expected.text and after.stats.generated_tokens == 6


async def test_stop_strings_end_the_reply(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        full = await client.chat([user("x")], SamplingParams(temperature=0.0, max_tokens=40))
        word = full.text.split()[3]
        cut = await client.chat(
            [user("x")], SamplingParams(temperature=0.0, max_tokens=40, stop=(word,))
        )
    assert word not in cut.text
    assert cut.finish_reason == "stop"
    assert full.text.startswith(cut.text)


async def test_reload_carries_the_kv_cache(model_8l: Path) -> None:
    """After a reload with new settings, the next reply evaluates only the new tokens."""
    sampling = SamplingParams(temperature=0.0, max_tokens=12)
    first_turn = [user("the first question, with a few more words in it")]
    async with engine() as client:
        await client.load(settings(model_8l))
        reply = await client.chat(first_turn, sampling)
        second_turn = [*first_turn, ChatMessage("assistant", reply.text), user("and then?")]
        baseline = await client.chat(second_turn, sampling)  # no reload in between
        await client.load(settings(model_8l), keep_kv=False)
        await client.chat(first_turn, sampling)
        loaded = await client.load(settings(model_8l, n_threads=2))
        assert loaded.kv_restored_tokens == reply.n_past
        carried = await client.chat(second_turn, sampling)
        await client.load(settings(model_8l), keep_kv=False)
        fresh = await client.chat(second_turn, sampling)
    assert fresh.stats.prompt_tokens_evaluated == fresh.stats.prompt_tokens
    assert carried.stats.prompt_tokens_evaluated == baseline.stats.prompt_tokens_evaluated
    assert carried.stats.prompt_tokens_evaluated < carried.stats.prompt_tokens
    assert carried.text == fresh.text == baseline.text


async def test_incompatible_reload_drops_the_kv(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        await client.chat([user("hi")], GREEDY)
        loaded = await client.load(settings(model_8l, kv_cache_type="q8_0", flash_attn=True))
    assert loaded.kv_restored_tokens == 0


async def test_no_template_is_said_not_hidden(no_template_model: Path) -> None:
    async with engine() as client:
        loaded = await client.load(settings(no_template_model))
        assert loaded.chat_template_source == "chatml"
        assert loaded.chat_template_warning and "no chat template" in loaded.chat_template_warning
        chosen = await client.load(settings(no_template_model, chat_format="plain"))
        assert chosen.chat_template_source == "plain" and chosen.chat_template_warning is None
        done = await client.chat([user("hi")], GREEDY)
    assert done.stats.generated_tokens > 0


async def test_context_limit_is_reported(model_8l: Path) -> None:
    async with engine() as client:
        await client.load(settings(model_8l, n_ctx=64))
        with pytest.raises(EngineError, match="context holds 64"):
            await client.chat([user("word " * 200)], GREEDY)
        done = await client.chat([user("hi")], SamplingParams(temperature=0, max_tokens=500))
    assert done.finish_reason == "context"
    assert done.n_past <= 64


async def test_kill_9_is_reported_and_a_new_engine_starts(model_8l: Path) -> None:
    client = EngineClient()
    crashes: list[EngineError] = []
    client.on_crash = crashes.append
    await client.start()
    try:
        await client.load(settings(model_8l))
        stream = client.generate([user("long")], SamplingParams(max_tokens=100000), 0.0)
        await stream.__anext__()
        client.kill(signal.SIGKILL)
        with pytest.raises(EngineError) as caught:
            async for _ in stream:
                pass
        assert caught.value.kind == "crashed"
        assert "SIGKILL" in str(caught.value) and "\n" not in str(caught.value)
        # The log's last line is chatter; the message names the usual cause of a SIGKILL.
        assert "OOM killer" in str(caught.value)
        assert crashes and crashes[0].kind == "crashed"
        assert client.loaded is None
        await client.start()
        await client.load(settings(model_8l))
        done = await client.chat([user("back")], GREEDY)
        assert done.stats.generated_tokens > 0
    finally:
        await client.close()


async def test_llama_log_goes_to_the_file_not_the_terminal(
    model_8l: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with engine() as client:
        await client.load(settings(model_8l))
        log_path = client.log_path
    out, err = capfd.readouterr()
    assert "llama" not in out + err
    assert log_path is not None
    assert "model buffer size" in log_path.read_text()


async def test_close_ends_the_process(model_8l: Path) -> None:
    client = EngineClient()
    await client.start()
    await client.load(settings(model_8l))
    pid = client.pid
    await client.close()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


async def test_missing_model_is_one_line(tmp_path: Path) -> None:
    async with engine() as client:
        with pytest.raises(EngineError) as caught:
            await client.load(settings(tmp_path / "nope.gguf"))
    assert caught.value.kind == "bad_model"
    assert "\n" not in str(caught.value)


async def test_quantized_model_generates(model_dir: Path) -> None:
    """Q8_0 weights run (AMX repacking, which crashes llama.cpp here, is kept off)."""
    from tui_llm.catalog.generate import write_llama_gguf

    q8 = write_llama_gguf(model_dir / "q8.gguf", n_layer=2, n_embd=64, seed=5, tensor_type="q8_0")
    async with engine() as client:
        await client.load(settings(q8))
        done = await client.chat([user("quantized")], GREEDY)
    assert done.stats.generated_tokens > 0


async def test_split_model_loads_from_its_hugging_face_snapshot(
    split_model_in_hf_cache: Path,
) -> None:
    """llama.cpp finds the second shard by the first shard's name, which only the snapshot entry
    has: its symlink target, the blob, is named by hash."""
    blob = split_model_in_hf_cache.resolve()
    async with engine() as client:
        loaded = await client.load(settings(split_model_in_hf_cache))
        done = await client.chat([user("two shards")], GREEDY)
        with pytest.raises(EngineError) as caught:
            await client.load(settings(blob))
    assert loaded.settings.model_path == str(split_model_in_hf_cache)
    assert loaded.n_layer == 2 and done.stats.generated_tokens > 0
    assert caught.value.kind == "bad_model" and "split.count is 2" in str(caught.value)


def write_refused_model(folder: Path) -> Path:
    """A file our reader accepts (so the app tries it) and llama.cpp refuses: an unknown
    architecture."""
    import gguf
    import numpy as np

    path = folder / "unknown-arch.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


async def test_model_llama_cpp_rejects_is_one_line(model_dir: Path, tiny_model: Path) -> None:
    """A file our reader accepts but llama.cpp refuses (unknown architecture)."""
    path = write_refused_model(model_dir)
    async with engine() as client:
        with pytest.raises(EngineError) as caught:
            await client.load(settings(path))
        assert caught.value.kind == "bad_model"
        assert "\n" not in str(caught.value) and "unknown-arch.gguf" in str(caught.value)
        await client.load(settings(tiny_model))


def test_engine_dies_with_its_parent(tmp_path: Path) -> None:
    """An app killed outright (SIGKILL) does not leave its engine process behind."""
    import subprocess
    import sys
    import time

    code = (
        "import asyncio, sys\n"
        "from tui_llm.engine.client import EngineClient\n"
        "async def main():\n"
        "    c = EngineClient()\n"
        "    r = await c.start()\n"
        "    print(r.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    engine_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(engine_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("the engine outlived the app")
