"""The line shown for a failed load names its cause: llama.cpp's own log of loading real broken
files, read through the table of its load-failure messages (``LOAD_FAILURES``)."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_engine import write_refused_model
from tests.helpers import engine, settings, user
from tui_llm.engine.client import EngineClient, EngineError
from tui_llm.engine.logparse import load_failure_line
from tui_llm.engine.protocol import SamplingParams

# llama.cpp itself, as the engine calls it, logging to a file: for files the engine's own
# reader refuses before llama.cpp sees them. Each load's log starts with a line "=== NAME".
LOAD_WITH_LLAMA_CPP = """
import ctypes, sys
import llama_cpp
log = open(sys.argv[1], "w", buffering=1)
def write(_level, text, _user):
    log.write(text.decode(errors="replace"))
callback = llama_cpp.llama_log_callback(write)
llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_default_params()
for path in sys.argv[3:]:
    log.write(f"=== {path}\\n")
    if llama_cpp.llama_model_load_from_file(path.encode(), params):
        sys.exit(f"{path} loaded")
# A context too large for memory, under an address-space limit so that it fails at once
# (bad_alloc) rather than taking the machine's memory until the OOM killer comes.
import resource
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
log.write("=== huge-context.gguf\\n")
model = llama_cpp.llama_model_load_from_file(sys.argv[2].encode(), params)
context_params = llama_cpp.llama_context_default_params()
context_params.n_ctx = 1 << 30
if llama_cpp.llama_init_from_model(model, context_params):
    sys.exit("the huge context was made")
"""

BROKEN = {
    "truncated-header.gguf": lambda data: data[:6],
    "truncated-metadata.gguf": lambda data: data[:200],
    "wrong-magic.gguf": lambda data: b"GGML" + data[4:],
    "data-past-the-end.gguf": lambda data: data[:-1000],
    "version-99.gguf": lambda data: data[:4] + struct.pack("<I", 99) + data[8:],
}


@pytest.fixture(scope="module")
def llama_cpp_logs(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Each broken file's name and the lines llama.cpp logged loading it."""
    folder = tmp_path_factory.mktemp("broken")
    data = tiny_model.read_bytes()
    paths = []
    for name, damage in BROKEN.items():
        paths.append(folder / name)
        paths[-1].write_bytes(damage(data))
    log = folder / "llama.log"
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_LLAMA_CPP, str(log), str(tiny_model), *map(str, paths)],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    logs: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        if line.startswith("=== "):
            current = logs.setdefault(Path(line[4:]).name, [])
        else:
            current.append(line)
    assert sorted(logs) == sorted([*BROKEN, "huge-context.gguf"])
    return logs


@pytest.mark.parametrize(
    ("name", "said"),
    [
        (
            "truncated-header.gguf",
            "the file is cut short or damaged: llama.cpp could not read its header",
        ),
        ("truncated-metadata.gguf", "the file is cut short or damaged: llama.cpp could not read"),
        ("wrong-magic.gguf", "not a GGUF file (it starts with 'GGML', not 'GGUF')"),
        ("data-past-the-end.gguf", "the data of tensor 'blk.1.ffn_down.weight' lies past its end"),
        ("version-99.gguf", "GGUF version 99; this llama.cpp reads up to version 3"),
        ("huge-context.gguf", f"not enough memory for a context of {1 << 30} tokens"),
    ],
)
def test_llama_cpp_logs_of_broken_files_give_the_cause(
    llama_cpp_logs: dict[str, list[str]], name: str, said: str
) -> None:
    lines = llama_cpp_logs[name]
    line = load_failure_line(lines, n_ctx=1 << 30)
    assert line is not None and said in line, (line, lines[-6:])
    assert line != last_error(tuple(lines))  # what the last error line alone would say


async def test_the_engine_names_the_cause_not_the_last_error_line(
    model_dir: Path, tiny_model: Path
) -> None:
    refused = write_refused_model(model_dir)
    async with engine() as client:
        with pytest.raises(EngineError) as unknown_arch:
            await client.load(settings(refused))
        # llama.cpp's own closing line names no cause; the log tail still has it.
        assert any("failed to load model" in line for line in unknown_arch.value.log_tail)
        await client.load(settings(tiny_model))
    assert str(unknown_arch.value) == (
        "cannot load unknown-arch.gguf: this llama.cpp does not know the model architecture "
        "'notanarch' (a newer one may)"
    )


def last_error(lines: tuple[str, ...]) -> str:
    from tui_llm.engine.logsink import last_error_line

    return last_error_line(lines) or ""


async def test_an_abort_says_what_the_engine_was_doing(model_32l: Path, model_8l: Path) -> None:
    """SIGABRT (what llama.cpp's GGML_ABORT raises) during a load, a reply and a benchmark."""
    client = EngineClient()
    try:
        await client.start()

        def abort_on_first_progress(_progress: float) -> None:
            client.kill(signal.SIGABRT)

        with pytest.raises(EngineError) as during_load:
            await client.load(settings(model_32l), on_progress=abort_on_first_progress)
        await client.start()
        await client.load(settings(model_8l))
        stream = client.generate([user("go on")], SamplingParams(max_tokens=100000), 0.0)
        await stream.__anext__()
        client.kill(signal.SIGABRT)
        with pytest.raises(EngineError) as during_reply:
            async for _ in stream:
                pass
        await client.start()
        await client.load(settings(model_8l, n_ctx=4096))
        bench = asyncio.create_task(client.bench(2000, 2000))
        while not bench.done() and not any(
            p.activity == "running a benchmark" for p in client._pending.values()
        ):
            await asyncio.sleep(0.01)
        client.kill(signal.SIGABRT)
        with pytest.raises(EngineError) as during_bench:
            await bench
    finally:
        await client.close()
    for caught, doing in (
        (during_load, f"while loading {model_32l.name}"),
        (during_reply, "while writing a reply"),
        (during_bench, "while running a benchmark"),
    ):
        assert caught.value.kind == "crashed"
        assert f"the engine process killed by SIGABRT {doing}" in str(caught.value)
