#!/usr/bin/env bash
# Tokenizer training, kwx (examples/bench_tokenizer.rs, crates/kwx-tokenizer) beside SentencePiece
# and HF tokenizers (scripts/bench_tokenizer_peer.py, settings in its docstring) on one corpus:
# BPE and Unigram, vocab 16000, the same thread count, each run in its own process (kwx with
# --min-frequency 1: the peers keep every word and pair). Prints a
# markdown table: wall time, peak RSS, and kwx / peer wall time per model (< 1: kwx is faster).
# Without CORPUS, first generates a ~20 MB Korean corpus at /tmp/kwx-corpus-20mb.txt
# (examples/make_corpus.rs). The JSON lines of all runs are kept in $JSONL
# (default /tmp/kwx-bench-tokenizer.jsonl); each peer run saves its model in /tmp/kwx-tokenizer-peer.
#   bash scripts/bench_tokenizer_compare.sh [CORPUS] [THREADS]        # THREADS defaults to 1
#   VOCAB=8000 PYTHON=/path/to/python bash scripts/bench_tokenizer_compare.sh corpus.txt 2
#   bash scripts/bench_tokenizer_compare.sh --table RUNS.jsonl         # table from saved lines
set -euo pipefail
PYTHON=${PYTHON:-/work/pyenv/bin/python}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VOCAB=${VOCAB:-16000}
JSONL=${JSONL:-${TMPDIR:-/tmp}/kwx-bench-tokenizer.jsonl}

table() {  # table JSONL_FILE: markdown table of the runs' JSON lines (other lines are ignored)
  "$PYTHON" - "$1" <<'PY'
import json, sys
runs = []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line.startswith("{"):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "peer" in r and "model" in r:
            runs.append(r)
if not runs:
    sys.exit("no runs to tabulate")
r0 = runs[0]
threads = sorted({str(r.get("threads")) for r in runs})
print(f"corpus {r0['corpus_bytes'] / 1e6:.1f} MB, vocab {r0['vocab_size']}, threads {', '.join(threads)}")
print()
print("| model | peer | wall (s) | peak RSS (MiB) | kwx / peer wall |")
print("|---|---|---|---|---|")
order = {"kwx": 0, "sentencepiece": 1, "hf-tokenizers": 2}
models = sorted({r["model"] for r in runs}, key=lambda m: (m != "bpe", m))
for model in models:
    rows = sorted((r for r in runs if r["model"] == model), key=lambda r: (order.get(r["peer"], 9), r["peer"]))
    kwx = next((r for r in rows if r["peer"] == "kwx"), None)
    for r in rows:
        if r["peer"] == "kwx":
            ratio = "-"
        elif kwx is None or not r["wall_s"]:
            ratio = "n/a"
        else:
            ratio = f"{kwx['wall_s'] / r['wall_s']:.2f}x"
        print(f"| {model} | {r['peer']} | {r['wall_s']:.2f} | {r['peak_rss_mib']:.0f} | {ratio} |")
PY
}

if [ "${1:-}" = --table ]; then
  table "${2:?usage: bench_tokenizer_compare.sh --table RUNS.jsonl}"
  exit
fi

CORPUS=${1:-}
THREADS=${2:-1}
[ -n "$CORPUS" ] && CORPUS=$(realpath "$CORPUS")
cd "$(dirname "$0")/.."
if [ -z "$CORPUS" ]; then
  CORPUS=/tmp/kwx-corpus-20mb.txt
  cargo run --locked --release --quiet --example make_corpus -- --bytes 20000000 --out "$CORPUS" >&2
fi

status=0
: >"$JSONL"
RAYON_NUM_THREADS=$THREADS cargo run --locked --release --quiet --example bench_tokenizer -- \
  --corpus "$CORPUS" --vocab-size "$VOCAB" --models bpe,unigram --threads "$THREADS" \
  --min-frequency 1 >>"$JSONL" || status=1
"$PYTHON" scripts/bench_tokenizer_peer.py --corpus "$CORPUS" --vocab-size "$VOCAB" --models bpe,unigram \
  --peers sentencepiece,hf --threads "$THREADS" >>"$JSONL" || status=1
table "$JSONL"
[ $status = 0 ] || echo "some runs failed; see above" >&2
exit $status
