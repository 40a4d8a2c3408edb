//! Extraction costs outside the model: the dictionary baseline on one sentence and on 1,000
//! generated ones, the constrained-decoding mask over Gemma 3's 262,144-token vocabulary (JSON
//! and extractive, warm per-state cache as in generation), and choosing few-shot examples among
//! 2,000. The model's own time per text is in `compare`'s report (`seconds_per_text`).
//! Needs the Gemma 3 tokenizer (`scripts/fetch_model.sh`).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kwx::core::extract::{DictionaryExtractor, Example, ExamplePool, KeywordExtractor};
use kwx::core::{
    GemmaTokenizer, JsonArrayConstraint, OutputMode, TokenBytes, TokenConstraint, home,
};
use kwx::data::builder::DatasetBuilder;
use kwx::data::dictionary::Dictionary;

const SENTENCE: &str = "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.";

fn dictionary(c: &mut Criterion) {
    let x = DictionaryExtractor::new(Dictionary::bundled()).expect("extractor");
    let texts: Vec<String> = DatasetBuilder::new(Dictionary::bundled())
        .seed(3)
        .n(1000)
        .build()
        .expect("examples")
        .into_iter()
        .map(|e| e.text)
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("dictionary_extractor");
    group.bench_function("sentence", |b| {
        b.iter(|| x.extract(black_box(SENTENCE)).expect("extract"))
    });
    group.bench_function("1000_texts", |b| {
        b.iter(|| x.extract_batch(black_box(&refs)).expect("extract"))
    });
    group.finish();
}

fn constraint(c: &mut Criterion) {
    let path = home::gemma3_270m_tokenizer().expect("run scripts/fetch_model.sh");
    let tokenizer = GemmaTokenizer::from_file(path).expect("tokenizer");
    let bytes = Arc::new(TokenBytes::new(&tokenizer).expect("token bytes"));
    let end = tokenizer
        .token_to_id("<end_of_turn>")
        .expect("<end_of_turn>");
    let mut logits = vec![0.0f32; tokenizer.vocab_size()];
    let mut group = c.benchmark_group("constrained_mask_262k");
    for (name, mode) in [
        ("json_in_string", OutputMode::Json),
        (
            "extractive_in_string",
            OutputMode::Extractive {
                source: SENTENCE.into(),
            },
        ),
    ] {
        // `["진` written: the state of most steps of an answer.
        let mut state = JsonArrayConstraint::new(bytes.clone(), mode, &[end]);
        for id in tokenizer.encode("[\"진", false).expect("encode") {
            state.advance(id).expect("advance");
        }
        group.bench_function(name, |b| {
            b.iter(|| state.mask(black_box(&mut logits)).expect("mask"))
        });
    }
    group.finish();
}

fn few_shot(c: &mut Criterion) {
    let pool = ExamplePool::new(
        DatasetBuilder::new(Dictionary::bundled())
            .seed(1)
            .n(2000)
            .build()
            .expect("examples")
            .into_iter()
            .map(|e| Example {
                text: e.text,
                labels: e.labels,
            })
            .collect(),
    );
    c.bench_function("few_shot_nearest_3_of_2000", |b| {
        b.iter(|| pool.nearest(black_box(SENTENCE), 3).len())
    });
}

criterion_group!(benches, dictionary, constraint, few_shot);
criterion_main!(benches);
