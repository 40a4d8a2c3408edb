//! The real Gemma 3 270M (GGUF Q4_K_M, fetched by `scripts/fetch_model.sh`) against an
//! independent reference: transformers in f32 on the same weights dequantized by gguf-py
//! (`scripts/make_real_model_reference.py` → `fixtures/real_gemma3_270m/reference.json`).
//!
//! Checked per prompt (English and Korean, 5 to 568 tokens, one past the 512-token sliding
//! window): the tokenizer's ids, the top-10 next-token ids and their logits (≤ 0.05), and the
//! 16-token greedy continuation (identical). The model is missing → the test fails and says how
//! to fetch it; it never skips.
#![allow(clippy::unwrap_used)] // test helpers

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::Device;
use kwx_core::{Gemma, GemmaTokenizer, GenerationConfig, Generator, KvCache};
use serde_json::Value;

const LOGIT_TOL: f32 = 0.05;

fn reference() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real_gemma3_270m/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model() -> &'static Gemma {
    static MODEL: OnceLock<Gemma> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = kwx_core::home::gemma3_270m_gguf().unwrap_or_else(|e| panic!("{e}"));
        Gemma::from_gguf(path, &Device::default()).unwrap()
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn config_from_gguf_metadata_is_gemma3_270m() {
    let file = kwx_core::gguf::GgufFile::open(kwx_core::home::gemma3_270m_gguf().unwrap()).unwrap();
    let config = kwx_core::gguf::config_from_gguf(&file).unwrap();
    let expected = kwx_core::GemmaConfig::gemma3_270m();
    assert_eq!(config.family, expected.family);
    assert_eq!(config.vocab_size, 262_144);
    assert_eq!(config.hidden_size, 640);
    assert_eq!(config.intermediate_size, 2048);
    assert_eq!(config.num_hidden_layers, 18);
    assert_eq!(config.num_attention_heads, 4);
    assert_eq!(config.num_key_value_heads, 1);
    assert_eq!(config.head_dim, 256);
    assert_eq!(config.query_pre_attn_scalar, 256.0);
    assert_eq!(config.layer_types, expected.layer_types);
    assert_eq!(config.sliding_window, Some(512));
    assert_eq!(config.rope_global.theta, 1_000_000.0);
    assert_eq!(config.rope_local.theta, 10_000.0);
    assert!((config.rms_norm_eps - 1e-6).abs() < 1e-12);
    assert!(config.tie_word_embeddings);
    assert_eq!(config.final_logit_softcapping, None);
    assert_eq!((config.bos_token_id, config.pad_token_id), (2, 0));
    assert_eq!(config.eos_token_ids, vec![1, 106]);
}

#[test]
fn top10_logits_and_greedy_match_transformers() {
    let reference = reference();
    let tokenizer =
        GemmaTokenizer::from_file(kwx_core::home::gemma3_270m_tokenizer().unwrap()).unwrap();
    let model = model();
    let prompts = reference["prompts"].as_array().unwrap();
    assert!(
        prompts.len() >= 8,
        "the fixture holds {} prompts",
        prompts.len()
    );
    let mut worst = 0.0f32;
    let mut korean = 0;
    for p in prompts {
        let name = p["name"].as_str().unwrap();
        let text = p["text"].as_str().unwrap();
        let want_ids = ids(&p["ids"]);
        korean += usize::from(p["lang"] == "ko");
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            want_ids,
            "{name}: token ids"
        );

        // Last-position logits from one full forward pass.
        let mut cache = KvCache::disabled(model.config().num_hidden_layers);
        let hidden = model
            .forward_hidden(std::slice::from_ref(&want_ids), None, &mut cache)
            .unwrap();
        let [_, seq, _] = hidden.dims();
        let last = hidden.slice([0..1, seq - 1..seq]);
        let logits: Vec<f32> = model
            .project(last)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let top_ids = ids(&p["top10_ids"]);
        let top_logits = floats(&p["top10_logits"]);
        for (&id, &want) in top_ids.iter().zip(&top_logits) {
            let got = logits[id as usize];
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= LOGIT_TOL,
                "{name}: logit of id {id} is {got}, transformers {want}"
            );
        }
        // Top-10 as a set (the fixture guarantees a ≥ 0.05 gap below rank 10), and in order
        // for the ranks whose neighbours are not near-tied.
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.select_nth_unstable_by(10, |a, b| {
            logits[*b as usize].total_cmp(&logits[*a as usize])
        });
        let mut got_top: Vec<u32> = order[..10].to_vec();
        got_top.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
        let mut a = got_top.clone();
        let mut b = top_ids.clone();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "{name}: top-10 set");
        let robust = p["robust_order_prefix"].as_u64().unwrap() as usize;
        assert_eq!(
            got_top[..robust],
            top_ids[..robust],
            "{name}: top-{robust} order"
        );

        // Greedy continuation with the KV cache.
        let want = ids(&p["greedy_ids"]);
        let out = Generator::new(model)
            .generate(
                &want_ids,
                &GenerationConfig::greedy(want.len()).with_stop_at_eos(false),
                |_| {},
            )
            .unwrap();
        assert_eq!(out.tokens, want, "{name}: greedy continuation");
        assert_eq!(
            tokenizer.decode_raw(&out.tokens).unwrap(),
            p["greedy_text"].as_str().unwrap(),
            "{name}: greedy text"
        );
    }
    assert!(korean >= 4, "{korean} Korean prompts");
    eprintln!("worst top-10 logit difference vs transformers: {worst:.5}");
}
