//! Tokenizer training speed (kwx-tokenizer) on 20,000 generated Korean pharmaceutical sentences:
//! BPE and Unigram to a 4,000-piece vocabulary with the dictionary's terms as user-defined
//! symbols (counting, coverage, training and assembly).
//!
//! The 20 MB corpus against sentencepiece and HF tokenizers is
//! `scripts/bench_tokenizer_compare.sh`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use kwx::data::builder::DatasetBuilder;
use kwx::data::dictionary::Dictionary;
use kwx::tokenizer::{ModelKind, Normalization, Trainer, TrainerConfig};

fn bench(c: &mut Criterion) {
    let dict = Dictionary::bundled();
    let lines: Vec<String> = DatasetBuilder::new(dict)
        .seed(3)
        .n(20_000)
        .build()
        .expect("dataset")
        .into_iter()
        .map(|e| e.text)
        .collect();
    let terms: Vec<String> = dict.entries().iter().map(|e| e.term.clone()).collect();
    let mut group = c.benchmark_group("tokenizer_train_20k_lines");
    group.sample_size(10);
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let config = TrainerConfig::new(model, 4000, Normalization::Identity)
            .with_user_defined_symbols(terms.iter().cloned());
        let trainer = Trainer::new(config).expect("config");
        group.bench_function(model.name(), |b| {
            b.iter(|| trainer.train_iter(&lines, &mut |_| {}).expect("train"));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
