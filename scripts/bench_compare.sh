#!/usr/bin/env bash
# kwx (criterion, benches/gemma.rs) and PyTorch (scripts/bench_peer.py) on the same Gemma-3-270M
# shapes, at 1 and 2 threads, in one job; prints a table with the ratio PyTorch / kwx.
#   PYTHON=/path/to/python bash scripts/bench_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
printf '| threads | kwx prefill 128 (ms) | torch prefill 128 (ms) | kwx decode (ms/token) | torch decode (ms/token) | prefill speedup | decode speedup |\n'
printf '|---|---|---|---|---|---|---|\n'
for t in 1 2; do
  RAYON_NUM_THREADS=$t cargo bench --locked --bench gemma -- --noplot >/dev/null 2>&1
  kp=$($PYTHON -c "import json;print(json.load(open('target/criterion/gemma3_270m/prefill_128/new/estimates.json'))['median']['point_estimate']/1e6)")
  kd=$($PYTHON -c "import json;print(json.load(open('target/criterion/gemma3_270m/decode_1_after_128/new/estimates.json'))['median']['point_estimate']/1e6)")
  peer=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$t $PYTHON scripts/bench_peer.py --threads "$t" 2>/dev/null | tail -1)
  $PYTHON - "$t" "$kp" "$kd" "$peer" <<'PY'
import json, sys
t, kp, kd, peer = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
tp, td = peer["prefill_ms"], peer["decode_ms"]
print(f"| {t} | {kp:.1f} | {tp:.1f} | {kd:.1f} | {td:.1f} | {tp/kp:.2f}x | {td/kd:.2f}x |")
PY
done
