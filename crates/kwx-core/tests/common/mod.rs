//! Helpers shared by kwx-core's integration tests.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used)] // test helpers

use std::path::PathBuf;

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use kwx_core::{Gemma, RmsNorm};

/// transformers' tiny random checkpoints (`scripts/make_fixtures.py`), one per family.
pub const GEMMA_CASES: [&str; 4] = [
    "gemma1_mha_f32",
    "gemma2_gqa_bf16",
    "gemma3_mqa_f16_v4config",
    "gemma3_gqa_sharded_bf16",
];

/// `tests/fixtures/gemma/<case>`.
pub fn gemma_fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma")
        .join(case)
}

/// What transformers computed for a fixture: the prompt, its greedy continuation, the f32
/// logits at every position, and the whole `expected.json`.
pub struct Expected {
    pub ids: Vec<u32>,
    pub greedy: Vec<u32>,
    pub logits: Vec<f32>,
    pub json: serde_json::Value,
}

/// Reads a fixture's `expected.json` and `expected.safetensors`.
pub fn expected(case: &str) -> Expected {
    let d = gemma_fixture(case);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap()).unwrap();
    let ids = |k: &str| {
        json[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let bytes = std::fs::read(d.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Expected {
        ids: ids("input_ids"),
        greedy: ids("greedy"),
        logits,
        json,
    }
}

/// Largest absolute difference, asserting equal lengths.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Sets every RMSNorm weight of `model` (layer norms, q/k norms, the final norm) to uniform
/// values in [0.5, 1.5), so a skipped norm, a wrong row or a skipped scale cannot hide behind
/// weights of one.
pub fn randomise_norms(model: &mut Gemma, device: &Device) {
    let randomise = |norm: &mut RmsNorm| {
        let [d] = norm.weight.val().dims();
        norm.weight =
            Param::from_tensor(Tensor::random([d], Distribution::Uniform(0.5, 1.5), device));
    };
    for layer in &mut model.layers {
        randomise(&mut layer.input_layernorm);
        randomise(&mut layer.post_attention_layernorm);
        layer.pre_feedforward_layernorm.as_mut().map(randomise);
        layer.post_feedforward_layernorm.as_mut().map(randomise);
        layer.self_attn.q_norm.as_mut().map(randomise);
        layer.self_attn.k_norm.as_mut().map(randomise);
    }
    randomise(&mut model.norm);
}
