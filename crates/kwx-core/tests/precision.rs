//! Matrix products in bf16 and f16 ([`Precision`]) on transformers' tiny checkpoints of every
//! family (randomised norms, softcaps that bite, prompts three times the sliding window): the
//! logits stay within the half type's error of transformers' f32 logits, storing the frozen
//! weights in the half type changes no bit, and the KV cache holds the half type.
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::tensor::{DType, Device};
use common::{GEMMA_CASES as CASES, expected, gemma_fixture, max_diff};
use kwx_core::{Gemma, Precision};

fn load(case: &str, precision: Precision) -> Gemma {
    Gemma::from_pretrained(gemma_fixture(case), &Device::default())
        .unwrap()
        .with_precision(precision)
        .unwrap()
}

fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    assert_eq!(t.dtype(), DType::F32, "results come back in f32");
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn half_precision_logits_stay_within_the_types_error_of_transformers_f32() {
    for case in CASES {
        let common::Expected {
            ids, logits: want, ..
        } = expected(case);
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (precision, bound) in [(Precision::Bf16, 0.08), (Precision::F16, 0.012)] {
            let model = load(case, precision);
            assert_eq!(model.precision(), precision);
            let got = to_vec(model.logits(&ids).unwrap());
            let diff = max_diff(&got, &want);
            eprintln!("{case} {precision}: max |Δlogit| {diff} (logits up to {scale})");
            assert!(
                diff <= bound * scale,
                "{case} {precision}: max |Δlogit| = {diff}, logits up to {scale}"
            );
            // The products did run in the half type: f32 is within 1e-4 of these logits.
            assert!(diff > 1e-3, "{case} {precision}: {diff} is f32's error");

            // Storing the frozen weights in the half type rounds them where every product
            // rounded them anyway: not one bit changes.
            let stored = model.cast_frozen_matrices();
            assert_eq!(
                stored.embed_tokens.weight.val().dtype(),
                precision.dtype().into()
            );
            let q = stored.layers[0].self_attn.q_proj.weight.val().dtype();
            assert_eq!(q, precision.dtype().into());
            assert_eq!(
                stored.norm.weight.val().dtype(),
                DType::F32,
                "norms stay f32"
            );
            let same = to_vec(stored.logits(&ids).unwrap()) == got;
            assert!(
                same,
                "{case} {precision}: stored half weights changed the logits"
            );
        }
    }
}

#[test]
fn half_precision_kv_cache_decoding_follows_the_full_forward() {
    for case in CASES {
        let ids = expected(case).ids;
        let model = load(case, Precision::Bf16).cast_frozen_matrices();
        let full = to_vec(model.logits(&ids).unwrap());
        let scale = full.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let mut cache = model.new_cache();
        let mut got = Vec::new();
        let mut start = 0;
        for len in [5, 3].into_iter().chain(std::iter::repeat(1)) {
            if start >= ids.len() {
                break;
            }
            let end = (start + len).min(ids.len());
            let h = model
                .forward_hidden(&[ids[start..end].to_vec()], None, &mut cache)
                .unwrap();
            got.extend(to_vec(model.project(h)));
            start = end;
        }
        let diff = max_diff(&got, &full);
        eprintln!("{case}: cached vs full {diff} (logits up to {scale})");
        assert!(
            diff <= 0.05 * scale,
            "{case}: cached vs full max diff {diff}"
        );

        // A cache filled in f32 continues under bf16 (the past is cast to the new type).
        let f32_model = load(case, Precision::F32);
        let mut cache = f32_model.new_cache();
        let half = ids.len() / 2;
        f32_model
            .forward_hidden(&[ids[..half].to_vec()], None, &mut cache)
            .unwrap();
        let rest = model
            .forward_hidden(&[ids[half..].to_vec()], None, &mut cache)
            .unwrap();
        let rest = to_vec(model.project(rest));
        let vocab = model.config().vocab_size;
        let diff = max_diff(&rest, &full[half * vocab..]);
        assert!(
            diff <= 0.05 * scale,
            "{case}: f32 cache continued in bf16: {diff}"
        );
    }
}
