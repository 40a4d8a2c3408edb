//! kwx-rag query speed on 10,000 generated chunks (`examples/common/rag_gen.rs`): lexical search
//! with the Korean analyzer against tantivy's default analyzer, the two Korean analyzers alone
//! on one sentence, and the exact dense top-k scan over 10,000 random 640-dim vectors.
//!
//! Build times, memory, 1M chunks, the brute-force baseline and HNSW are
//! `cargo run --release --example bench_rag` (see crates/kwx-rag/README.md).
#![allow(missing_docs)] // criterion_group! generates undocumented items

#[path = "../examples/common/rag_gen.rs"]
mod rag_gen;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kwx::data::dictionary::Dictionary;
use kwx::rag::analyzer::{gram_tokens, word_tokens};
use kwx::rag::index::exact_top_k;
use kwx::rag::{Analyzer, IndexBuilder, SearchRequest};

const CHUNKS: usize = 10_000;
const DIM: usize = 640;

fn lexical(c: &mut Criterion) {
    let chunks = rag_gen::chunks(Dictionary::bundled(), CHUNKS, 7);
    let queries = rag_gen::queries(&chunks, 256, 11);
    let root = std::env::temp_dir().join(format!("kwx-bench-rag-{}", std::process::id()));
    let mut group = c.benchmark_group("rag_lexical_10k");
    for (analyzer, name) in [
        (Analyzer::Korean, "korean"),
        (Analyzer::TantivyDefault, "default"),
    ] {
        let index = IndexBuilder::new(root.join(name))
            .overwrite(true)
            .analyzer(analyzer)
            .build(&chunks)
            .expect("build");
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let q = &queries[i % queries.len()];
                i += 1;
                index
                    .search(&SearchRequest::new(q.text.as_str(), 5))
                    .expect("search")
            });
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&root);
}

fn analyzer(c: &mut Criterion) {
    let sentence = "임산부에게 해열파스를 하루에 몇 번 붙여도 되는지, GC녹십자의 H2수용체길항제와 \
                    함께 복용해도 괜찮은지 알려 주세요.";
    let mut group = c.benchmark_group("rag_analyzer_sentence");
    group.bench_function("word_tokens", |b| {
        b.iter(|| {
            let mut n = 0usize;
            word_tokens(black_box(sentence), |t, _, _| n += t.len());
            n
        });
    });
    group.bench_function("gram_tokens", |b| {
        b.iter(|| {
            let mut n = 0usize;
            gram_tokens(black_box(sentence), |t, _, _| n += t.len());
            n
        });
    });
    group.finish();
}

fn dense(c: &mut Criterion) {
    let flat = rag_gen::random_vectors(CHUNKS, DIM, 7);
    let query = rag_gen::random_unit(DIM, 99);
    c.bench_function("rag_dense_exact_top10_10k_x640", |b| {
        b.iter(|| exact_top_k(black_box(&flat), DIM, black_box(&query), 10, |_| true));
    });
}

criterion_group!(benches, lexical, analyzer, dense);
criterion_main!(benches);
