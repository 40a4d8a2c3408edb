//! Exports a model (Hugging Face folder or GGUF) to a GGUF that llama.cpp and Ollama serve.
//!
//! ```text
//! cargo run --release --example export_gguf -- --model DIR|FILE.gguf --out model.gguf --type q8_0
//! ollama create my-gemma -f Modelfile     # Modelfile: FROM ./model.gguf
//! ```
//! The vocabulary comes from the model's `tokenizer.json` (folder, or `--tokenizer FILE`) or
//! from the source GGUF's own metadata.
#![allow(clippy::print_stdout)]

mod common;

use common::WeightType;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use kwx::core::Gemma;
use kwx::core::burn::tensor::Device;
use kwx::core::gguf::{GgufFile, GgufVocab, WriteOptions, is_gguf, write_gemma};

#[derive(Parser, Debug)]
#[command(about = "Export a Gemma model to GGUF")]
struct Args {
    /// Hugging Face model folder or `.gguf` file.
    #[arg(long)]
    model: PathBuf,
    /// A `tokenizer.json` for the vocabulary (default: the model's own).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output `.gguf` file (written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Type of the 2-D weights (norms stay F32).
    #[arg(long, value_enum, default_value = "f16")]
    r#type: WeightType,
    /// `general.name` in the file.
    #[arg(long, default_value = "kwx export")]
    name: String,
    /// Write models llama.cpp would compute differently (kwx-only extension keys) instead of
    /// refusing them.
    #[arg(long)]
    allow_llama_cpp_mismatch: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = Device::default();
    let t0 = Instant::now();
    let model = Gemma::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let vocab_size = model.config().vocab_size;
    let vocab = match &args.tokenizer {
        Some(file) => {
            let tok = kwx::core::tokenizers::Tokenizer::from_file(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            GgufVocab::from_hf_tokenizer(&tok, vocab_size)?
        }
        None if is_gguf(&args.model) => GgufVocab::from_gguf(&GgufFile::open(&args.model)?)?,
        None => {
            let file = args.model.join("tokenizer.json");
            if !file.exists() {
                bail!(
                    "{} has no tokenizer.json; pass --tokenizer FILE",
                    args.model.display()
                );
            }
            let tok = kwx::core::tokenizers::Tokenizer::from_file(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            GgufVocab::from_hf_tokenizer(&tok, vocab_size)?
        }
    };
    let weight_type = args.r#type.ggml();

    let options = WriteOptions {
        name: args.name.clone(),
        llama_cpp_compatible: !args.allow_llama_cpp_mismatch,
        ..WriteOptions::new(weight_type)
    };
    write_gemma(&model, &vocab, &args.out, &options)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let bytes = std::fs::metadata(&args.out)?.len();
    eprintln!(
        "wrote {} ({:.1} MB, {}) in {:.1}s",
        args.out.display(),
        bytes as f64 / 1e6,
        weight_type.name(),
        t0.elapsed().as_secs_f32()
    );
    Ok(())
}
