//! Parity with Hugging Face transformers on tiny random checkpoints of every family.
//!
//! Fixtures come from `scripts/make_fixtures.py` (transformers 5.24, eager attention, f32):
//! randomised norm weights, softcaps that bite, prompts three times the sliding window, MHA/GQA/MQA,
//! f32/bf16/f16 weights, one sharded checkpoint and one transformers-4.x config.json.
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::tensor::Device;
use common::{GEMMA_CASES as CASES, expected, gemma_fixture as dir, max_diff};
use kwx_core::{AttentionType, Gemma, GenerationConfig, Generator, KvCache, Rope};

const TOL: f32 = 1e-4;

fn load(case: &str) -> Gemma {
    Gemma::from_pretrained(dir(case), &Device::default()).unwrap()
}

fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn logits_match_transformers_at_every_position() {
    for case in CASES {
        let model = load(case);
        let exp = expected(case);
        let got = to_vec(model.logits(&exp.ids).unwrap());
        let diff = max_diff(&got, &exp.logits);
        let scale = exp.logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(
            diff < TOL,
            "{case}: max |Δlogit| = {diff} (logits up to {scale})"
        );
        // The check can fail: the logits are far from trivial.
        assert!(
            scale > 1.0,
            "{case}: logits too small to mean anything ({scale})"
        );
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for case in CASES {
        let model = load(case);
        let exp = expected(case);
        let cfg = GenerationConfig::greedy(exp.greedy.len()).with_stop_at_eos(false);
        let out = Generator::new(&model)
            .generate(&exp.ids, &cfg, |_| {})
            .unwrap();
        assert_eq!(out.tokens, exp.greedy, "{case}");
    }
}

#[test]
fn kv_cache_decoding_equals_full_forward() {
    for case in CASES {
        let model = load(case);
        let exp = expected(case);
        let vocab = model.config().vocab_size;
        let mut cache = model.new_cache();
        let mut got = Vec::new();
        // A 5-token prefill, a 3-token chunk, then one token at a time past the window of 8.
        let mut start = 0;
        for len in [5, 3].into_iter().chain(std::iter::repeat(1)) {
            if start >= exp.ids.len() {
                break;
            }
            let end = (start + len).min(exp.ids.len());
            let h = model
                .forward_hidden(&[exp.ids[start..end].to_vec()], None, &mut cache)
                .unwrap();
            got.extend(to_vec(model.project(h)));
            start = end;
        }
        assert_eq!(cache.len(), exp.ids.len());
        let full = to_vec(model.logits(&exp.ids).unwrap());
        let diff = max_diff(&got, &full);
        assert!(diff < TOL, "{case}: cached vs full max diff {diff}");
        assert!(
            max_diff(&got, &exp.logits) < TOL,
            "{case}: cached vs transformers"
        );
        assert_eq!(got.len(), exp.ids.len() * vocab);
    }
}

#[test]
fn batched_generation_equals_one_by_one() {
    for case in [
        "gemma2_gqa_bf16",
        "gemma3_gqa_sharded_bf16",
        "gemma1_mha_f32",
    ] {
        let model = load(case);
        let exp = expected(case);
        // Different lengths force left padding; lengths above and below the window of 8.
        let prompts = vec![
            exp.ids.clone(),
            exp.ids[..13].to_vec(),
            exp.ids[3..9].to_vec(),
        ];
        let cfg = GenerationConfig::greedy(6).with_stop_at_eos(false);
        let generator = Generator::new(&model);
        let batched = generator.generate_batch(&prompts, &cfg, |_| {}).unwrap();
        for (p, b) in prompts.iter().zip(&batched) {
            let single = generator.generate(p, &cfg, |_| {}).unwrap();
            assert_eq!(b.tokens, single.tokens, "{case}");
        }

        // Logits of the real positions of a padded prefill equal the unpadded ones.
        let short = exp.ids[..10].to_vec();
        let mut padded = vec![0u32; 14];
        padded.extend(&short);
        let valid: Vec<bool> = (0..48).map(|i| !(24..38).contains(&i)).collect();
        let mut cache = KvCache::new(model.config().num_hidden_layers);
        let h = model
            .forward_hidden(&[exp.ids.clone(), padded], Some(&valid), &mut cache)
            .unwrap();
        let logits = to_vec(model.project(h));
        let v = model.config().vocab_size;
        let row1 = &logits[(24 + 14) * v..48 * v];
        let alone = to_vec(model.logits(&short).unwrap());
        assert!(max_diff(row1, &alone) < TOL, "{case}: padded row differs");
        assert!(
            max_diff(&logits[..24 * v], &exp.logits) < TOL,
            "{case}: row 0 differs"
        );
    }
}

#[test]
fn both_config_json_styles_parse() {
    // transformers 4.x spelling: rope_theta, rope_local_base_freq, rope_scaling, sliding_window_pattern.
    let v4 = load("gemma3_mqa_f16_v4config");
    let c = v4.config();
    use AttentionType::{Full, Sliding};
    assert_eq!(
        c.layer_types,
        vec![Sliding, Sliding, Full, Sliding, Sliding]
    );
    assert_eq!(
        c.rope_global,
        Rope {
            theta: 1e6,
            linear_factor: 2.0
        }
    );
    assert_eq!(c.rope_local, Rope::new(1e4));
    assert_eq!((c.num_key_value_heads, c.sliding_window), (1, Some(8)));

    // The same model spelt the transformers 5.x way parses to the same config.
    let text = std::fs::read_to_string(dir("gemma3_mqa_f16_v4config").join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = json.as_object_mut().unwrap();
    for key in [
        "rope_theta",
        "rope_local_base_freq",
        "rope_scaling",
        "sliding_window_pattern",
    ] {
        obj.remove(key);
    }
    obj.insert(
        "layer_types".into(),
        serde_json::json!([
            "sliding_attention",
            "sliding_attention",
            "full_attention",
            "sliding_attention",
            "sliding_attention"
        ]),
    );
    obj.insert(
        "rope_parameters".into(),
        serde_json::json!({
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}
        }),
    );
    let v5 = kwx_core::GemmaConfig::from_json_str(&json.to_string(), "v5.json").unwrap();
    assert_eq!(&v5, c);

    // The sharded fixture was written by transformers 5 itself.
    let c = load("gemma3_gqa_sharded_bf16").config().clone();
    assert_eq!(
        c.layer_types,
        vec![Sliding, Full, Sliding, Sliding, Full, Sliding]
    );
    assert_eq!((c.rope_global.theta, c.rope_local.theta), (1e5, 1e3));
    assert_eq!(c.final_logit_softcapping, Some(4.0));
    assert_eq!(c.query_pre_attn_scalar, 32.0);
}

#[test]
fn tokenizer_matches_python_tokenizers() {
    let case = "gemma3_gqa_sharded_bf16";
    let tok = kwx_core::GemmaTokenizer::from_dir(dir(case)).unwrap();
    let exp = expected(case);
    let cases = exp.json["tokenizer"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let ids: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text, true).unwrap(), ids, "{text}");
        assert_eq!(tok.decode(&ids).unwrap(), text, "round trip of {text}");
    }
}
