"""The estimate plans one device per CUDA GPU (not one GPU for several), as llama.cpp lists them."""

from __future__ import annotations

from pathlib import Path

from tui_llm import fit
from tui_llm.catalog.generate import write_llama_gguf
from tui_llm.engine.protocol import LoadSettings


def test_several_cuda_gpus_are_each_a_device(tmp_path: Path) -> None:
    names = [d.name for d in fit.devices_for_settings(None, gpu_present=True, gpu_count=2)]
    assert names == ["CUDA0", "CUDA1"]
    assert [d.name for d in fit.devices_for_settings(None, gpu_present=False, gpu_count=2)] == [
        "none"
    ]


def test_a_1_to_3_split_over_two_gpus_gives_each_its_share(tmp_path: Path) -> None:
    model = write_llama_gguf(tmp_path / "m.gguf", n_layer=8, n_embd=128, seed=3)
    settings = LoadSettings(model_path=str(model), n_ctx=512, tensor_split=(1.0, 3.0))
    one = fit.estimate_pair(model, settings, 9, 0)
    two = fit.estimate_pair(model, settings, 9, 0, gpu_count=2)
    assert one is not None and two is not None
    assert len(one[0]) == 1 and len(two[0]) == 2
    first, second = two[0]
    assert 0 < first < second  # 2 of 8 blocks on the first, 6 and the output on the second
    # Two devices with everything offloaded: llama.cpp's pipeline parallelism keeps several
    # copies of the graph's inputs, in host memory too.
    assert two[1] > one[1]


def test_a_header_claiming_more_layers_than_the_file_has_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """A damaged block_count (100,000 here) used to make the estimate rebuild 100,000 distinct
    layers, minutes of work on the UI side; llama.cpp refuses such a file anyway."""
    import struct

    import pytest

    from tui_llm.fit import EstimateError, estimate_file
    from tui_llm.fit.estimate import CUDA, EstimateSettings

    model = write_llama_gguf(tmp_path / "m.gguf", n_layer=2, n_embd=64, n_head=4)
    raw = bytearray(model.read_bytes())
    key = b"llama.block_count"
    at = raw.index(key) + len(key) + 4  # the key, then its u32 value type, then the value
    struct.pack_into("<I", raw, at, 100_000)
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(EstimateError, match="100000 layers, the file has tensors for 2"):
        estimate_file(damaged, EstimateSettings(), CUDA)
    settings = LoadSettings(model_path=str(damaged))
    assert fit.auto_offload_for_path(damaged, settings, 8 << 30) is None
