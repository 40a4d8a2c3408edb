//! Serves keyword extraction over HTTP, batching concurrent requests (`kwx::serve`).
//!
//! ```text
//! cargo run --release --example serve -- --addr 127.0.0.1:8080 --max-batch 16 --max-wait-ms 5 \
//!     --strategy dictionary [--dictionary my_terms.jsonl]
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
use kwx::core::{DictionaryExtractor, KeywordExtractor};
use kwx::data::dictionary::Dictionary;
use kwx::serve::{Batcher, ServeConfig, serve_batcher, shutdown_signal};

/// The strategies `--strategy` accepts; [`build_extractor`] builds each.
const STRATEGIES: &[&str] = &["dictionary"];

#[derive(Parser, Debug)]
#[command(about = "Serve keyword extraction over HTTP")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The extraction strategy (one of: dictionary).
    #[arg(long, default_value = "dictionary")]
    strategy: String,
    /// A dictionary file (.jsonl, .toml, .tsv) for `--strategy dictionary`; default: the bundled
    /// Korean pharmaceutical one.
    #[arg(long)]
    dictionary: Option<PathBuf>,
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
    match args.strategy.as_str() {
        "dictionary" => {
            let loaded;
            let dictionary = match &args.dictionary {
                Some(path) => {
                    loaded = Dictionary::from_path(path)
                        .with_context(|| format!("loading the dictionary {}", path.display()))?;
                    &loaded
                }
                None => Dictionary::bundled(),
            };
            Ok(Arc::new(DictionaryExtractor::new(dictionary)?))
        }
        other => bail!(
            "unknown strategy `{other}`; valid strategies: {}",
            STRATEGIES.join(", ")
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.dictionary.is_some() && args.strategy != "dictionary" {
        bail!("--dictionary applies to --strategy dictionary only");
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
