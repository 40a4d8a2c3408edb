//! GGML block codecs against gguf-py: `tests/fixtures/gguf_quant` holds block bytes and gguf-py's
//! dequantization of them (and, for F32/F16/BF16/Q8_0, the f32 input gguf-py quantized), made by
//! `scripts/make_quant_fixtures.py`. Every comparison is bitwise: the Rust codecs perform the same
//! f32 operations in the same order as ggml/gguf-py (no fused multiply-add), so no tolerance is
//! needed and none is allowed. (For the supported types every product of an f16 scale, an integer
//! sub-scale and a quant fits the 24-bit f32 significand, so it is exact whatever the order; only
//! the final `+ m` / `- m` rounds, once, on both sides.)

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kwx_core::gguf::quant::{GgmlType, QuantError, dequantize, quantize};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_quant")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = read_bytes(name);
    assert_eq!(bytes.len() % 4, 0, "{name}");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

struct Case {
    ty: GgmlType,
    n: usize,
    bin: Vec<u8>,
    reference: Vec<f32>,
    input: Option<Vec<f32>>,
}

fn cases() -> Vec<Case> {
    let m = manifest();
    let entries = m["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 11, "one fixture per supported type");
    entries
        .iter()
        .map(|e| {
            let id = u32::try_from(e["type_id"].as_u64().unwrap()).unwrap();
            let ty = GgmlType::from_id(id).unwrap();
            assert_eq!(ty.name(), e["type"].as_str().unwrap());
            let n = usize::try_from(e["n_elements"].as_u64().unwrap()).unwrap();
            let bin = read_bytes(e["bin"].as_str().unwrap());
            let reference = read_f32(e["f32"].as_str().unwrap());
            assert_eq!(reference.len(), n);
            let input = e.get("input").and_then(Value::as_str).map(read_f32);
            Case {
                ty,
                n,
                bin,
                reference,
                input,
            }
        })
        .collect()
}

/// Index and values of the first bitwise difference.
fn first_diff(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
        .map(|i| (i, got[i], want[i]))
}

#[test]
fn dequantize_matches_gguf_py_bitwise() {
    for c in cases() {
        assert!(c.ty.can_dequantize(), "{}", c.ty);
        assert_eq!(
            c.ty.bytes_for(c.n as u64),
            Some(c.bin.len() as u64),
            "{}",
            c.ty
        );
        let mut out = vec![f32::NAN; c.n];
        dequantize(c.ty, &c.bin, &mut out).unwrap();
        assert_eq!(first_diff(&out, &c.reference), None, "{}", c.ty);
    }
}

/// The same blocks repeated past several parallel chunks (64 Ki values each) and a partial one:
/// the chunked rayon path must give every copy the reference values.
#[test]
fn dequantize_parallel_chunks_match() {
    for c in cases() {
        let reps = 300_000 / c.n + 1;
        let bin = c.bin.repeat(reps);
        let mut out = vec![f32::NAN; c.n * reps];
        dequantize(c.ty, &bin, &mut out).unwrap();
        for (r, got) in out.chunks_exact(c.n).enumerate() {
            assert_eq!(first_diff(got, &c.reference), None, "{} copy {r}", c.ty);
        }
    }
}

#[test]
fn quantize_matches_gguf_py_bytes() {
    let mut checked = Vec::new();
    for c in cases() {
        let Some(input) = &c.input else { continue };
        assert!(c.ty.can_quantize(), "{}", c.ty);
        let q = quantize(c.ty, input).unwrap();
        assert_eq!(q.len(), c.bin.len(), "{}", c.ty);
        let diff = q.iter().zip(&c.bin).position(|(a, b)| a != b);
        assert_eq!(diff, None, "{}: first differing byte", c.ty);
        // Large enough for the parallel path.
        let reps = 300_000 / c.n + 1;
        assert_eq!(
            quantize(c.ty, &input.repeat(reps)).unwrap(),
            c.bin.repeat(reps),
            "{}",
            c.ty
        );
        checked.push(c.ty.name());
    }
    checked.sort_unstable();
    assert_eq!(checked, ["BF16", "F16", "F32", "Q8_0"]);
}

/// Blocks whose largest magnitude is 127 have scale 1, so the quants are `roundf(x)`: halves away
/// from zero. Every half in range, its neighbours one ulp away, and a sweep of other values.
#[test]
fn q8_0_rounds_halves_away_from_zero() {
    let mut values: Vec<f32> = Vec::new();
    for k in -127..127 {
        let half = k as f32 + 0.5;
        values.extend([half, half.next_up(), half.next_down(), k as f32]);
    }
    values.extend((0..4000).map(|i| (i as f32 * 0.618_034).sin() * 127.0));
    values.extend([0.499_999_97, -0.499_999_97, 1e-30, -0.0, 126.999_99]);
    let mut x = Vec::new();
    for chunk in values.chunks(31) {
        x.push(127.0);
        x.extend_from_slice(chunk);
        x.resize(x.len().next_multiple_of(32), 0.0);
    }
    let q = quantize(GgmlType::Q8_0, &x).unwrap();
    for (b, (xs, qs)) in x.chunks_exact(32).zip(q.chunks_exact(34)).enumerate() {
        assert_eq!(&qs[..2], &0x3C00u16.to_le_bytes(), "block {b}: scale 1.0");
        for (&v, &got) in xs.iter().zip(&qs[2..]) {
            assert_eq!(got as i8, v.round() as i8, "roundf({v})");
        }
    }
}

#[test]
fn f32_round_trip_is_exact() {
    let x: Vec<f32> = (0..1000)
        .map(|i| (i as f32 * 0.37).sin() * 10f32.powi(i % 30 - 15))
        .chain([0.0, -0.0, f32::MIN_POSITIVE, f32::MAX, f32::MIN, 1e-45])
        .collect();
    let bytes = quantize(GgmlType::F32, &x).unwrap();
    let mut back = vec![0.0; x.len()];
    dequantize(GgmlType::F32, &bytes, &mut back).unwrap();
    assert_eq!(first_diff(&back, &x), None);
}

#[test]
fn wrong_lengths_are_errors() {
    let c = cases()
        .into_iter()
        .find(|c| c.ty == GgmlType::Q8_0)
        .unwrap();
    let mut out = vec![0.0; c.n];
    // One byte short and one too many.
    let err = dequantize(c.ty, &c.bin[..c.bin.len() - 1], &mut out).unwrap_err();
    assert!(
        matches!(err, QuantError::Length { expected, actual, .. } if expected == actual + 1),
        "{err:?}"
    );
    let mut long = c.bin.clone();
    long.push(0);
    assert!(matches!(
        dequantize(c.ty, &long, &mut out),
        Err(QuantError::Length { .. })
    ));
    // Not a whole number of blocks.
    let mut odd = vec![0.0; 33];
    let err = dequantize(c.ty, &c.bin[..34], &mut odd).unwrap_err();
    assert!(
        matches!(err, QuantError::BlockMultiple { block_size: 32, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("multiple of 32"), "{err}");
    let err = quantize(GgmlType::Q8_0, &[1.0; 33]).unwrap_err();
    assert!(matches!(err, QuantError::BlockMultiple { .. }), "{err:?}");
    // F16 with an odd byte count.
    let err = dequantize(GgmlType::F16, &[0; 5], &mut [0.0; 2]).unwrap_err();
    assert!(
        matches!(
            err,
            QuantError::Length {
                expected: 4,
                actual: 5,
                ..
            }
        ),
        "{err:?}"
    );
    // Empty is fine.
    dequantize(GgmlType::Q4K, &[], &mut []).unwrap();
    assert!(quantize(GgmlType::Q8_0, &[]).unwrap().is_empty());
}

#[test]
fn unsupported_types_are_errors() {
    let ty = GgmlType::IQ2XXS;
    assert!(!ty.can_dequantize());
    let data = vec![0u8; ty.type_size()];
    let mut out = vec![0.0; ty.block_size()];
    let err = dequantize(ty, &data, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            QuantError::Unsupported {
                ty: GgmlType::IQ2XXS,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("IQ2_XXS"), "{err}");
    for ty in [GgmlType::Q4K, GgmlType::Q4_0, GgmlType::I32] {
        assert!(!ty.can_quantize());
        let x = vec![0.0; ty.block_size()];
        assert!(
            matches!(quantize(ty, &x), Err(QuantError::Unsupported { .. })),
            "{ty}"
        );
    }
}

#[test]
fn non_finite_and_overflowing_inputs_are_errors() {
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0] {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // Far into the input, in a later parallel chunk, with a second bad value after it.
            let mut x = vec![0.5f32; 300_000];
            x[150_001] = bad;
            x[290_000] = f32::NAN;
            let err = quantize(ty, &x).unwrap_err();
            assert!(
                matches!(err, QuantError::NonFinite { index: 150_001, .. }),
                "{ty} {bad}: {err:?}"
            );
        }
    }
    let mut x = vec![1.0f32; 64];
    x[40] = 65_520.0; // rounds to f16 infinity
    let err = quantize(GgmlType::F16, &x).unwrap_err();
    assert!(
        matches!(err, QuantError::OutOfRange { index: 40, .. }),
        "{err:?}"
    );
    x[40] = -65_519.0; // rounds to -65504
    let h = quantize(GgmlType::F16, &x).unwrap();
    assert_eq!(&h[80..82], &0xFBFFu16.to_le_bytes());
    x[40] = f32::MAX; // rounds to bf16 infinity
    let err = quantize(GgmlType::BF16, &x).unwrap_err();
    assert!(
        matches!(err, QuantError::OutOfRange { index: 40, .. }),
        "{err:?}"
    );
    x[40] = -1.0e7; // Q8_0 scale 1e7 / 127 overflows f16
    let err = quantize(GgmlType::Q8_0, &x).unwrap_err();
    assert!(
        matches!(err, QuantError::OutOfRange { index: 40, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Q8_0"), "{err}");
    x[40] = -8.0e6; // scale 62992: fine
    assert!(quantize(GgmlType::Q8_0, &x).is_ok());
}

#[test]
fn type_table_matches_gguf_py() {
    let m = manifest();
    let all = m["all_types"].as_array().unwrap();
    assert_eq!(GgmlType::ALL.len(), all.len());
    for t in all {
        let id = u32::try_from(t["type_id"].as_u64().unwrap()).unwrap();
        let ty = GgmlType::from_id(id).unwrap_or_else(|| panic!("id {id} unknown"));
        assert_eq!(ty.id(), id);
        assert_eq!(ty.name(), t["type"].as_str().unwrap());
        assert_eq!(ty.to_string(), ty.name());
        assert_eq!(
            ty.block_size() as u64,
            t["block_size"].as_u64().unwrap(),
            "{ty}"
        );
        assert_eq!(
            ty.type_size() as u64,
            t["type_size"].as_u64().unwrap(),
            "{ty}"
        );
    }
}

#[test]
fn ids_round_trip() {
    for &ty in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
    }
    let known = (0..=200)
        .filter(|&id| GgmlType::from_id(id).is_some())
        .count();
    assert_eq!(known, GgmlType::ALL.len());
    for id in [4, 5, 31, 32, 33, 36, 37, 38, 1000, u32::MAX] {
        assert_eq!(GgmlType::from_id(id), None, "{id}");
    }
    assert_eq!(GgmlType::from_id(8), Some(GgmlType::Q8_0));
    assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
}

#[test]
fn bytes_for() {
    assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
    assert_eq!(GgmlType::Q8_0.bytes_for(33), None);
    assert_eq!(GgmlType::Q8_0.bytes_for(0), Some(0));
    assert_eq!(GgmlType::Q4K.bytes_for(512), Some(288));
    assert_eq!(GgmlType::Q4K.bytes_for(32), None);
    assert_eq!(GgmlType::Q6K.bytes_for(256), Some(210));
    assert_eq!(GgmlType::F32.bytes_for(7), Some(28));
    assert_eq!(GgmlType::BF16.bytes_for(3), Some(6));
    assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    assert_eq!(GgmlType::F64.bytes_for(u64::MAX / 4), None);
    // The real token embedding: 262,144 x 640 Q8_0.
    assert_eq!(
        GgmlType::Q8_0.bytes_for(262_144 * 640),
        Some(262_144 * 640 / 32 * 34)
    );
}
