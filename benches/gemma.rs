//! Prefill and decode speed of a Gemma-3-270M-shaped model (real shapes, random weights).
//!
//! `scripts/bench_compare.sh` runs this at 1 and 2 threads beside PyTorch on the same shapes and
//! prints the ratio.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kwx::core::burn::tensor::Device;
use kwx::core::{Gemma, GemmaConfig};
use rand::{Rng, SeedableRng};

const PROMPT: usize = 128;

fn prompt(vocab: usize) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut ids = vec![2u32];
    ids.extend((1..PROMPT).map(|_| rng.random_range(3..vocab as u32)));
    ids
}

/// Prefill: hidden states for all 128 tokens, logits for the last (what generation needs).
fn prefill(model: &Gemma, ids: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    let h = model
        .forward_hidden(&[ids.to_vec()], None, &mut cache)
        .expect("forward");
    let last = model.project(h.narrow(1, ids.len() - 1, 1));
    last.into_data().try_into_vec::<f32>().expect("read")
}

fn bench(c: &mut Criterion) {
    let device = Device::default();
    let model = GemmaConfig::gemma3_270m().init(&device).expect("init");
    let ids = prompt(model.config().vocab_size);

    let mut group = c.benchmark_group("gemma3_270m");
    group.sample_size(10);
    group.bench_function("prefill_128", |b| {
        b.iter(|| black_box(prefill(&model, &ids)))
    });

    let mut cache = model.new_cache();
    model
        .forward_hidden(std::slice::from_ref(&ids), None, &mut cache)
        .expect("prefill");
    group.bench_function("decode_1_after_128", |b| {
        b.iter(|| {
            let mut c = cache.clone();
            let h = model
                .forward_hidden(&[vec![17]], None, &mut c)
                .expect("decode");
            let logits: Vec<f32> = model
                .project(h)
                .into_data()
                .try_into_vec::<f32>()
                .expect("read");
            black_box(logits)
        })
    });
    // The tied output projection alone: a [262144, 640] × [640] product per decoded token.
    let hidden = kwx::core::burn::tensor::Tensor::<3>::ones([1, 1, 640], &device);
    group.bench_function("lm_head_1", |b| {
        b.iter(|| {
            let logits: Vec<f32> = model
                .project(hidden.clone())
                .into_data()
                .try_into_vec::<f32>()
                .expect("read");
            black_box(logits)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
