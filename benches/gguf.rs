//! GGUF: loading the real Gemma 3 270M (Q4_K_M, fetched by `scripts/fetch_model.sh`) to a ready
//! model, and dequantization throughput of its largest tensor (the Q8_0 token embedding).
//!
//! `scripts/bench_gguf_compare.sh` puts kwx beside llama.cpp on the same file (load, peak RSS,
//! prefill and decode tokens/s).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kwx::core::Gemma;
use kwx::core::burn::tensor::Device;
use kwx::core::gguf::GgufFile;

fn bench(c: &mut Criterion) {
    let path = kwx::core::home::gemma3_270m_gguf().expect("run scripts/fetch_model.sh first");
    let device = Device::default();
    let mut group = c.benchmark_group("gguf_gemma3_270m");
    group.sample_size(10);
    group.bench_function("load_to_ready_model", |b| {
        b.iter(|| black_box(Gemma::from_gguf(&path, &device).expect("load")))
    });
    let file = GgufFile::open(&path).expect("open");
    let embd = file
        .tensor("token_embd.weight")
        .expect("token_embd")
        .clone();
    group.throughput(Throughput::Elements(embd.n_elements()));
    group.bench_function("dequantize_token_embd_q8_0", |b| {
        b.iter(|| black_box(file.dequantize(&embd.name).expect("dequantize")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
