#!/usr/bin/env bash
# Training throughput, kwx (examples/bench_train.rs) beside PyTorch + PEFT
# (scripts/bench_train_peer.py) on the same shapes, batch 8 x 128, same thread count, in one job;
# prints a table with the ratio kwx / PyTorch (tokens per second) and both peak RSS.
#   THREADS="1 2" SHAPES="small 270m" MODES="lora lora-tokens full" PRECISIONS="f32 bf16 f16" \
#     REPEAT=5 PYTHON=/path/to/python bash scripts/bench_train_compare.sh
# PRECISIONS (default f32): kwx's --precision beside PyTorch autocast in the same type (LoRA
# with the frozen base in it; f16 with loss scaling on both sides).
# Each cell runs REPEAT times, kwx and PyTorch alternating (so a slow spell of a shared machine
# hits both), and reports the median of each (the range in brackets).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-1}
SHAPES=${SHAPES:-small 270m}
REPEAT=${REPEAT:-3}
cargo build --locked --release --example bench_train >/dev/null 2>&1
printf '| shape | mode | precision | threads | kwx tok/s | torch+peft tok/s | kwx / torch | kwx peak RSS (MiB) | torch peak RSS (MiB) |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for shape in $SHAPES; do
  steps=5; [ "$shape" = 270m ] && steps=2
  for mode in ${MODES:-lora lora-tokens full}; do
   for prec in ${PRECISIONS:-f32}; do
    for t in $THREADS; do
      kwx=(); peer=()
      for _ in $(seq "$REPEAT"); do
        kwx+=("$(RAYON_NUM_THREADS=$t target/release/examples/bench_train --shape "$shape" --mode "$mode" --precision "$prec" --steps $steps | tail -1)")
        peer+=("$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$t $PYTHON scripts/bench_train_peer.py --shape "$shape" --mode "$mode" --precision "$prec" --threads "$t" --steps $steps 2>/dev/null | tail -1)")
      done
      $PYTHON - "$shape" "$mode" "$prec" "$t" "$(printf '%s\n' "${kwx[@]}")" "$(printf '%s\n' "${peer[@]}")" <<'PY'
import json, statistics, sys
shape, mode, prec, t = sys.argv[1:5]
k = [json.loads(l) for l in sys.argv[5].splitlines()]
p = [json.loads(l) for l in sys.argv[6].splitlines()]
def cell(runs):
    v = [r["tokens_per_s"] for r in runs]
    m = statistics.median(v)
    return m, (f"{m:.0f} [{min(v):.0f}–{max(v):.0f}]" if len(v) > 1 else f"{m:.0f}")
km, ks = cell(k)
pm, ps = cell(p)
rss = lambda runs: max(r["peak_rss_mib"] for r in runs)
print(f"| {shape} | {mode} | {prec} | {t} | {ks} | {ps} | {km/pm:.2f}x | {rss(k):.0f} | {rss(p):.0f} |")
PY
    done
   done
  done
done
