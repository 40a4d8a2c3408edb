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
//!
//! `layer_ops_small`: the fused CPU kernels of `kwx_core::fused` against the same functions
//! composed from tensor operations (`kwx_core::fused::composed`, burn's attention), forward and
//! backward on the 5.9M model's activations (8 × 128 tokens): gated GELU over the 1,024
//! intermediate values, RMSNorm over 256, RoPE on 4 query heads of 64, grouped-query attention
//! (4 query heads on 1 key/value head, causal).
//!
//! `cross_entropy`: the head's per-row loss and logits gradient (`kwx_core::fused::cross_entropy`,
//! one kernel) against its composed form (softmax, gather, scatter), on 1,024 × 8,000 and on one
//! 256 × 262,144 block of Gemma 3 270M's head.
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

fn layer_ops(c: &mut Criterion) {
    use kwx::core::burn::tensor::module::attention;
    use kwx::core::burn::tensor::ops::AttentionModuleOptions;
    use kwx::core::burn::tensor::{Bool, TensorData};
    use kwx::core::fused;

    let device = Device::default().autodiff();
    let normal = |shape: [usize; 3]| {
        Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
    };
    let normal4 = |shape: [usize; 4]| {
        Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
    };
    let (b, s) = (8, 128);
    let mut group = c.benchmark_group("layer_ops_small");
    group.sample_size(20);

    let (gate, up) = (normal([b, s, 1024]), normal([b, s, 1024]));
    let scale = Tensor::<1>::random([256], Distribution::Normal(1.0, 0.1), &device).require_grad();
    let x = normal([b, s, 256]);
    let q = normal4([b, s, 4, 64]);
    let cos = Tensor::<4>::random([b, s, 1, 64], Distribution::Default, &device);
    let sin = Tensor::<4>::random([b, s, 1, 64], Distribution::Default, &device);
    let (qa, ka, va) = (
        normal4([b, 4, s, 64]),
        normal4([b, 1, s, 64]),
        normal4([b, 1, s, 64]),
    );
    let causal: Vec<bool> = (0..b * s * s).map(|i| (i % s) > (i / s) % s).collect();
    let mask = Tensor::<4, Bool>::from_data(TensorData::new(causal, [b, 1, s, s]), &device);

    for kernel in [true, false] {
        let tag = if kernel { "fused" } else { "composed" };
        group.bench_function(format!("gelu_tanh_mul/{tag}"), |bench| {
            bench.iter(|| {
                let y = if kernel {
                    fused::gelu_tanh_mul(gate.clone(), up.clone())
                } else {
                    fused::composed::gelu_tanh(gate.clone()) * up.clone()
                };
                y.sum().backward()
            })
        });
        group.bench_function(format!("rms_norm/{tag}"), |bench| {
            bench.iter(|| {
                let y = if kernel {
                    fused::rms_norm(x.clone(), scale.clone(), 1e-6)
                } else {
                    fused::composed::rms_norm(x.clone(), scale.clone(), 1e-6)
                };
                y.sum().backward()
            })
        });
        group.bench_function(format!("rope/{tag}"), |bench| {
            bench.iter(|| {
                let y = if kernel {
                    fused::rope(q.clone(), &cos, &sin)
                } else {
                    fused::composed::rope(q.clone(), &cos, &sin)
                };
                y.sum().backward()
            })
        });
        group.bench_function(format!("attention_gqa/{tag}"), |bench| {
            bench.iter(|| {
                let y = if kernel {
                    fused::attention(&qa, &ka, &va, Some(&mask), 0.125, None).expect("applies")
                } else {
                    let repeat = |t: &Tensor<4>| {
                        t.clone()
                            .unsqueeze_dim::<5>(2)
                            .expand([b, 1, 4, s, 64])
                            .reshape([b, 4, s, 64])
                    };
                    let options = AttentionModuleOptions {
                        scale: Some(0.125),
                        softcap: None,
                        is_causal: false,
                    };
                    let m = mask.clone().expand([b, 4, s, s]);
                    attention(qa.clone(), repeat(&ka), repeat(&va), Some(m), None, options)
                };
                y.sum().backward()
            })
        });
    }
    group.finish();
}

/// The head's per-row cross-entropy and logits gradient (`fused::cross_entropy`): the kernel
/// against its composed form, on the 5.9M model's whole batch (1,024 × 8,000) and on one block
/// of Gemma 3 270M's head (256 × 262,144). Each iteration gets fresh logits (the kernel writes
/// the gradient over them, as it does over the product's output in training).
fn cross_entropy(c: &mut Criterion) {
    use criterion::BatchSize;
    use kwx::core::burn::tensor::TensorData;
    use kwx::core::fused;

    let device = Device::default();
    let mut group = c.benchmark_group("cross_entropy");
    group.sample_size(10);
    for (n, v) in [(1024usize, 8000usize), (256, 262_144)] {
        let data = Tensor::<2>::random([n, v], Distribution::Normal(0.0, 3.0), &device).to_data();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
        let fresh = || Tensor::<2>::from_data(TensorData::clone(&data), &device);
        for kernel in [true, false] {
            let tag = if kernel { "fused" } else { "composed" };
            group.bench_function(format!("{n}x{v}/{tag}"), |bench| {
                bench.iter_batched(
                    fresh,
                    |logits| {
                        let ce = if kernel {
                            fused::cross_entropy(logits, &targets, None, Some(1.0))
                        } else {
                            fused::composed::cross_entropy(logits, &targets, None, Some(1.0))
                        };
                        ce.expect("cross-entropy").grad.expect("gradient").dims()
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, head_loss, layer_ops, cross_entropy);
criterion_main!(benches);
