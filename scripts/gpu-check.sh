#!/usr/bin/env bash
# The one prepared GPU run (docs/GPU.md): on the lent NVIDIA machine, from the repository root,
# with .device/ carried (the CUDA build of llama-cpp-python and the pure-Python wheels the machine
# lacks). Usage: scripts/gpu-check.sh dense|moe [DEADLINE_S] | app-ab; figures and logs land in $OUT.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; head -15 "$OUT/nvidia-smi.txt"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/*.whl > "$OUT/pip.log" 2>&1 || tail -3 "$OUT/pip.log"
tar xJf .device/llama_cpp-*.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD
NV_LIBS=$(python3 -c "import nvidia,os;print(':'.join(os.path.join(p,sub,'lib') for p in nvidia.__path__ for sub in ('cu13','cuda_runtime','cublas') if os.path.isdir(os.path.join(p,sub,'lib'))))")
export LD_LIBRARY_PATH=$NV_LIBS:${LD_LIBRARY_PATH:-}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; for d in ${NV_LIBS//:/ }; do ls "$d" | grep -E 'libcu(blas|dart)' ; done
python3 -c "import llama_cpp; print(llama_cpp.__version__); print(llama_cpp.llama_print_system_info().decode())" 2>&1 | tee "$OUT/system-info.txt"
if [ "${1:-}" = app-ab ]; then
  # The app's streaming lateness at two commits, interleaved, on this quiet 16-core machine:
  # .device/old holds the older tui_llm/ and themes/ (with today's benchmarks/).
  for name in DATA CONFIG STATE LOG; do export "TUI_LLM_${name}_DIR=/tmp/ab/${name,,}"; done
  DEMO=$(python3 -c "from tui_llm.catalog.demo import ensure_demo_model; print(ensure_demo_model())")
  for run in 1 2 3; do
    for tree in old new; do
      dir=$PWD; [ "$tree" = old ] && dir=$PWD/.device/old
      (cd "$dir" && PYTHONPATH=/tmp/site:$dir python3 -m benchmarks.bench_app --streaming-only \
        --app-session "$OUT/ab-$tree-$run.json" "$DEMO" "$DEMO" > "$OUT/ab-$tree-$run.log" 2>&1)
      python3 -c "import json,sys; print(sys.argv[1], json.load(open(sys.argv[2]))['sections']['stall'][3])" \
        "$tree-$run" "$OUT/ab-$tree-$run.json"
    done
  done
  exit 0
fi
python3 -m benchmarks.gpu_check --out "$OUT" --phase "${1:-dense}" --deadline-s "${2:-420}" 2>&1 | tee "$OUT/gpu-check.log"
