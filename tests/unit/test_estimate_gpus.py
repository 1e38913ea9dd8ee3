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
