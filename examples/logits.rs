//! Prints a model's logits for a token sequence as JSON, for parity checks from outside the
//! test suite (a Python script can compare them with transformers).
//!
//! ```text
//! cargo run --release --example logits -- --model DIR|FILE.gguf [--adapter DIR] --ids 2,17,250 [--greedy N]
//!     [--precision bf16]
//! ```
//! Output, one JSON object on stdout:
//! `{"logits": [[f32; vocab] for every position], "greedy": [N ids]}`, where `greedy` are N tokens
//! generated after the ids by greedy decoding through the KV cache.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kwx::core::burn::tensor::Device;
use kwx::core::{Gemma, GenerationConfig, Generator};

#[derive(Parser, Debug)]
#[command(about = "Print Gemma logits for token ids as JSON")]
struct Args {
    /// Hugging Face model folder (config.json + safetensors) or a `.gguf` file.
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter folder to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Comma-separated token ids, e.g. 2,17,250.
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<u32>,
    /// Greedy tokens to generate after the ids.
    #[arg(long, default_value_t = 0)]
    greedy: usize,
    /// Matrix products in `f32`, `bf16` or `f16` (weights then stored in that type); for GPUs:
    /// the CPU backend widens half products to f32, so on CPU f32 is much faster.
    #[arg(long, default_value = "f32")]
    precision: kwx::core::Precision,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = Device::default();
    let mut model = Gemma::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?
        .with_precision(args.precision)?
        .cast_frozen_matrices();
    if let Some(dir) = &args.adapter {
        let adapter = kwx::peft::Adapter::load(dir, &model)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
        model = kwx::peft::attach(model, &adapter)?;
    }
    let vocab = model.config().vocab_size;
    let logits: Vec<f32> = model
        .logits(&args.ids)?
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let greedy = if args.greedy > 0 {
        let cfg = GenerationConfig::greedy(args.greedy).with_stop_at_eos(false);
        Generator::new(&model)
            .generate(&args.ids, &cfg, |_| {})?
            .tokens
    } else {
        Vec::new()
    };
    let rows: Vec<&[f32]> = logits.chunks(vocab).collect();
    let out = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(out);
    serde_json::to_writer(
        &mut out,
        &serde_json::json!({ "logits": rows, "greedy": greedy }),
    )?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
