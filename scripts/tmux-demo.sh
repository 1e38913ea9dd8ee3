#!/usr/bin/env bash
# Drive the real app in tmux like a person: open the demo model, send a message, change the
# offload, and capture the screen after each step into $OUT_DIR (default: ./tmux-capture).
#
# Offload is real without a GPU: an RPC server on 127.0.0.1 is started and used as "the GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT_DIR:-tmux-capture}"
SESSION="tui-llm-demo-$$"
PORT="${PORT:-50152}"
mkdir -p "$OUT_DIR"
export TUI_LLM_CONFIG_DIR="${TUI_LLM_CONFIG_DIR:-$(mktemp -d)}"

.venv/bin/tui-llm rpc-server --port "$PORT" --threads 1 >"$OUT_DIR/rpc-server.log" 2>&1 &
RPC_PID=$!
trap 'tmux kill-session -t "$SESSION" 2>/dev/null || true; kill $RPC_PID 2>/dev/null || true' EXIT
sleep 1

capture() { sleep "${2:-2}"; tmux capture-pane -p -t "$SESSION" >"$OUT_DIR/$1.txt"; echo "== $1"; cat "$OUT_DIR/$1.txt"; }
# Wait (up to 60 s) until the screen shows TEXT, as a person waits for the app.
wait_for() {
    for _ in $(seq 300); do
        tmux capture-pane -p -t "$SESSION" | grep -q -- "$1" && return 0
        sleep 0.2
    done
    echo "timed out waiting for: $1" >&2
    return 1
}

tmux new-session -d -s "$SESSION" -x "${COLS:-160}" -y "${ROWS:-48}" \
    ".venv/bin/tui-llm demo --rpc 127.0.0.1:$PORT --offload 0"
wait_for "GPU 0/9"
capture 1-opened 1
tmux send-keys -t "$SESSION" "Tell me about llamas and the sea"
tmux send-keys -t "$SESSION" Enter
wait_for "tok/s"
capture 2-reply 1
tmux send-keys -t "$SESSION" C-o
tmux send-keys -t "$SESSION" End
capture 3-pending 1
tmux send-keys -t "$SESSION" Enter
wait_for "GPU 9/9"
capture 4-reloaded 1
# Applying returns the focus to the message box.
tmux send-keys -t "$SESSION" "And the mountains?"
tmux send-keys -t "$SESSION" Enter
capture 5-after-reload 4
tmux send-keys -t "$SESSION" C-q
