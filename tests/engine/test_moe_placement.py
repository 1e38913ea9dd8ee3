"""Mixture-of-experts placement and the split between devices, for real: RPC servers on
127.0.0.1 backed by the CPU stand in for GPUs, llama.cpp's own buffer report is the judge.

Models load without mmap here, so a host buffer holds exactly its tensors (a mapped one spans
the file from its first tensor to its last, other devices' tensors in between included).
"""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import pytest

from tests.helpers import engine, settings, user
from tui_llm.engine.client import EngineError
from tui_llm.engine.load_params import FFN_EXPS_PATTERN
from tui_llm.engine.logparse import MIB, totals_by_device
from tui_llm.engine.protocol import ChatMessage, DeviceLayers, LoadedEvent, SamplingParams

pytestmark = pytest.mark.rpc

GREEDY = SamplingParams(temperature=0.0, max_tokens=16, seed=1)
# llama.cpp prints buffer sizes in MiB with two decimals; tensors are padded to 32 bytes.
LOG_PRECISION = 0.006 * MIB


def tensor_bytes(model: Path, pattern: str = "") -> int:
    """Bytes of the model's tensors whose names match pattern (re.search, as llama.cpp)."""
    reader = gguf.GGUFReader(model)
    return sum(int(t.n_bytes) for t in reader.tensors if re.search(pattern, t.name))


def model_bytes(loaded: LoadedEvent) -> dict[str, int]:
    """Model buffer bytes per device (host buffers as CPU)."""
    buffers = [b for b in loaded.buffers if b.kind == "model"]
    return totals_by_device(buffers, loaded.devices)


def assert_close(reported: int, expected: int) -> None:
    assert abs(reported - expected) <= LOG_PRECISION, (reported / MIB, expected / MIB)


async def test_experts_on_the_cpu_and_the_rest_on_rpc0_give_the_same_text(
    rpc_server: str, moe_model: Path
) -> None:
    base = settings(moe_model, rpc_servers=(rpc_server,), use_mmap=False)
    async with engine() as client:
        cpu_only = await client.load(base)
        cpu_text = (await client.chat([user("say something")], GREEDY)).text
        split = await client.load(
            settings(
                moe_model,
                rpc_servers=(rpc_server,),
                use_mmap=False,
                offload_layers="all",
                n_cpu_moe="all",
            ),
            keep_kv=False,
        )
        split_text = (await client.chat([user("say something")], GREEDY)).text
    experts = tensor_bytes(moe_model, FFN_EXPS_PATTERN)
    embeddings = tensor_bytes(moe_model, r"^token_embd\.")
    total = tensor_bytes(moe_model)
    assert experts > total / 2
    assert_close(model_bytes(cpu_only).get("CPU", 0), total)
    on = model_bytes(split)
    assert_close(on["CPU"], experts + embeddings)
    assert_close(on["RPC0"], total - experts - embeddings)
    assert split.layers_by_device == (DeviceLayers("RPC0", 5),)
    kv = [b for b in split.buffers if b.kind == "kv"]
    assert kv and all(b.device.startswith("RPC0") for b in kv)
    assert split_text == cpu_text and len(cpu_text) > 10


async def test_shared_experts_stay_with_their_layer(rpc_server: str, moe_shexp_model: Path) -> None:
    async with engine() as client:
        loaded = await client.load(
            settings(
                moe_shexp_model,
                rpc_servers=(rpc_server,),
                use_mmap=False,
                offload_layers="all",
                n_cpu_moe="all",
            )
        )
    experts = tensor_bytes(moe_shexp_model, FFN_EXPS_PATTERN)
    shared = tensor_bytes(moe_shexp_model, r"_shexp\.")
    embeddings = tensor_bytes(moe_shexp_model, r"^token_embd\.")
    on = model_bytes(loaded)
    assert shared > 0
    assert_close(on["CPU"], experts + embeddings)
    assert on["RPC0"] > shared
    assert_close(on["RPC0"], tensor_bytes(moe_shexp_model) - experts - embeddings)


@pytest.mark.parametrize(("offload", "n_cpu_moe"), [("all", 1), ("all", 3), (3, 3)])
async def test_n_cpu_moe_moves_exactly_n_layers_experts(
    rpc_server: str, moe_model: Path, offload: int | str, n_cpu_moe: int
) -> None:
    """Layers 0..N-1 keep their experts on the CPU; offload takes layers from the end, so with
    3 of 5 on RPC0 (layers 2, 3 and the output) only layer 2's experts move back."""
    async with engine() as client:
        loaded = await client.load(
            settings(
                moe_model,
                rpc_servers=(rpc_server,),
                use_mmap=False,
                offload_layers=offload,
                n_cpu_moe=n_cpu_moe,
            )
        )
    n_layer = 4
    per_layer = tensor_bytes(moe_model, r"^blk\.0\.ffn_(up|down|gate)_exps")
    on_cpu_layers = n_layer + 1 - (5 if offload == "all" else int(offload))
    cpu_layers_bytes = sum(
        tensor_bytes(moe_model, rf"^blk\.{layer}\.") for layer in range(on_cpu_layers)
    )
    expected = (
        tensor_bytes(moe_model, r"^token_embd\.")
        + cpu_layers_bytes
        + per_layer * max(0, n_cpu_moe - on_cpu_layers)
    )
    assert_close(model_bytes(loaded)["CPU"], expected)


