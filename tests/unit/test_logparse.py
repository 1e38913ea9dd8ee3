"""Reading llama.cpp's load log: buffers, offloaded layers, and the layers of each device."""

from __future__ import annotations

from tui_llm.engine.logparse import parse_load_log
from tui_llm.engine.protocol import DeviceLayers

SPLIT_LOAD = """\
load_tensors: layer   0 assigned to device CPU, is_swa = 0
load_tensors: layer   1 assigned to device CPU, is_swa = 0
load_tensors: layer   2 assigned to device RPC0[127.0.0.1:50052], is_swa = 0
load_tensors: layer   3 assigned to device RPC0, is_swa = 0
load_tensors: layer   4 assigned to device CUDA0, is_swa = 0
load_tensors: layer   5 assigned to device CUDA0, is_swa = 0
load_tensors: layer   6 assigned to device CUDA0, is_swa = 0
load_tensors: offloading output layer to GPU
load_tensors: offloading 4 repeating layers to GPU
load_tensors: offloaded 5/7 layers to GPU
load_tensors:   CPU_Mapped model buffer size =    10.00 MiB
load_tensors:        CUDA0 model buffer size =    30.00 MiB
load_tensors: RPC0[127.0.0.1:50052] model buffer size =    20.00 MiB
"""


def test_layers_of_each_device_in_the_order_they_appear() -> None:
    report = parse_load_log(SPLIT_LOAD.splitlines())
    assert report.offloaded_layers == 5 and report.total_layers == 7
    assert report.layers_by_device == (DeviceLayers("RPC0", 2), DeviceLayers("CUDA0", 3))
    assert sum(d.layers for d in report.layers_by_device) == report.offloaded_layers
    assert {b.device for b in report.buffers} == {"CPU_Mapped", "CUDA0", "RPC0[127.0.0.1:50052]"}


def test_a_layer_assigned_twice_counts_once() -> None:
    lines = [
        "load_tensors: layer   0 assigned to device CUDA0, is_swa = 0",
        "load_tensors: layer   0 assigned to device CUDA1, is_swa = 0",
    ]
    assert parse_load_log(lines).layers_by_device == (DeviceLayers("CUDA1", 1),)


def test_all_on_the_cpu_lists_no_device() -> None:
    lines = [f"load_tensors: layer {n:3d} assigned to device CPU, is_swa = 0" for n in range(9)]
    report = parse_load_log([*lines, "load_tensors: offloaded 0/9 layers to GPU"])
    assert report.layers_by_device == ()
    assert not report.out_of_memory


def test_layer_lines_naming_an_endpoint_find_their_rpc_server() -> None:
    from tui_llm.engine.protocol import DeviceInfo

    devices = (
        DeviceInfo("RPC0", "10.0.0.1:50052", "gpu", 1, 2),
        DeviceInfo("RPC1", "10.0.0.2:50052", "gpu", 1, 2),
    )
    lines = [
        "load_tensors: layer   0 assigned to device RPC0[10.0.0.1:50052], is_swa = 0",
        "load_tensors: layer   1 assigned to device RPC0[10.0.0.2:50052], is_swa = 0",
        "load_tensors: layer   2 assigned to device RPC0[10.0.0.2:50052], is_swa = 0",
    ]
    assert parse_load_log(lines, devices).layers_by_device == (
        DeviceLayers("RPC0", 1),
        DeviceLayers("RPC1", 2),
    )


def test_last_error_line_skips_the_chatter() -> None:
    from tui_llm.engine.logsink import last_error_line

    log = [
        "llama_model_load: error loading model: tensor 'x' data is not within the file bounds",
        "Using chat bos_token: <s>",
        "",
    ]
    assert last_error_line(log) == log[0]
    assert last_error_line(["Using chat eos_token: </s>"]) is None
    refused = [
        "llama_model_load: error loading model: device RPC0 does not support split buffers",
        "llama_model_load_from_file_impl: failed to load model",
    ]
    assert last_error_line(refused) == refused[0]
    assert last_error_line(refused[1:]) == refused[1]
    repack = (
        "done_getting_tensors: tensor 'token_embd.weight' (q8_0) (and 272 others) cannot be used "
        "with preferred buffer type CPU_REPACK, using CPU instead"
    )
    assert last_error_line([repack, "llama_context: n_ctx = 512"]) is None  # a fallback note
    # The debug line of each prompt's stoppable decode (``native.PrefillAbort``).
    assert last_error_line(["set_abort_callback: call", "set_abort_callback: call"]) is None
    # A decode stopped on request, as llama.cpp logs it (an engine log after Esc in a prompt).
    stopped = [
        "graph_compute: ggml_backend_sched_graph_compute_async failed with error 1",
        "process_ubatch: failed to compute graph, compute status: 1",
        "decode: removing memory module entries for seq_id = 0, pos = [0, +inf)",
        "llama_decode: failed to decode, ret = 2",
    ]
    assert last_error_line(stopped) is None
    failed = ["process_ubatch: failed to compute graph, compute status: -1"]
    assert last_error_line(failed) == failed[0]
    assert last_error_line(["llama_decode: failed to decode, ret = -3"]) is not None


def test_abort_message_is_found_above_its_backtrace() -> None:
    """GGML_ABORT's "FILE:LINE: MESSAGE" comes before gdb's backtrace (ggml.c, ggml_abort)."""
    from tui_llm.engine.logsink import RPC_SERVER_GONE, abort_message

    log = [
        "recv failed (bytes_recv=0, size_to_recv=8)",
        f"/tmp/pip-x/vendor/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:566: {RPC_SERVER_GONE}",
        "[New LWP 1534]",
        "#0  syscall () at ../sysdeps/unix/sysv/linux/x86_64/syscall.S:38",
        "38\t../sysdeps/unix/sysv/linux/x86_64/syscall.S: No such file or directory.",
        "#2  0x00007f646e1f0240 in rpc_dispatcher::synchronize() () from libggml-rpc.so.0",
        "[Inferior 1 (process 1531) detached]",
    ]
    assert abort_message(log) == RPC_SERVER_GONE
    assert abort_message(["ggml.c:1234: GGML_ASSERT(n_dims <= 4) failed"]) == (
        "GGML_ASSERT(n_dims <= 4) failed"
    )
    assert abort_message(["llama_context: n_ctx = 512", "#0 main () at x.c:3"]) is None
