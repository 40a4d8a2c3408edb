//! Trains a SentencePiece-style BPE or Unigram tokenizer on text files and saves it as an
//! ordinary `tokenizer.json` (strategy 5, a vocabulary of one's own).
//!
//! ```text
//! cargo run --release --example make_corpus -- --bytes 20000000 --out corpus.txt
//! cargo run --release --example train_tokenizer -- --corpus corpus.txt --model bpe \
//!     --vocab-size 16000 --normalization identity --dictionary-symbols --out tokenizer.json
//! ```
//! The corpus is UTF-8, one text per line, streamed (several `--corpus` files are read in order).
//! `--normalization` has no default on purpose: `identity` keeps `decode(encode(x)) == x`,
//! `nfkc` folds full-width and compatibility forms. User-defined symbols (`--symbols FILE`, one
//! per line, and with `--dictionary-symbols` every term and alias of the bundled dictionary)
//! always come out as one token, even inside words; duplicates (after normalization) are kept
//! once. The vocabulary holds `<pad> <eos> <bos> <unk>`, the 256 byte pieces, the symbols, then
//! the learned pieces. The last line on stdout is the saved file's path.
#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kwx::data::dictionary::Dictionary;
use kwx::tokenizer::{ModelKind, Normalization, Progress, Trainer, TrainerConfig, save_tokenizer};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    Bpe,
    Unigram,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Norm {
    /// Text as written.
    Identity,
    /// Unicode NFKC.
    Nfkc,
}

#[derive(Parser, Debug)]
#[command(about = "Train a BPE or Unigram tokenizer and save tokenizer.json")]
struct Args {
    /// Corpus file (UTF-8, one text per line); repeat for several.
    #[arg(long, required = true)]
    corpus: Vec<PathBuf>,
    /// `bpe` or `unigram`.
    #[arg(long, value_enum)]
    model: Model,
    /// Final vocabulary size, reserved pieces and symbols included.
    #[arg(long)]
    vocab_size: usize,
    /// `identity` or `nfkc` (required: it decides whether decoding gives back the input).
    #[arg(long, value_enum)]
    normalization: Norm,
    /// User-defined symbols, one per line (blank lines skipped).
    #[arg(long)]
    symbols: Option<PathBuf>,
    /// Add every term and alias of the bundled dictionary as a user-defined symbol.
    #[arg(long)]
    dictionary_symbols: bool,
    /// Share of character occurrences the alphabet covers (default 0.9995); the rest falls back
    /// to bytes.
    #[arg(long)]
    character_coverage: Option<f64>,
    /// BPE: least pair count to merge; Unigram: least word count to keep (default 2).
    #[arg(long)]
    min_frequency: Option<u64>,
    /// Prepend `▁` to the first word of each text (SentencePiece's `add_dummy_prefix`).
    #[arg(long)]
    dummy_prefix: bool,
    /// Output `tokenizer.json` (written atomically).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = match args.model {
        Model::Bpe => ModelKind::Bpe,
        Model::Unigram => ModelKind::Unigram,
    };
    let normalization = match args.normalization {
        Norm::Identity => Normalization::Identity,
        Norm::Nfkc => Normalization::Nfkc,
    };

    let mut candidates: Vec<String> = Vec::new();
    if let Some(path) = &args.symbols {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading symbols from {}", path.display()))?;
        candidates.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    if args.dictionary_symbols {
        candidates.extend(
            Dictionary::bundled()
                .surfaces()
                .map(|(surface, _)| surface.to_owned()),
        );
    }
    // The trainer refuses duplicates (it names them); here a symbol listed twice, or a term
    // that is also another entry's alias, is simply kept once.
    let mut seen = HashSet::new();
    let symbols: Vec<String> = candidates
        .iter()
        .filter(|s| seen.insert(normalization.apply(s)))
        .cloned()
        .collect();
    let duplicates = candidates.len() - symbols.len();

    let mut config = TrainerConfig::new(model, args.vocab_size, normalization)
        .with_user_defined_symbols(symbols)
        .with_dummy_prefix(args.dummy_prefix);
    if let Some(c) = args.character_coverage {
        config = config.with_character_coverage(c);
    }
    if let Some(m) = args.min_frequency {
        config = config.with_min_frequency(m);
    }
    let n_symbols = config.user_defined_symbols.len();
    let trainer = Trainer::new(config).context("invalid trainer settings")?;
    if n_symbols > 0 {
        eprintln!(
            "{n_symbols} user-defined symbols{}",
            if duplicates > 0 {
                format!(" ({duplicates} duplicates dropped)")
            } else {
                String::new()
            }
        );
    }

    let reading = ProgressBar::new(0);
    reading.set_style(
        ProgressStyle::with_template(
            "reading [{bar:40}] {bytes}/{total_bytes} {msg} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut training: Option<ProgressBar> = None;
    let mut logged_tenth = 0u64;
    let t0 = Instant::now();
    let trained = trainer
        .train_files(&args.corpus, &mut |p| match p {
            Progress::Reading {
                bytes,
                total_bytes,
                lines,
            } => {
                if let Some(total) = total_bytes {
                    reading.set_length(*total);
                    let tenth = bytes * 10 / (*total).max(1);
                    if reading.is_hidden() && tenth > logged_tenth {
                        logged_tenth = tenth;
                        eprintln!("read {bytes} of {total} bytes, {lines} lines");
                    }
                }
                reading.set_position(*bytes);
                reading.set_message(format!("{lines} lines"));
            }
            Progress::Training {
                distinct_words,
                alphabet,
            } => {
                reading.finish_and_clear();
                let line = format!(
                    "training {} on {distinct_words} distinct words, alphabet {alphabet}",
                    model.name()
                );
                let spinner = ProgressBar::new_spinner();
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                if spinner.is_hidden() {
                    eprintln!("{line}");
                }
                spinner.set_message(line);
                spinner.enable_steady_tick(Duration::from_millis(120));
                training = Some(spinner);
            }
            Progress::Finished { vocab_size } => {
                if let Some(s) = training.take() {
                    s.finish_and_clear();
                }
                eprintln!("trained a vocabulary of {vocab_size}");
            }
        })
        .with_context(|| {
            let files: Vec<String> = args
                .corpus
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!("training {} on {}", model.name(), files.join(", "))
        })?;
    let wall = t0.elapsed();
    reading.finish_and_clear();
    if let Some(s) = training.take() {
        s.finish_and_clear();
    }

    save_tokenizer(&trained.tokenizer, &args.out)?;
    let s = &trained.stats;
    println!("| {} tokenizer | |", model.name());
    println!("|---|---:|");
    println!("| lines | {} |", s.lines);
    println!("| bytes | {} |", s.bytes);
    println!("| distinct words | {} |", s.distinct_words);
    println!("| alphabet (characters) | {} |", s.alphabet);
    println!(
        "| dropped characters (byte fallback) | {} |",
        s.dropped_characters
    );
    println!("| user-defined symbols | {n_symbols} |");
    if s.vocab_size < args.vocab_size {
        // BPE runs out of merges, Unigram of candidate pieces, on a small corpus.
        println!(
            "| vocabulary size | {} (of {} asked: the corpus held no more pieces) |",
            s.vocab_size, args.vocab_size
        );
    } else {
        println!("| vocabulary size | {} |", s.vocab_size);
    }
    println!("| wall time | {:.2} s |", wall.as_secs_f64());
    println!("{}", args.out.display());
    Ok(())
}
