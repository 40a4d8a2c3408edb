//! Load time, peak memory, prefill and decode speed of a GGUF model, as one JSON line — the kwx
//! side of `scripts/bench_gguf_compare.sh` (llama.cpp runs the same ids on the same file).
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example bench_gguf -- \
//!     --model ~/.cache/kwx/gemma-3-270m/gemma-3-270m-q4_k_m.gguf --prompt-tokens 128 --new-tokens 64
//! ```
#![allow(clippy::print_stdout)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use kwx::core::burn::tensor::Device;
use kwx::core::{Gemma, GenerationConfig, Generator};

#[derive(Parser, Debug)]
#[command(about = "Benchmark loading and running a GGUF model")]
struct Args {
    /// The `.gguf` file (or a Hugging Face folder).
    #[arg(long)]
    model: PathBuf,
    /// Prompt length in tokens (ids are a fixed pseudo-random sequence after <bos>).
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens to decode after the prompt.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Timed repetitions of prefill and decode (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
}

/// The prompt both sides run: `<bos>` and a fixed sequence of ordinary token ids.
fn prompt(n: usize, vocab: usize) -> Vec<u32> {
    let mut ids = vec![2u32];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while ids.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Stay clear of special and unused ids at the start of Gemma's vocabulary.
        ids.push(1000 + (x % (vocab as u64 / 4)) as u32);
    }
    ids
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = Device::default();
    let t0 = Instant::now();
    let model = Gemma::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let load_s = t0.elapsed().as_secs_f64();
    let rss_after_load = common::peak_rss_mib();
    let ids = prompt(args.prompt_tokens, model.config().vocab_size);

    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..args.reps.max(1) {
        // Prefill: the prompt through the model and the first token (what llama.cpp's eval + sample does).
        let t = Instant::now();
        let first = Generator::new(&model).generate(&ids, &GenerationConfig::greedy(1), |_| {})?;
        prefill.push(t.elapsed().as_secs_f64());
        // Decode: prompt + N tokens, minus the prefill time, per token.
        let cfg = GenerationConfig::greedy(args.new_tokens + 1).with_stop_at_eos(false);
        let t = Instant::now();
        let out = Generator::new(&model).generate(&ids, &cfg, |_| {})?;
        let total = t.elapsed().as_secs_f64();
        decode.push((total - prefill[prefill.len() - 1]) / args.new_tokens as f64);
        tokens = out.tokens;
        anyhow::ensure!(
            tokens.first() == first.tokens.first(),
            "prefill and decode disagree"
        );
    }
    let (p, d) = (median(prefill), median(decode));
    println!(
        "{}",
        serde_json::json!({
            "engine": "kwx",
            "threads": std::env::var("RAYON_NUM_THREADS").ok(),
            "load_s": load_s,
            "peak_rss_mib_after_load": rss_after_load,
            "peak_rss_mib": common::peak_rss_mib(),
            "prompt_tokens": ids.len(),
            "prompt_ids": ids,
            "new_tokens": args.new_tokens,
            "prefill_tok_s": ids.len() as f64 / p,
            "decode_tok_s": 1.0 / d,
            "tokens": tokens,
        })
    );
    Ok(())
}
