//! Serves keyword extraction over HTTP, batching concurrent requests (`kwx::serve`).
//!
//! ```text
//! cargo run --release --example serve -- --addr 127.0.0.1:8080 --max-batch 16 --max-wait-ms 5 \
//!     --strategy dictionary [--dictionary my_terms.jsonl]
//! # Gemma 3 270M (scripts/fetch_model.sh) prompted with similar examples, or a LoRA fine-tune:
//! cargo run --release --example serve -- --strategy few-shot
//! cargo run --release --example serve -- --strategy fine-tuned --adapter runs/lora/checkpoint-000240/adapter
//!
//! curl -s localhost:8080/health
//! curl -s localhost:8080/extract -H 'content-type: application/json' \
//!     -d '{"text": "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다."}'
//! curl -s localhost:8080/extract -H 'content-type: application/json' \
//!     -d '{"texts": ["해열진통제는 노인에게", "파스형 의약품"]}'
//! ```
//! The first answers `{"status":"ok","extractor":"dictionary"}`, the second
//! `{"keywords":[{"text":"진통","category":...,"spans":[{"start":0,"end":2}]},...]}`, the third
//! `{"results":[[...],[...]]}`. Ctrl-C (or SIGTERM) stops accepting connections and exits once
//! the requests in flight are answered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use kwx::core::burn::tensor::Device;
use kwx::core::extract::{Constrain, Example, ExamplePool, PromptConfig, PromptExtractor};
use kwx::core::{DictionaryExtractor, Gemma, KeywordExtractor, home};
use kwx::data::builder::DatasetBuilder;
use kwx::data::dictionary::Dictionary;
use kwx::peft::extract::{fine_tuned, fully_tuned};
use kwx::serve::{Batcher, ServeConfig, serve_batcher, shutdown_signal};

/// The strategies `--strategy` accepts; [`build_extractor`] builds each.
const STRATEGIES: &[&str] = &[
    "dictionary",
    "zero-shot",
    "few-shot",
    "feedback",
    "fine-tuned",
];

#[derive(Parser, Debug)]
#[command(about = "Serve keyword extraction over HTTP")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The extraction strategy: dictionary, zero-shot, few-shot, feedback, or fine-tuned (a
    /// model trained by `finetune`: `--adapter DIR` for LoRA, or `--model` a full fine-tune).
    #[arg(long, default_value = "dictionary")]
    strategy: String,
    /// A dictionary file (.jsonl, .toml, .tsv); default: the bundled Korean pharmaceutical one.
    #[arg(long)]
    dictionary: Option<PathBuf>,
    /// Hugging Face folder or `.gguf` for the model strategies; default: the Gemma 3 270M
    /// scripts/fetch_model.sh fetched.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A `tokenizer.json` instead of the model's own (e.g. an extended one).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A PEFT adapter folder merged into the model (`fine-tuned`).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The instruction the model was fine-tuned with (`fine-tuned`).
    #[arg(long, default_value = kwx::data::builder::DEFAULT_INSTRUCTION)]
    instruction: String,
    /// Few-shot examples per text (few-shot, feedback), chosen from generated training texts.
    #[arg(long, default_value_t = 3)]
    shots: usize,
    /// Output constraint of the model strategies: json, extractive or none.
    #[arg(long, default_value = "json")]
    constrain: String,
    /// The most texts per extractor call.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// How long a batch waits for more requests after its first, in milliseconds.
    #[arg(long, default_value_t = 5)]
    max_wait_ms: u64,
    /// The longest text accepted, in characters.
    #[arg(long, default_value_t = 20_000)]
    max_text_chars: usize,
    /// The most texts one request may carry.
    #[arg(long, default_value_t = 64)]
    max_texts_per_request: usize,
    /// Requests that may wait for the extractor before new ones get 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

