//! kwx's main job: every strategy on the same model, dictionary and test set — a table of
//! precision, recall, F1 and latency per strategy, `report.json`, `report.md` and a bar chart.
//!
//! ```text
//! scripts/fetch_model.sh                                   # once: Gemma 3 270M into ~/.cache/kwx
//! cargo run --release --example compare -- --quick         # < 10 min on a CPU
//! cargo run --release --example compare -- --out runs/compare     # the documented run (~1 h)
//! cargo run --release --example compare -- --model path/to/model.gguf --test test.jsonl \
//!     --strategies dictionary,few-shot,rag,lora --out runs/mine
//! ```
//! `--test` holds `{"text","labels"}` rows; without it the generated test split is used.
//! Trained strategies (`lora`, `lora-tokenizer`, `sft`) train in `OUT/train/<name>` unless
//! given: `--lora-adapter DIR`, `--lora-tokenizer-adapter DIR` (with its `tokenizer.json`),
//! `--sft-model PATH`. The table is printed; the last line is the path of `report.json`.
#![allow(clippy::print_stdout)]

#[path = "common/alloc.rs"]
mod alloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kwx::compare::{self, CompareConfig, Event, Strategy};
use kwx::core::burn::tensor::Device;
use kwx::core::extract::Constrain;
use kwx::core::home;

#[derive(Parser, Debug)]
#[command(about = "Compare keyword-extraction strategies on one model and test set")]
struct Args {
    /// Hugging Face model folder or `.gguf`; default: the Gemma 3 270M scripts/fetch_model.sh
    /// fetched (run it first).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A `tokenizer.json` instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Test records, `{"text","labels"}` JSONL; default: the generated test split.
    #[arg(long)]
    test: Option<PathBuf>,
    /// A dictionary (JSONL, TOML or TSV) instead of the bundled one.
    #[arg(long)]
    dictionary: Option<PathBuf>,
    /// Comma-separated subset of
    /// dictionary,zero-shot,few-shot,feedback,rag,lora,lora-tokenizer,sft.
    #[arg(
        long,
        default_value = "dictionary,zero-shot,few-shot,feedback,rag,lora,lora-tokenizer,sft"
    )]
    strategies: String,
    /// Output folder.
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Small settings that finish on a CPU in under 10 minutes (10 texts, short training).
    #[arg(long)]
    quick: bool,
    /// Test texts (the first N; 0 = all).
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the held-out split, generated data and training.
    #[arg(long)]
    seed: Option<u64>,
    /// Few-shot examples per text.
    #[arg(long)]
    few_shot: Option<usize>,
    /// Feedback retries.
    #[arg(long)]
    retries: Option<usize>,
    /// Output constraint: json (default), extractive or none.
    #[arg(long)]
    constrain: Option<String>,
    /// Texts per generation batch.
    #[arg(long)]
    batch: Option<usize>,
    /// LoRA training steps (lora, lora-tokenizer).
    #[arg(long)]
    lora_steps: Option<usize>,
    /// Full fine-tuning steps (sft).
    #[arg(long)]
    sft_steps: Option<usize>,
    /// A trained LoRA adapter folder for `lora` (skips training).
    #[arg(long)]
    lora_adapter: Option<PathBuf>,
    /// A trained adapter folder with its tokenizer.json for `lora-tokenizer`.
    #[arg(long)]
    lora_tokenizer_adapter: Option<PathBuf>,
    /// A fully fine-tuned model (folder or .gguf) for `sft`.
    #[arg(long)]
    sft_model: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    alloc::setup();
    let args = Args::parse();
    let model = match &args.model {
        Some(p) => p.clone(),
        None => home::gemma3_270m_gguf()
            .context("no --model given: run scripts/fetch_model.sh to fetch Gemma 3 270M")?,
    };
    let mut config = if args.quick {
        CompareConfig::quick(model, &args.out)
    } else {
        CompareConfig::full(model, &args.out)
    };
    config.tokenizer = args.tokenizer.clone();
    config.test = args.test.clone();
    config.dictionary = args.dictionary.clone();
    config.strategies = Strategy::parse_list(&args.strategies)?;
    macro_rules! set {
        ($($flag:ident => $field:expr),*) => {$(
            if let Some(v) = args.$flag { $field = v; }
        )*};
    }
    set!(limit => config.limit, seed => config.seed, few_shot => config.few_shot,
         retries => config.retries, batch => config.batch_size,
         lora_steps => config.lora.max_steps, sft_steps => config.sft.max_steps);
    if let Some(c) = &args.constrain {
        config.constrain = match c.as_str() {
            "json" => Constrain::Json,
            "extractive" => Constrain::Extractive,
            "none" => Constrain::None,
            other => anyhow::bail!("--constrain {other}: use json, extractive or none"),
        };
    }
    for (strategy, path) in [
        (Strategy::Lora, &args.lora_adapter),
        (Strategy::LoraTokenizer, &args.lora_tokenizer_adapter),
        (Strategy::Sft, &args.sft_model),
    ] {
        if let Some(p) = path {
            config.given.insert(strategy, p.clone());
        }
    }

    let device = Device::default();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>16} {msg:<10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let report = compare::run(&config, &device, &mut |event| match event {
        Event::Stage {
            strategy,
            stage,
            total,
        } => {
            bar.reset();
            bar.set_length(total as u64);
            bar.set_prefix(strategy.name());
            bar.set_message(stage);
            if bar.is_hidden() {
                eprintln!("{}: {stage} ({total})", strategy.name());
            }
        }
        Event::Progress { done } => bar.set_position(done as u64),
        Event::TrainStep(s) => bar.set_message(format!("loss {:.3}", s.loss)),
        Event::Finished(r) => say(format!(
            "{:>16}: F1 {:.3} (P {:.3} R {:.3}), lenient {:.3}, {:.2} s/text",
            r.name, r.f1, r.precision, r.recall, r.f1_lenient, r.seconds_per_text
        )),
        _ => {}
    })?;
    bar.finish_and_clear();
    println!("{}", report.to_markdown());
    println!("chart: {}", config.out.join("report.png").display());
    println!("{}", config.out.join("report.json").display());
    Ok(())
}
