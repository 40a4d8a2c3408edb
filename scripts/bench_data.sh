#!/usr/bin/env bash
# kwx-data throughput: criterion benches (examples/s, JSONL read/validate/write MiB/s in memory),
# then a 1 GB JSONL file streamed through examples/validate_dataset (MiB/s from disk, peak RSS).
#   bash scripts/bench_data.sh [workdir]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cargo bench --locked -p kwx-data --bench builder --bench jsonl -- --noplot 2>&1 | grep -E "^[a-z_]+/|time:|thrpt:"
cargo build --locked --release --example build_dataset --example validate_dataset >/dev/null 2>&1
target/release/examples/build_dataset --out "$work/ds" --train 20000 --val 10 --test 10 >/dev/null
: > "$work/big.jsonl"
while [ "$(stat -c %s "$work/big.jsonl")" -lt 1000000000 ]; do cat "$work/ds/train.sft.jsonl" >> "$work/big.jsonl"; done
target/release/examples/validate_dataset --input "$work/big.jsonl" --output "$work/clean.jsonl" 2>&1 >/dev/null | tail -1
rm -f "$work/big.jsonl" "$work/clean.jsonl"
