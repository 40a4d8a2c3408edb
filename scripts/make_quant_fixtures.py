#!/usr/bin/env python3
"""Builds the GGML block-codec reference fixtures under crates/kwx-core/tests/fixtures/gguf_quant.

For every type the Rust codecs in `kwx_core::gguf::quant` decode (F32, F16, BF16, Q8_0, Q4_0,
Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) it writes

- `{TYPE}.bin`: raw little-endian block bytes, as they sit in a GGUF tensor;
- `{TYPE}.f32`: what gguf-py's `gguf.quants.dequantize` makes of them (little-endian f32);
- `{TYPE}.input.f32` (F32, F16, BF16, Q8_0 only): the f32 input that `gguf.quants.quantize`
  turned into `{TYPE}.bin`, so the Rust test checks `quantize` byte for byte;
- `manifest.json`: the list of the above with types, element counts and package versions, plus
  gguf-py's full type table (`all_types`: name, id, block size, bytes per block).

Where the bytes come from:
- F32, F16, BF16, Q8_0: `gguf.quants.quantize` of random f32 data (10 blocks of 32 values with
  scales from 1e-38 to 3e3, an all-negative block, an all-zero block, rounding ties, f16 and
  f32 subnormals) - the bytes are exactly gguf-py's;
- Q4_0, Q4_1, Q5_0, Q5_1: the same kind of data (first 8 blocks) through `gguf.quants.quantize`, followed by four
  blocks of random bytes (finite f16 scale fields) so every bit pattern of the packed nibbles and
  high bits turns up;
- Q4_K, Q5_K, Q6_K: gguf-py has no quantizer for K-quants, so four super-blocks of random bytes
  with finite f16 `d`/`dmin` (one with negative `d`, one all zero).

The reference values are always gguf-py's dequantization, which mirrors ggml-quants.c
`dequantize_row_*` (same operation order, so the Rust side must match bit for bit).

Run from the repository root (needs the `gguf` package and numpy):
    /work/pyenv/bin/python scripts/make_quant_fixtures.py [--out DIR]
"""

import argparse
import importlib.metadata
import json
import os

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants

SEED = 20240611
QT = GGMLQuantizationType

# Types whose fixture bytes come from gguf-py's own quantizer (and whose input we keep).
QUANTIZE_CHECKED = [QT.F32, QT.F16, QT.BF16, QT.Q8_0]
# Types quantized by gguf-py from data, then followed by random-byte blocks.
LEGACY = [QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1]
# K-quants: random bytes only (gguf-py has no quantizer for them).
KQUANTS = [QT.Q4_K, QT.Q5_K, QT.Q6_K]

# Byte offsets of the f16 scale fields inside one block (everything else is packed integers).
F16_FIELDS = {
    QT.Q4_0: [0],
    QT.Q4_1: [0, 2],
    QT.Q5_0: [0],
    QT.Q5_1: [0, 2],
    QT.Q4_K: [0, 2],  # d, dmin
    QT.Q5_K: [0, 2],  # d, dmin
    QT.Q6_K: [208],  # d (after ql[128], qh[64], scales[16])
}


def block_data(rng: np.random.Generator, n_blocks: int, block: int) -> np.ndarray:
    """Random f32 values, one scale per block, with the awkward cases spelled out."""
    scales = [1.0, 0.01, 100.0, 1e-3, 3000.0, 0.5, 0.0, 7.0, 1e-38, 3e-37]
    out = []
    for i in range(n_blocks):
        s = scales[i % len(scales)]
        x = rng.standard_normal(block).astype(np.float32) * np.float32(s)
        if i == 5:
            x = -np.abs(x) - np.float32(0.25)  # all negative
        if i == 6:
            x = np.zeros(block, dtype=np.float32)  # all zero
        if i == 7:
            # amax 127 -> Q8_0 scale exactly 1: halves test round-half-away-from-zero; the
            # small values are f16 subnormals and bf16 ties.
            x[:8] = np.array([127.0, -2.5, 3.5, -0.5, 0.5, 1.5, -126.5, 4.5], dtype=np.float32)
            x[8:12] = np.array([3e-6, -4.5e-7, 6.0e-8, 1e-4], dtype=np.float32)
            # bf16 ties: low 16 bits exactly 0x8000 with an even and an odd upper half
            x[12:14] = np.array([0x3F808000, 0x3F818000], dtype=np.uint32).view(np.float32)
        # i == 8: f32 subnormals; the Q8_0 scale underflows so that 1/d is inf and gguf-py's
        # cast of inf/NaN to int8 stores 0. i == 9: 1/d is finite but huge, d flushes to 0 in f16.
        out.append(x)
    return np.concatenate(out).astype(np.float32)


