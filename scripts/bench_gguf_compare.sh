#!/usr/bin/env bash
# kwx vs llama.cpp on the real Gemma 3 270M GGUF (Q4_K_M), same file, same prompt ids, same
# threads, in one job: load time, peak RSS, prefill and decode tokens/s, and the ratios.
#   PYTHON=/path/to/python-with-llama-cpp bash scripts/bench_gguf_compare.sh [threads...]
# Needs scripts/fetch_model.sh to have run and llama-cpp-python installed (see
# scripts/llama_cpp_peer.py for the build that works on this CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
threads=${*:-1 2}
model=$(bash scripts/fetch_model.sh 2>/dev/null | head -1)
cargo build --locked --release --example bench_gguf >/dev/null 2>&1
printf '| threads | engine | load (s) | peak RSS (MiB) | prefill 128 (tok/s) | decode (tok/s) |\n'
printf '|---|---|---|---|---|---|\n'
for t in $threads; do
  kwx=$(RAYON_NUM_THREADS=$t target/release/examples/bench_gguf --model "$model" --prompt-tokens 128 --new-tokens 64 --reps 3)
  ids=$(echo "$kwx" | $PYTHON -c "import json,sys;print(','.join(map(str,json.load(sys.stdin)['prompt_ids'])))")
  peer=$(OMP_WAIT_POLICY=PASSIVE $PYTHON scripts/llama_cpp_peer.py bench --model "$model" --threads "$t" --ids "$ids" --new-tokens 64 --reps 3)
  $PYTHON - "$t" "$kwx" "$peer" <<'PY'
import json, sys
t, k, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for name, d in (("kwx", k), ("llama.cpp", p)):
    print(f"| {t} | {name} | {d['load_s']:.2f} | {d['peak_rss_mib']:.0f} | {d['prefill_tok_s']:.0f} | {d['decode_tok_s']:.1f} |")
print(f"| {t} | kwx / llama.cpp | {k['load_s']/p['load_s']:.2f}x time | {k['peak_rss_mib']/p['peak_rss_mib']:.2f}x | "
      f"{k['prefill_tok_s']/p['prefill_tok_s']:.2f}x | {k['decode_tok_s']/p['decode_tok_s']:.2f}x |")
PY
done
