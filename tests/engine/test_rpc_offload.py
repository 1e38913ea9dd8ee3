"""Offload for real: an RPC server on 127.0.0.1 backed by the CPU stands in for the GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import engine, settings, user
from tui_llm.engine.logparse import is_host_buffer, totals_by_device
from tui_llm.engine.protocol import BufferSize, ChatMessage, DeviceLayers, SamplingParams

pytestmark = pytest.mark.rpc

GREEDY = SamplingParams(temperature=0.0, max_tokens=16, seed=1)


def on_device(buffers: tuple[BufferSize, ...], kind: str) -> int:
    return sum(b.size_bytes for b in buffers if b.kind == kind and b.device.startswith("RPC"))


def on_host(buffers: tuple[BufferSize, ...], kind: str) -> int:
    return sum(b.size_bytes for b in buffers if b.kind == kind and is_host_buffer(b.device))


async def test_rpc_device_is_listed_with_memory(rpc_server: str, model_8l: Path) -> None:
    async with engine() as client:
        loaded = await client.load(settings(model_8l, rpc_servers=(rpc_server,)))
        devices = await client.devices()
    rpc = [d for d in loaded.devices if d.name.startswith("RPC")]
    assert len(rpc) == 1 and rpc[0].kind == "gpu"
    assert rpc[0].memory_total > 0 and 0 < rpc[0].memory_free <= rpc[0].memory_total
    assert any(d.name.startswith("RPC") for d in devices.devices)


async def test_offload_none_part_all_moves_buffers(rpc_server: str, model_8l: Path) -> None:
    results = {}
    async with engine() as client:
        for level in (0, 4, "all"):
            loaded = await client.load(
                settings(model_8l, rpc_servers=(rpc_server,), offload_layers=level), keep_kv=False
            )
            done = await client.chat([user("say something")], GREEDY)
            results[level] = (loaded, done.text)
    none, part, full = results[0][0], results[4][0], results["all"][0]
    assert none.offloaded_layers == 0 and part.offloaded_layers == 4
    assert full.offloaded_layers == full.total_layers == 9
    assert none.layers_by_device == ()
    assert part.layers_by_device == (DeviceLayers("RPC0", 4),)
    assert full.layers_by_device == (DeviceLayers("RPC0", 9),)
    assert on_device(none.buffers, "model") == 0 and on_device(none.buffers, "kv") == 0
    assert 0 < on_device(part.buffers, "model") < on_device(full.buffers, "model")
    assert 0 < on_device(part.buffers, "kv") < on_device(full.buffers, "kv")
    assert on_host(full.buffers, "kv") == 0
    assert (
        on_host(none.buffers, "model")
        > on_host(part.buffers, "model")
        > on_host(full.buffers, "model")
    )
    assert results[0][1] == results[4][1] == results["all"][1]


async def test_two_devices_split_the_layers(
    rpc_server: str, second_rpc_server: str, model_8l: Path
) -> None:
    """Two RPC servers (two machines' GPUs, say): each gets a share of the layers and buffers."""
    async with engine() as client:
        loaded = await client.load(
            settings(model_8l, rpc_servers=(rpc_server, second_rpc_server), offload_layers="all")
        )
        done = await client.chat([user("say something")], GREEDY)
    names = [d.device for d in loaded.layers_by_device]
    assert names == ["RPC0", "RPC1"], loaded.layers_by_device
    assert all(d.layers > 0 for d in loaded.layers_by_device)
    assert sum(d.layers for d in loaded.layers_by_device) == loaded.offloaded_layers == 9
    # llama.cpp names both servers' buffers RPC0[endpoint]; the endpoint tells them apart.
    on = totals_by_device([b for b in loaded.buffers if b.kind == "model"], loaded.devices)
    assert on.get("RPC0", 0) > 0 and on.get("RPC1", 0) > 0, (loaded.buffers, loaded.devices)
    assert done.text


async def test_reload_0_all_0_keeps_the_conversation(rpc_server: str, model_8l: Path) -> None:
    """KV carried across offload changes: the same continuation at temperature 0."""
    turn1 = [user("first message of the conversation")]
    async with engine() as client:
        base = settings(model_8l, rpc_servers=(rpc_server,))
        await client.load(base)
        reply = await client.chat(turn1, GREEDY)
        turn2 = [*turn1, ChatMessage("assistant", reply.text), user("more")]
        baseline = await client.chat(turn2, GREEDY)

        await client.load(base, keep_kv=False)
        await client.chat(turn1, GREEDY)
        gpu = await client.load(settings(model_8l, rpc_servers=(rpc_server,), offload_layers="all"))
        assert gpu.kv_restored_tokens == reply.n_past
        assert on_device(gpu.buffers, "kv") > 0
        on_gpu = await client.chat(turn2, GREEDY)
        back = await client.load(base)
        assert back.kv_restored_tokens == on_gpu.n_past
        turn3 = [*turn2, ChatMessage("assistant", on_gpu.text), user("and?")]
        on_cpu = await client.chat(turn3, GREEDY)
    assert on_gpu.text == baseline.text
    assert on_gpu.stats.prompt_tokens_evaluated == baseline.stats.prompt_tokens_evaluated
    assert on_gpu.stats.prompt_tokens_evaluated < on_gpu.stats.prompt_tokens
    assert on_cpu.stats.prompt_tokens_evaluated < on_cpu.stats.prompt_tokens


async def test_unreachable_rpc_server_is_one_line(model_8l: Path) -> None:
    async with engine() as client:
        with pytest.raises(Exception) as caught:
            await client.load(settings(model_8l, rpc_servers=("127.0.0.1:1",)))
        assert "\n" not in str(caught.value)
        loaded = await client.load(settings(model_8l))
    assert loaded.offloaded_layers == 0
