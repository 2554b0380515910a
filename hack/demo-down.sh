#!/usr/bin/env bash
# `make demo-down`: stop the demo's operator and dev cluster (only what `make demo` started).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR=${GPUMIX_DEMO_STATE_DIR:-$HOME/.cache/gpumix/demo}
if [[ -f "$STATE_DIR/operator.pid" ]]; then
  pid=$(cat "$STATE_DIR/operator.pid")
  if kill -0 "$pid" 2>/dev/null; then kill "$pid" && echo "stopped the operator (pid $pid)"; fi
  rm -f "$STATE_DIR/operator.pid"
fi
"${GPUMIX:-.venv/bin/gpumix}" dev-cluster down --state-dir "$STATE_DIR/cluster"