async def test_an_override_comes_before_the_expert_patterns(
    rpc_server: str, moe_model: Path
) -> None:
    """-ot's patterns come first: layer 0's experts stay on RPC0 despite --cpu-moe, and the
    output matrix goes to the CPU."""
    async with engine() as client:
        loaded = await client.load(
            settings(
                moe_model,
                rpc_servers=(rpc_server,),
                use_mmap=False,
                offload_layers="all",
                n_cpu_moe="all",
                tensor_overrides=((r"blk\.0\.ffn_.*_exps", "RPC0"), (r"^output\.", "CPU")),
            )
        )
    experts = tensor_bytes(moe_model, FFN_EXPS_PATTERN)
    layer0 = tensor_bytes(moe_model, r"^blk\.0\.ffn_(up|down|gate)_exps")
    host = tensor_bytes(moe_model, r"^(token_embd|output)\.")
    assert_close(model_bytes(loaded)["CPU"], experts - layer0 + host)


async def test_an_unknown_buffer_type_is_one_line_naming_the_valid_ones(
    rpc_server: str, moe_model: Path
) -> None:
    async with engine() as client:
        with pytest.raises(EngineError) as caught:
            await client.load(
                settings(
                    moe_model,
                    rpc_servers=(rpc_server,),
                    tensor_overrides=(("exps", "CUDA7"),),
                )
            )
        loaded = await client.load(settings(moe_model))
    message = str(caught.value)
    assert "\n" not in message
    assert "CUDA7" in message and f"RPC0[{rpc_server}]" in message and "CPU" in message
    assert loaded.offloaded_layers == 0


@pytest.mark.parametrize(("split", "layers"), [((1.0, 3.0), (3, 6)), ((3.0, 1.0), (7, 2))])
async def test_tensor_split_between_two_rpc_servers_moves_layers_and_buffers(
    rpc_server: str,
    second_rpc_server: str,
    model_8l: Path,
    split: tuple[float, float],
    layers: tuple[int, int],
) -> None:
    """9 layers (8 and the output) at 1:3: llama.cpp gives RPC0 the layers i with i/9 < 1/4."""
    async with engine() as client:
        loaded = await client.load(
            settings(
                model_8l,
                rpc_servers=(rpc_server, second_rpc_server),
                use_mmap=False,
                offload_layers="all",
                tensor_split=split,
            )
        )
        done = await client.chat([user("say something")], GREEDY)
    first, second = layers
    assert loaded.layers_by_device == (DeviceLayers("RPC0", first), DeviceLayers("RPC1", second))
    layer = tensor_bytes(model_8l, r"^blk\.0\.")
    output = tensor_bytes(model_8l, r"^output(_norm)?\.")
    on = model_bytes(loaded)
    assert_close(on["RPC0"], first * layer)
    assert_close(on["RPC1"], (second - 1) * layer + output)
    kv = totals_by_device([b for b in loaded.buffers if b.kind == "kv"], loaded.devices)
    assert kv["RPC0"] * (second - 1) == pytest.approx(kv["RPC1"] * first, rel=0.01)
    assert done.text


async def test_reload_changing_n_cpu_moe_keeps_the_conversation(
    rpc_server: str, moe_model: Path
) -> None:
    """KV carried across expert placement changes: the same continuation at temperature 0."""
    turn1 = [user("first message of the conversation")]
    base = settings(moe_model, rpc_servers=(rpc_server,), offload_layers="all")
    async with engine() as client:
        await client.load(base)
        reply = await client.chat(turn1, GREEDY)
        turn2 = [*turn1, ChatMessage("assistant", reply.text), user("more")]
        baseline = await client.chat(turn2, GREEDY)

        await client.load(base, keep_kv=False)
        await client.chat(turn1, GREEDY)
        moved = await client.load(
            settings(moe_model, rpc_servers=(rpc_server,), offload_layers="all", n_cpu_moe=2)
        )
        assert moved.kv_restored_tokens == reply.n_past
        carried = await client.chat(turn2, GREEDY)
    assert carried.text == baseline.text
    assert carried.stats.prompt_tokens_evaluated == baseline.stats.prompt_tokens_evaluated
    assert carried.stats.prompt_tokens_evaluated < carried.stats.prompt_tokens
