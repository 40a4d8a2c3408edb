//! Generation behaviour on the fixture models: early-stopping rows in a batch, streaming, stop
//! strings, seeded sampling and the chat template through the tokenizer.
#![allow(clippy::unwrap_used)] // test helpers

use std::path::PathBuf;

use burn::tensor::Device;
use kwx_core::{ChatMessage, Gemma, GemmaTokenizer, GenerationConfig, Generator, StopReason};

fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma")
        .join(case)
}

fn prompt(case: &str) -> Vec<u32> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir(case).join("expected.json")).unwrap())
            .unwrap();
    json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn rows_that_stop_early_leave_the_batch_without_changing_the_others() {
    let case = "gemma1_mha_f32";
    let model = Gemma::from_pretrained(dir(case), &Device::default()).unwrap();
    let ids = prompt(case);
    let prompts = vec![
        ids.clone(),
        ids[..13].to_vec(),
        ids[3..9].to_vec(),
        ids[10..].to_vec(),
    ];
    let generator = Generator::new(&model);
    let free = GenerationConfig::greedy(8).with_stop_at_eos(false);
    let first = generator.generate(&prompts[0], &free, |_| {}).unwrap();
    // Row 0 stops on its third token; the others (most likely) run on.
    let cfg = free.clone().with_stop_token(first.tokens[2]);
    let batched = generator.generate_batch(&prompts, &cfg, |_| {}).unwrap();
    assert_eq!(batched[0].tokens, first.tokens[..2].to_vec());
    assert_eq!(batched[0].stop, StopReason::Token(first.tokens[2]));
    assert!(
        batched.iter().any(|o| o.stop == StopReason::MaxTokens),
        "no row ran on: {batched:?}"
    );
    for (p, b) in prompts.iter().zip(&batched) {
        assert_eq!(&generator.generate(p, &cfg, |_| {}).unwrap(), b);
    }
}

#[test]
fn streaming_stop_strings_and_chat() {
    let case = "gemma3_gqa_sharded_bf16";
    let model = Gemma::from_pretrained(dir(case), &Device::default()).unwrap();
    let tok = GemmaTokenizer::from_dir(dir(case)).unwrap();
    let generator = Generator::new(&model).with_tokenizer(&tok);
    let ids = tok
        .encode("진통과 해열 효과가 있는 파스형 의약품은", true)
        .unwrap();
    assert_eq!(ids[0], 2, "post-processor adds <bos>");

    let cfg = GenerationConfig::greedy(10).with_stop_at_eos(false);
    let mut streamed = String::new();
    let mut tokens = Vec::new();
    let out = generator
        .generate(&ids, &cfg, |ev| {
            assert_eq!(ev.row, 0);
            streamed.push_str(ev.text);
            tokens.push(ev.token);
        })
        .unwrap();
    assert_eq!(tokens, out.tokens);
    let text = out.text.clone().unwrap();
    assert_eq!(text, tok.decode(&out.tokens).unwrap());
    assert_eq!(streamed, tok.decode_raw(&out.tokens).unwrap());
    assert!(!text.is_empty());

    // Stop at the first character of the output: the text is cut before it.
    let stop: String = text.chars().take(1).collect();
    let cut = generator
        .generate(&ids, &cfg.clone().with_stop_string(stop.clone()), |_| {})
        .unwrap();
    assert_eq!(cut.stop, StopReason::String(stop.clone()));
    assert!(!cut.text.as_deref().unwrap().contains(&stop));
    assert!(cut.tokens.len() < out.tokens.len());

    // The chat template tokenizes its markers as the special tokens.
    let chat = tok.encode_chat(&[ChatMessage::user("파스")], true).unwrap();
    let sot = tok.token_to_id("<start_of_turn>").unwrap();
    let eot = tok.token_to_id("<end_of_turn>").unwrap();
    assert_eq!(chat[..2], [2, sot]);
    assert_eq!(chat.iter().filter(|&&t| t == sot).count(), 2);
    assert_eq!(chat.iter().filter(|&&t| t == eot).count(), 1);
}

#[test]
fn sampling_is_seeded() {
    let case = "gemma1_mha_f32";
    let model = Gemma::from_pretrained(dir(case), &Device::default()).unwrap();
    let ids = prompt(case);
    let generator = Generator::new(&model);
    let cfg = GenerationConfig::greedy(12)
        .with_stop_at_eos(false)
        .with_temperature(1.5)
        .with_top_k(50)
        .with_top_p(0.95)
        .with_repetition_penalty(1.3);
    let a = generator
        .generate(&ids, &cfg.clone().with_seed(1), |_| {})
        .unwrap();
    let b = generator
        .generate(&ids, &cfg.clone().with_seed(1), |_| {})
        .unwrap();
    let c = generator
        .generate(&ids, &cfg.clone().with_seed(2), |_| {})
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(
        a.tokens, c.tokens,
        "different seeds gave the same 12 tokens"
    );
    assert_eq!(a.tokens.len(), 12);
}
