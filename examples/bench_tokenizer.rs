//! Tokenizer training time and memory: kwx's trainer (crates/kwx-tokenizer) on a corpus file,
//! BPE and Unigram, one JSON line per model. `scripts/bench_tokenizer_compare.sh` runs it beside
//! SentencePiece and Hugging Face `tokenizers` (`scripts/bench_tokenizer_peer.py`) on the same
//! corpus and thread count and prints the ratio.
//!
//! ```text
//! cargo run --release --example make_corpus -- --bytes 20000000 --out /tmp/kwx-corpus-20mb.txt
//! cargo run --release --example bench_tokenizer -- --corpus /tmp/kwx-corpus-20mb.txt \
//!     --vocab-size 16000 --models bpe,unigram --threads 1
//! ```
//! Each model trains in a fresh child process (this program re-run with a hidden `--one MODEL`),
//! so one run's allocations and thread pool do not carry into the next. The child gets
//! `RAYON_NUM_THREADS=N` (and `TOKENIZERS_PARALLELISM=true`, as the peer sets) in its
//! environment, which sizes rayon's global pool, the one both kwx's word counting and the
//! `tokenizers` trainers run on; it checks the pool has `N` threads before training. It prints
//! `{"peer":"kwx","model","vocab_size","corpus_bytes","wall_s","peak_rss_mib","threads",
//! "trained_vocab"}`; the parent passes each child's line through to stdout. `wall_s` times
//! `Trainer::train_files` alone (reading and counting the corpus included, as the peer's time
//! includes reading it); `peak_rss_mib` is the child's `VmHWM` after training. The tokenizers are
//! saved (not timed) as `OUT_DIR/kwx-{bpe,unigram}.json`.
//!
//! Settings: `TrainerConfig::new(model, vocab_size, Normalization::Identity)` and its defaults,
//! which match the peer's SentencePiece settings (control symbols `<pad> <eos> <bos> <unk>`, the
//! 256 byte pieces, no user symbols, character coverage 0.9995, no dummy prefix, split at
//! whitespace, pieces up to 16 characters), and min frequency 2, kwx's default. The peers set
//! none: SentencePiece has no such setting (its BPE merges any pair, its Unigram keeps every
//! word), and HF's `BpeTrainer` defaults to 0. For BPE the difference only shows once the most
//! frequent remaining pair occurs once; for Unigram kwx then leaves out words seen once, which the
//! peers keep. `--min-frequency 1` gives the peers' behaviour exactly.
#![allow(clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use kwx::core::tokenizers::utils::parallelism::current_num_threads;
use kwx::tokenizer::{ModelKind, Normalization, Trainer, TrainerConfig, save_tokenizer};

#[derive(Parser, Debug)]
#[command(about = "Time kwx tokenizer training (one JSON line per model)")]
struct Args {
    /// UTF-8 text, one sentence per line.
    #[arg(long)]
    corpus: PathBuf,
    /// Final vocabulary size, reserved pieces included.
    #[arg(long, default_value_t = 16_000)]
    vocab_size: usize,
    /// Comma-separated: bpe, unigram.
    #[arg(long, value_delimiter = ',', default_value = "bpe,unigram")]
    models: Vec<String>,
    /// Rayon threads for each training run.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Minimum frequency (see the module docs; 1 matches the peers exactly).
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Where the trained tokenizers are saved; default: `$TMPDIR/kwx-tokenizer-bench`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Child mode: train this model once and print its JSON line.
    #[arg(long, hide = true)]
    one: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kwx-tokenizer-bench"));
    if let Some(model) = &args.one {
        return one(&args, model, &out_dir);
    }

    let models: Vec<ModelKind> = args
        .models
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| m.parse::<ModelKind>())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!models.is_empty(), "--models lists no model");
    anyhow::ensure!(
        args.corpus.is_file(),
        "no corpus file {}",
        args.corpus.display()
    );
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let exe = std::env::current_exe().context("finding this program's path")?;
    let mut failed = 0;
    for model in models {
        let output = Command::new(&exe)
            .arg("--one")
            .arg(model.name())
            .arg("--corpus")
            .arg(&args.corpus)
            .arg("--vocab-size")
            .arg(args.vocab_size.to_string())
            .arg("--threads")
            .arg(args.threads.to_string())
            .arg("--min-frequency")
            .arg(args.min_frequency.to_string())
            .arg("--out-dir")
            .arg(&out_dir)
            .env("RAYON_NUM_THREADS", args.threads.to_string())
            .env("TOKENIZERS_PARALLELISM", "true")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match stdout.lines().rfind(|l| l.starts_with('{')) {
            Some(line) if output.status.success() => println!("{line}"),
            _ => {
                eprintln!(
                    "bench_tokenizer: kwx {} failed ({})",
                    model.name(),
                    output.status
                );
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} run(s) failed");
    }
    Ok(())
}

/// The child: one training run, one JSON line.
fn one(args: &Args, model: &str, out_dir: &Path) -> anyhow::Result<()> {
    let model: ModelKind = model.parse()?;
    // The parent sized the global pool through RAYON_NUM_THREADS; make sure it took.
    let pool = current_num_threads();
    if pool != args.threads {
        bail!(
            "rayon's global pool has {pool} threads, not {}: run through the parent, or set \
             RAYON_NUM_THREADS={}",
            args.threads,
            args.threads
        );
    }
    let config = TrainerConfig::new(model, args.vocab_size, Normalization::Identity)
        .with_min_frequency(args.min_frequency);
    let trainer = Trainer::new(config)?;
    let corpus_bytes = std::fs::metadata(&args.corpus)
        .with_context(|| format!("reading {}", args.corpus.display()))?
        .len();

    let started = Instant::now();
    let trained = trainer
        .train_files(std::slice::from_ref(&args.corpus), &mut |_| {})
        .with_context(|| format!("training {} on {}", model.name(), args.corpus.display()))?;
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_mib = common::peak_rss_mib().unwrap_or(0.0);

    let path = out_dir.join(format!("kwx-{}.json", model.name()));
    save_tokenizer(&trained.tokenizer, &path)?;
    println!(
        "{}",
        serde_json::json!({
            "peer": "kwx",
            "model": model.name(),
            "vocab_size": args.vocab_size,
            "corpus_bytes": corpus_bytes,
            "wall_s": (wall_s * 1000.0).round() / 1000.0,
            "peak_rss_mib": (peak_rss_mib * 10.0).round() / 10.0,
            "threads": pool,
            "trained_vocab": trained.stats.vocab_size,
        })
    );
    Ok(())
}
