//! Queries a kwx-rag index: ranked chunks, and the prompt context that fits a token budget.
//!
//! ```text
//! cargo run --release --example query_index -- --index target/kwx-index \
//!     "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다."
//! ```
//! `--mode dense|hybrid` needs an index built with `--embed-model` and the same model and
//! `--embed-layers` here. Sentences come from the arguments, or one per line from `--file`
//! (with a progress bar and a throughput line).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kwx::core::GemmaTokenizer;
use kwx::rag::{ContextBuilder, GemmaEmbedder, Mode, RagIndex, SearchRequest};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Lexical,
    Dense,
    Hybrid,
}

#[derive(Parser, Debug)]
#[command(about = "Query a kwx-rag index")]
struct Args {
    /// The index folder.
    #[arg(long)]
    index: PathBuf,
    /// Sentences to look up.
    sentences: Vec<String>,
    /// A file with one sentence per line (prints JSON lines instead of tables).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Hits to show.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Ranking.
    #[arg(long, value_enum, default_value_t = ModeArg::Lexical)]
    mode: ModeArg,
    /// Only these categories (repeatable).
    #[arg(long)]
    category: Vec<String>,
    /// The Gemma model for dense/hybrid queries (the one the index was built with).
    #[arg(long)]
    embed_model: Option<PathBuf>,
    /// Decoder layers the embedder runs (as at build time).
    #[arg(long)]
    embed_layers: Option<usize>,
    /// A tokenizer.json to measure the context budget with (default: the fetched Gemma 3 one).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Prompt context budget, in tokens.
    #[arg(long, default_value_t = 256)]
    budget: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut index = RagIndex::open(&args.index)?;
    let mode = match args.mode {
        ModeArg::Lexical => Mode::Lexical,
        ModeArg::Dense => Mode::Dense,
        ModeArg::Hybrid => Mode::Hybrid,
    };
    if let Some(model) = &args.embed_model {
        let mut embedder = GemmaEmbedder::from_path(model)?;
        if let Some(layers) = args.embed_layers {
            embedder = embedder.layers(layers);
        }
        index = index.with_embedder(Arc::new(embedder))?;
    }
    let tokenizer_path = match &args.tokenizer {
        Some(p) => p.clone(),
        None => kwx::core::home::gemma3_270m_tokenizer()
            .context("no --tokenizer and no fetched model: run scripts/fetch_model.sh")?,
    };
    let tokenizer = GemmaTokenizer::from_file(&tokenizer_path)?;
    let context = ContextBuilder::new(&index, &tokenizer, args.budget)
        .mode(mode)
        .categories(args.category.clone());

    if let Some(file) = &args.file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let pb = ProgressBar::new(lines.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("query [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let t0 = Instant::now();
        let mut out = String::new();
        for line in &lines {
            let ctx = context.build(line)?;
            out.push_str(&serde_json::to_string(&serde_json::json!({
                "text": line, "terms": ctx.terms, "tokens": ctx.tokens,
            }))?);
            out.push('\n');
            pb.inc(1);
        }
        pb.finish_and_clear();
        print!("{out}");
        eprintln!(
            "{} sentences in {:.2} s ({:.0}/s)",
            lines.len(),
            t0.elapsed().as_secs_f64(),
            lines.len() as f64 / t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    for sentence in &args.sentences {
        let t0 = Instant::now();
        let hits = index.search(
            &SearchRequest::new(sentence.as_str(), args.k)
                .mode(mode)
                .categories(args.category.clone()),
        )?;
        let took = t0.elapsed();
        println!("{sentence}");
        println!("| rank | score | term | category | key | lexical | dense |");
        println!("|---:|---:|---|---|---|---:|---:|");
        for (i, h) in hits.iter().enumerate() {
            println!(
                "| {} | {:.4} | {} | {} | {} | {} | {} |",
                i + 1,
                h.score,
                h.chunk.term.as_deref().unwrap_or("-"),
                h.chunk.category.as_deref().unwrap_or("-"),
                h.chunk.key,
                h.lexical_rank.map_or("-".into(), |r| r.to_string()),
                h.dense_rank.map_or("-".into(), |r| r.to_string()),
            );
        }
        let ctx = context.build(sentence)?;
        println!(
            "\ncontext ({} of {} tokens, {} dropped) in {:.1} ms search:\n{}\n",
            ctx.tokens,
            args.budget,
            ctx.dropped.len(),
            took.as_secs_f64() * 1e3,
            ctx.text
        );
    }
    Ok(())
}
