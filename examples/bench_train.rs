//! Training throughput: optimizer steps (forward, backward, AdamW) on random tokens, every
//! position labelled, LoRA (r 8, alpha 16, all linear layers) or full; prints one JSON line.
//! `scripts/bench_train_compare.sh` runs it beside PyTorch + PEFT (`scripts/bench_train_peer.py`)
//! on the same shapes and threads and prints the ratio.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example bench_train -- --shape small --mode lora
//! ```
//! Shapes: `small` = Gemma 3, vocab 8000, hidden 256, 4 layers, 4 heads, 1 KV head, head_dim 64,
//! intermediate 1024 (5.9M parameters); `270m` = Gemma 3 270M's shapes, random weights.
#![allow(clippy::print_stdout)]

#[path = "common/alloc.rs"]
mod alloc;

mod common;

use std::time::Instant;

use clap::Parser;
use kwx::core::burn::tensor::Device;
use kwx::core::config::gemma3_layer_types;
use kwx::core::{Family, GemmaConfig, Precision, Rope};
use kwx::peft::LoraConfig;
use kwx::peft::train::{
    LossScaler, MicroBatch, Mode, TrainConfig, optimizer, train_step, train_step_scaled,
    trainable_model,
};
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
struct Args {
    /// `small` or `270m`.
    #[arg(long, default_value = "small")]
    shape: String,
    /// `lora`, `lora-tokens` (LoRA plus 32 trainable embedding rows, PEFT's
    /// `trainable_token_indices`: new domain tokens) or `full`.
    #[arg(long, default_value = "lora")]
    mode: String,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Matrix products in `f32`, `bf16` or `f16` (f16 with dynamic loss scaling).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// `cpu` (flex), `cuda` (built with `--features cuda`) or `wgpu` (`--features wgpu`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The device `--device` names, if this build has its backend.
fn device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::default()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(
            kwx::core::burn::tensor::DeviceKind::DefaultDevice,
        )),
        other => anyhow::bail!(
            "--device {other}: this build has cpu{}{}",
            if cfg!(feature = "cuda") { ", cuda" } else { "" },
            if cfg!(feature = "wgpu") { ", wgpu" } else { "" }
        ),
    }
}

fn main() -> anyhow::Result<()> {
    alloc::setup();
    let args = Args::parse();
    let config = match args.shape.as_str() {
        "small" => GemmaConfig::new(
            Family::Gemma3,
            8000,
            256,
            1024,
            4,
            4,
            1,
            64,
            64.0,
            gemma3_layer_types(4, 4),
            Rope::new(1_000_000.0),
            Rope::new(10_000.0),
        )
        .with_sliding_window(Some(512)),
        "270m" => GemmaConfig::gemma3_270m(),
        other => anyhow::bail!("--shape {other}: use small or 270m"),
    };
    let (mode, token_rows) = match args.mode.as_str() {
        "lora" => (Mode::Lora, false),
        "lora-tokens" => (Mode::Lora, true),
        "full" => (Mode::Full, false),
        other => anyhow::bail!("--mode {other}: use lora, lora-tokens or full"),
    };
    let device = device(&args.device)?;
    // Seeded: the same random model (and losses) every run.
    device.seed(0);
    let base = config.init(&device)?.with_precision(args.precision)?;
    let mut lora = LoraConfig::new(8, 16.0);
    if token_rows {
        // The last 32 ids, as new tokens appended to a vocabulary would be.
        let vocab = config.vocab_size as u32;
        lora = lora.with_trainable_tokens((vocab - 32..vocab).collect());
    }
    let model = trainable_model(base, mode, &lora, 0, None)?;
    let train_config = TrainConfig {
        mode,
        learning_rate: 1e-4,
        ..TrainConfig::default()
    };
    let mut optim = optimizer(&train_config, &model);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let vocab = config.vocab_size as u32;
    let rows: Vec<Vec<u32>> = (0..args.batch)
        .map(|_| (0..args.seq).map(|_| rng.random_range(3..vocab)).collect())
        .collect();
    let batch = MicroBatch {
        labels: rows
            .iter()
            .map(|r| r.iter().map(|&t| i64::from(t)).collect())
            .collect(),
        input_ids: rows,
    };
    let mut model = model;
    let mut scaler = (args.precision == Precision::F16).then(|| LossScaler::new(65536.0, 2000));
    // Step 0 is the untimed warm-up.
    let mut started = Instant::now();
    let mut loss = 0.0;
    for step in 0..=args.steps {
        if step == 1 {
            started = Instant::now();
        }
        let batches = std::slice::from_ref(&batch);
        let (m, stats) = match &mut scaler {
            Some(s) => train_step_scaled(model, &mut optim, batches, 1e-4, 1.0, None, s)?,
            None => train_step(model, &mut optim, batches, 1e-4, 1.0, None)?,
        };
        model = m;
        loss = stats.loss;
    }
    let step_s = started.elapsed().as_secs_f64() / args.steps as f64;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!(
        "{}",
        serde_json::json!({
            "peer": "kwx",
            "shape": args.shape,
            "mode": args.mode,
            "precision": args.precision.name(),
            "device": args.device,
            "threads": threads,
            "batch": args.batch,
            "seq": args.seq,
            "tokens_per_s": (args.batch * args.seq) as f64 / step_s,
            "step_s": step_s,
            "peak_rss_mib": common::peak_rss_mib().unwrap_or(0.0),
            "loss": loss,
        })
    );
    Ok(())
}
