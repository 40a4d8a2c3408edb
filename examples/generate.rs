//! Streams a Gemma continuation of a prompt.
//!
//! ```text
//! cargo run --release --example generate -- --model DIR --prompt "Paris is the capital of"
//! cargo run --release --example generate -- --model ~/.cache/kwx/gemma-3-270m/gemma-3-270m-q4_k_m.gguf \
//!     --prompt "Paris is the capital of"      # tokenizer from the GGUF itself
//! cargo run --release --example generate -- --model DIR --chat --prompt "진통제란?" \
//!     --temperature 0.7 --top-p 0.9 --seed 1 --max-new-tokens 64
//! ```
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use kwx::core::burn::tensor::Device;
use kwx::core::{ChatMessage, Gemma, GenerationConfig, Generator};

#[derive(Parser, Debug)]
#[command(about = "Generate text with a Gemma model")]
struct Args {
    /// Hugging Face model folder (config.json, safetensors, tokenizer.json) or a `.gguf` file
    /// (llama.cpp, Ollama; quantized or not).
    #[arg(long)]
    model: PathBuf,
    /// A `tokenizer.json` to use instead of the model's own (the folder's, or the GGUF's
    /// embedded vocabulary).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in Gemma's chat template as a user turn.
    #[arg(long)]
    chat: bool,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k filtering.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling mass.
    #[arg(long)]
    top_p: Option<f32>,
    /// Repetition penalty (1 disables).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Matrix products in `f32`, `bf16` or `f16` (weights then stored in that type); for GPUs:
    /// the CPU backend widens half products to f32, so on CPU f32 is much faster.
    #[arg(long, default_value = "f32")]
    precision: kwx::core::Precision,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = Device::default();
    let t0 = Instant::now();
    let (model, tokenizer) =
        Gemma::load_with_tokenizer(&args.model, args.tokenizer.as_deref(), &device)
            .with_context(|| format!("loading {}", args.model.display()))?;
    let model = model.with_precision(args.precision)?.cast_frozen_matrices();
    eprintln!("loaded in {:.1}s", t0.elapsed().as_secs_f32());

    let prompt = if args.chat {
        tokenizer.encode_chat(&[ChatMessage::user(&args.prompt)], true)?
    } else {
        tokenizer.encode(&args.prompt, true)?
    };
    let mut config = GenerationConfig::greedy(args.max_new_tokens)
        .with_temperature(args.temperature)
        .with_repetition_penalty(args.repetition_penalty)
        .with_seed(args.seed);
    config.top_k = args.top_k;
    config.top_p = args.top_p;
    config.stop_strings = args.stop.clone();
    if let Some(end) = tokenizer.token_to_id("<end_of_turn>") {
        config.stop_tokens.push(end);
    }

    if !args.chat {
        print!("{}", args.prompt);
    }
    let start = Instant::now();
    let mut stdout = std::io::stdout();
    let out =
        Generator::new(&model)
            .with_tokenizer(&tokenizer)
            .generate(&prompt, &config, |ev| {
                print!("{}", ev.text);
                let _ = stdout.flush();
            })?;
    println!();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} prompt tokens, {} new tokens in {:.2}s ({:.1} tok/s), stopped by {:?}",
        prompt.len(),
        out.tokens.len(),
        secs,
        out.tokens.len() as f64 / secs,
        out.stop
    );
    Ok(())
}
