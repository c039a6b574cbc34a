#!/usr/bin/env bash
# Same-sitting training/inference figures of every registry model against the PyTorch reference
# (docs/models.md "Speed (CPU)"). Not a test: needs a release build and a Python with torch.
#   PYTHON=/path/to/python scripts/bench_vs_torch.sh [rounds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
THREADS=${2:-2}
PY=${PYTHON:-python3}
BIN=${FLOWCAST:-target/release/flowcast}
export RAYON_NUM_THREADS=$THREADS
for r in $(seq "$ROUNDS"); do
  for m in lstm gru deeplob transformer; do
    steps=20; [ "$m" = deeplob ] && steps=5; [ "$m" = transformer ] && steps=5
    set_args=(); { [ "$m" = lstm ] || [ "$m" = gru ]; } && set_args=(--set hidden=64)
    "$BIN" bench train --model "$m" "${set_args[@]}" --baseline none --steps "$steps" --json 2>/dev/null \
      | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print("flowcast %-12s train %9.1f  burn infer %9.1f  serving infer %9.1f" % (r["model"], r["train_samples_per_s"], r["infer_windows_per_s"], r["candle_infer_windows_per_s"]))'
    "$PY" scripts/torch_reference.py --model "$m" --threads "$THREADS" --steps $((steps * 2)) 2>&1 | tail -1 | sed 's/^/pytorch  /'
  done
done
