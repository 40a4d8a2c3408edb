//! Training step speed (forward, backward, AdamW) on the 5.9M-parameter Gemma 3 of issue 5
//! (vocab 8000, hidden 256, 4 layers, 4 heads, 1 KV head, head_dim 64, intermediate 1024),
//! batch 8 × 128, every position labelled: LoRA (r 8, all linear layers) and full, in f32, and
//! LoRA with bf16 products over a bf16 base (`Precision::Bf16`; on the CPU backend bf16 products
//! are widened to f32, so this measures the price of the casts there).
//!
//! The 270M-shaped run and the PyTorch + PEFT side are `scripts/bench_train_compare.sh`.
//!
//! `head_loss_270m`: the output head's cross-entropy alone on Gemma 3 270M's head (vocabulary
//! 262,144, hidden 640, tied and frozen as under LoRA), 256 label rows, loss and backward to the
//! hidden states: `Gemma::label_nll` (fused, `kwx_core::head`) against the same loss composed
//! from tensor operations through autodiff (`label_nll_unfused`: project, log-softmax, gather).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use kwx::core::burn::tensor::{Device, Distribution, Tensor};
use kwx::core::{Family, GemmaConfig, Precision, Rope};
use kwx::peft::LoraConfig;
use kwx::peft::train::{MicroBatch, Mode, TrainConfig, optimizer, train_step, trainable_model};

fn small() -> GemmaConfig {
    let layers = kwx::core::config::gemma3_layer_types(4, 4);
    let (global, local) = (Rope::new(1e6), Rope::new(1e4));
    GemmaConfig::new(
        Family::Gemma3,
        8000,
        256,
        1024,
        4,
        4,
        1,
        64,
        64.0,
        layers,
        global,
        local,
    )
    .with_sliding_window(Some(512))
}

fn bench(c: &mut Criterion) {
    let device = Device::default();
    let ids: Vec<Vec<u32>> = (0..8u32)
        .map(|r| {
            (0..128u32)
                .map(|t| 3 + (r * 7919 + t * 104_729) % 7997)
                .collect()
        })
        .collect();
    let labels = ids
        .iter()
        .map(|r| r.iter().map(|&t| i64::from(t)).collect())
        .collect();
    let batch = [MicroBatch {
        input_ids: ids,
        labels,
    }];
    let mut group = c.benchmark_group("train_step_small_8x128");
    group.sample_size(10);
    for (name, mode, precision) in [
        ("lora_r8", Mode::Lora, Precision::F32),
        ("full", Mode::Full, Precision::F32),
        ("lora_r8_bf16", Mode::Lora, Precision::Bf16),
    ] {
        let base = small()
            .init(&device)
            .and_then(|m| m.with_precision(precision))
            .expect("init");
        let mut model =
            Some(trainable_model(base, mode, &LoraConfig::new(8, 16.0), 0, None).expect("model"));
        let config = TrainConfig {
            mode,
            ..TrainConfig::default()
        };
        let mut optim = optimizer(&config, model.as_ref().expect("model"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let m = model.take().expect("model");
                let (m, stats) = train_step(m, &mut optim, &batch, 1e-4, 1.0, None).expect("step");
                model = Some(m);
                stats.loss
            })
        });
    }
    group.finish();
}

fn head_loss(c: &mut Criterion) {
    let device = Device::default().autodiff();
    device.seed(0);
    let layers = kwx::core::config::gemma3_layer_types(1, 6);
    let model = GemmaConfig::new(
        Family::Gemma3,
        262_144,
        640,
        2048,
        1,
        4,
        1,
        256,
        256.0,
        layers,
        Rope::new(1e6),
        Rope::new(1e4),
    )
    .with_sliding_window(Some(512))
    .init(&device)
    .expect("init");
    let model = kwx::core::burn::module::Module::freeze(model);
    let rows = 256;
    let hidden = Tensor::<2>::random([rows, 640], Distribution::Normal(0.0, 1.0), &device);
    let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 104_729) % 262_144).collect();
    let mut group = c.benchmark_group("head_loss_270m_256rows");
    group.sample_size(10);
    for (name, fused) in [("fused", true), ("composed", false)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let h = hidden.clone().require_grad();
                let loss = if fused {
                    model.label_nll(h.clone(), &targets)
                } else {
                    model.label_nll_unfused(h.clone(), &targets)
                };
                let grads = loss.expect("loss").backward();
                h.grad(&grads).expect("grad").dims()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, head_loss);
criterion_main!(benches);