def random_blocks(rng: np.random.Generator, qtype: GGMLQuantizationType, n_blocks: int,
                  negative_d: bool, zero_last: bool) -> np.ndarray:
    """Random block bytes with finite f16 scale fields."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for b in range(n_blocks):
        for k, off in enumerate(F16_FIELDS[qtype]):
            v = np.float16(rng.uniform(1e-4, 0.1) * (10.0 if k == 0 else 1.0))
            if negative_d and b == 1 and k == 0:
                v = -v
            raw[b, off:off + 2] = np.frombuffer(np.float16(v).astype("<f2").tobytes(), dtype=np.uint8)
    if zero_last:
        raw[-1, :] = 0
    return raw.reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="crates/kwx-core/tests/fixtures/gguf_quant")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rng = np.random.default_rng(SEED)
    entries = []

    def write(name: str, arr: np.ndarray) -> str:
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(arr.tobytes())
        return name

    for qtype in QUANTIZE_CHECKED + LEGACY + KQUANTS:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        entry = {"type": qtype.name, "type_id": int(qtype), "block_size": block_size, "type_size": type_size}
        if qtype in KQUANTS:
            raw = random_blocks(rng, qtype, 4, negative_d=True, zero_last=True)
            entry["source"] = "random bytes (gguf-py has no K-quant quantizer)"
        else:
            data = block_data(rng, 10 if qtype in QUANTIZE_CHECKED else 8, 32)
            # The underflowing Q8_0 block makes numpy warn (inf * 0, inf -> int8); that is the
            # behaviour being recorded, so keep the output quiet.
            with np.errstate(all="ignore"):
                q = quants.quantize(data, qtype)
            if qtype == QT.F32:
                raw = q.astype("<f4").view(np.uint8).reshape(-1)
            elif qtype == QT.F16:
                raw = q.astype("<f2").view(np.uint8).reshape(-1)
            else:
                raw = np.ascontiguousarray(q, dtype=np.uint8).reshape(-1)
            if qtype in LEGACY:
                raw = np.concatenate([raw, random_blocks(rng, qtype, 4, negative_d=True, zero_last=False)])
                entry["source"] = "gguf.quants.quantize of 8 blocks, then 4 blocks of random bytes"
            else:
                entry["source"] = "gguf.quants.quantize"
                entry["input"] = write(f"{qtype.name}.input.f32", data.astype("<f4"))
        assert raw.dtype == np.uint8 and raw.size % type_size == 0
        n_elements = raw.size // type_size * block_size
        ref = quants.dequantize(raw, qtype).astype("<f4").reshape(-1)
        assert ref.size == n_elements, (qtype.name, ref.size, n_elements)
        assert np.all(np.isfinite(ref)), qtype.name
        entry["n_elements"] = int(n_elements)
        entry["bin"] = write(f"{qtype.name}.bin", raw)
        entry["f32"] = write(f"{qtype.name}.f32", ref)
        entries.append(entry)

    manifest = {
        "generator": "scripts/make_quant_fixtures.py",
        "seed": SEED,
        "gguf_version": importlib.metadata.version("gguf"),
        "numpy_version": np.__version__,
        "entries": entries,
        # gguf-py's whole type table, so the Rust test checks ids, names and block sizes of every
        # GgmlType (not only the ones with codecs).
        "all_types": [
            {"type": t.name, "type_id": int(t), "block_size": GGML_QUANT_SIZES[t][0], "type_size": GGML_QUANT_SIZES[t][1]}
            for t in GGMLQuantizationType
        ],
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"wrote {len(entries)} types to {args.out} ({total} bytes)")


if __name__ == "__main__":
    main()
