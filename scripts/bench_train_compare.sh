#!/usr/bin/env bash
# Training throughput, kwx (examples/bench_train.rs) beside PyTorch + PEFT
# (scripts/bench_train_peer.py) on the same shapes, batch 8 x 128, same thread count, in one job;
# prints a table with the ratio kwx / PyTorch (tokens per second) and both peak RSS.
#   THREADS="1 2" SHAPES="small 270m" PYTHON=/path/to/python bash scripts/bench_train_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-1}
SHAPES=${SHAPES:-small 270m}
cargo build --locked --release --example bench_train >/dev/null 2>&1
printf '| shape | mode | threads | kwx tok/s | torch+peft tok/s | kwx / torch | kwx peak RSS (MiB) | torch peak RSS (MiB) |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for shape in $SHAPES; do
  steps=5; [ "$shape" = 270m ] && steps=2
  for mode in lora full; do
    for t in $THREADS; do
      kwx=$(RAYON_NUM_THREADS=$t target/release/examples/bench_train --shape "$shape" --mode "$mode" --steps $steps | tail -1)
      peer=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$t $PYTHON scripts/bench_train_peer.py --shape "$shape" --mode "$mode" --threads "$t" --steps $steps 2>/dev/null | tail -1)
      $PYTHON - "$shape" "$mode" "$t" "$kwx" "$peer" <<'PY'
import json, sys
shape, mode, t, k, p = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
print(f"| {shape} | {mode} | {t} | {k['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | {k['tokens_per_s']/p['tokens_per_s']:.2f}x | {k['peak_rss_mib']:.0f} | {p['peak_rss_mib']:.0f} |")
PY
    done
  done
done