/// The one place a strategy name becomes an extractor: new strategies are new arms here.
fn build_extractor(args: &Args) -> anyhow::Result<Arc<dyn KeywordExtractor>> {
    let loaded;
    let dictionary = match &args.dictionary {
        Some(path) => {
            loaded = Dictionary::from_path(path)
                .with_context(|| format!("loading the dictionary {}", path.display()))?;
            &loaded
        }
        None => Dictionary::bundled(),
    };
    if args.strategy == "dictionary" {
        return Ok(Arc::new(DictionaryExtractor::new(dictionary)?));
    }
    if !STRATEGIES.contains(&args.strategy.as_str()) {
        bail!(
            "unknown strategy `{}`; valid strategies: {}",
            args.strategy,
            STRATEGIES.join(", ")
        );
    }
    let constrain = match args.constrain.as_str() {
        "json" => Constrain::Json,
        "extractive" => Constrain::Extractive,
        "none" => Constrain::None,
        other => bail!("--constrain {other}: use json, extractive or none"),
    };
    let path = match &args.model {
        Some(p) => p.clone(),
        None => home::gemma3_270m_gguf()
            .context("no --model given: run scripts/fetch_model.sh to fetch Gemma 3 270M")?,
    };
    let device = Device::default();
    let (model, tokenizer) = Gemma::load_with_tokenizer(&path, args.tokenizer.as_deref(), &device)
        .with_context(|| format!("loading {}", path.display()))?;
    let pool = || -> anyhow::Result<ExamplePool> {
        let examples = DatasetBuilder::new(dictionary)
            .seed(0)
            .n(2000)
            .build()
            .unwrap_or_default();
        Ok(ExamplePool::new(
            examples
                .into_iter()
                .map(|e| Example {
                    text: e.text,
                    labels: e.labels,
                })
                .collect(),
        ))
    };
    let prompted = |config: PromptConfig| -> anyhow::Result<PromptExtractor> {
        Ok(PromptExtractor::new(
            model.clone(),
            tokenizer.clone(),
            config.constrained(constrain),
        )?
        .with_dictionary(dictionary, [])?)
    };
    Ok(match args.strategy.as_str() {
        "zero-shot" => Arc::new(prompted(PromptConfig::zero_shot())?),
        "few-shot" => {
            Arc::new(prompted(PromptConfig::few_shot(args.shots))?.with_examples(pool()?))
        }
        "feedback" => {
            Arc::new(prompted(PromptConfig::feedback(args.shots, 1))?.with_examples(pool()?))
        }
        _ => match &args.adapter {
            Some(dir) => Arc::new(fine_tuned(
                "fine-tuned",
                model,
                dir,
                tokenizer,
                &args.instruction,
                constrain,
            )?),
            None => Arc::new(fully_tuned(
                "fine-tuned",
                model,
                tokenizer,
                &args.instruction,
                constrain,
            )?),
        },
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.adapter.is_some() && args.strategy != "fine-tuned" {
        bail!("--adapter applies to --strategy fine-tuned only");
    }
    let extractor = build_extractor(&args)?;
    let config = ServeConfig::default()
        .max_batch(args.max_batch)
        .max_wait(Duration::from_millis(args.max_wait_ms))
        .max_text_chars(args.max_text_chars)
        .max_texts_per_request(args.max_texts_per_request)
        .queue(args.queue);
    let batcher = Batcher::new(extractor, config)?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    eprintln!(
        "listening on http://{} (extractor `{}`, max batch {}, max wait {} ms); Ctrl-C stops",
        listener.local_addr()?,
        batcher.extractor_name(),
        args.max_batch,
        args.max_wait_ms
    );
    serve_batcher(listener, batcher.clone(), shutdown_signal()).await?;
    let stats = batcher.stats();
    eprintln!(
        "stopped: {} requests, {} texts in {} batches (largest {})",
        stats.requests, stats.texts, stats.batches, stats.largest_batch
    );
    Ok(())
}
