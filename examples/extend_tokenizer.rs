//! Teaches an existing tokenizer (by default the real Gemma 3 270M's) domain terms as single
//! tokens, measures what that changes, and optionally gives the model rows for them (strategy 5).
//!
//! ```text
//! scripts/fetch_model.sh        # Gemma 3 270M's tokenizer.json and GGUF into ~/.cache/kwx
//! # new ids after the vocabulary, the bundled dictionary's terms, a resized model:
//! cargo run --release --example extend_tokenizer -- --mode add --out runs/tok-add \
//!     --model ~/.cache/kwx/gemma-3-270m/gemma-3-270m-q4_k_m.gguf
//! # Gemma's <unused*> tokens taken over, the vocabulary size unchanged, terms from a file:
//! cargo run --release --example extend_tokenizer -- --mode unused --terms terms.txt \
//!     --corpus corpus.txt --out runs/tok-unused
//! ```
//! Writes into `--out`:
//! - `tokenizer.json`: the extended tokenizer. Terms become non-special added tokens matched
//!   anywhere in the raw text; `add` gives them ids after the vocabulary, `unused` renames
//!   `<unusedN>` tokens (lowest ids first) so the vocabulary size stays.
//! - `fragmentation.json` and `fragmentation.png` (terms by token count, before and after):
//!   tokens per term and corpus tokens before and after (the table is
//!   printed), on `--corpus` (one text per line) or 5,000 generated sentences (seed 1).
//! - `new_tokens.json`: every term now a single token, with its id, the ids it was split into
//!   and what the id held before.
//! - `train_new_rows.toml`: a `finetune --config` that trains the new rows
//!   (`trainable_token_indices`).
//! - with `--model` (a Hugging Face folder or `.gguf`), `model.gguf`: the model with rows for the
//!   new ids (`add`: `Gemma::resize_token_embeddings`, `unused`: `Gemma::init_token_rows`), each
//!   the mean of the rows of the pieces the term used to be split into (Fast Vocabulary
//!   Transfer; the vocabulary mean plus small noise for rows without pieces and for padding),
//!   with the extended vocabulary. F32 by default: every existing weight is kept exactly.
#![allow(clippy::print_stdout)]

mod common;

use common::WeightType;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kwx::core::burn::tensor::Device;
use kwx::core::gguf::{GgufFile, GgufVocab, WriteOptions, tokenizer_from_gguf, write_gemma};
use kwx::core::{Gemma, ResizeOptions, home};
use kwx::data::builder::DatasetBuilder;
use kwx::data::dictionary::Dictionary;
use kwx::peft::train::TrainConfig;
use kwx::plot::{Panel, Series, line_charts};
use kwx::tokenizer::{
    ExtendMode, Extension, FragmentationReport, Tokenizer, extend, load_tokenizer, save_tokenizer,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// New ids after the vocabulary; the model's embedding grows.
    Add,
    /// Take over `<unusedN>` tokens; the vocabulary size stays.
    Unused,
}

#[derive(Parser, Debug)]
#[command(about = "Add domain terms to a tokenizer as single tokens (and rows to its model)")]
struct Args {
    /// The `tokenizer.json` to extend; default: Gemma 3 270M's from scripts/fetch_model.sh.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Terms, one per line (blank lines skipped); default: the bundled dictionary's terms.
    #[arg(long)]
    terms: Option<PathBuf>,
    /// `add` (new ids) or `unused` (repurpose `<unusedN>` tokens).
    #[arg(long, value_enum)]
    mode: Mode,
    /// Corpus for the fragmentation report, one text per line; default: 5,000 generated
    /// sentences (seed 1).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A model (Hugging Face folder or `.gguf`) to give rows for the new tokens; writes
    /// `OUT/model.gguf`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// `add`: round the model's vocabulary up to a multiple of this (extra rows get the
    /// vocabulary mean; the GGUF names them `[PAD{id}]`, as llama.cpp's converter does).
    #[arg(long)]
    pad_to_multiple_of: Option<usize>,
    /// Seed of the noise of vocabulary-mean rows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Type of the model's 2-D weights in `model.gguf` (norms stay F32).
    #[arg(long = "type", value_enum, default_value = "f32")]
    weight_type: WeightType,
}

/// How many already-single terms and new tokens to list.
const SHOW: usize = 10;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t0 = Instant::now();
    let tokenizer_path = match &args.tokenizer {
        Some(p) => p.clone(),
        None => home::gemma3_270m_tokenizer()
            .context("no --tokenizer given and Gemma 3 270M's is not in the kwx cache")?,
    };
    let before = load_tokenizer(&tokenizer_path)?;
    let terms = read_terms(args.terms.as_deref())?;
    eprintln!(
        "{}: {} tokens; {} terms",
        tokenizer_path.display(),
        before.get_vocab_size(true),
        terms.len()
    );

    let mode = match args.mode {
        Mode::Add => ExtendMode::AddTokens,
        Mode::Unused => ExtendMode::RepurposeUnused,
    };
    let ext = extend(&before, &terms, mode).context("extending the tokenizer")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let tokenizer_out = args.out.join("tokenizer.json");
    save_tokenizer(&ext.tokenizer, &tokenizer_out)?;
    describe(&ext);
    write_json_atomic(
        &args.out.join("new_tokens.json"),
        &serde_json::json!({
            "mode": mode,
            "old_vocab_size": ext.old_vocab_size,
            "new_vocab_size": ext.new_vocab_size,
            "added": ext.added,
            "already_single": ext.already_single,
        }),
    )?;

    let report = fragmentation(&before, &ext.tokenizer, &terms, args.corpus.as_deref())?;
    println!("\n{}", report.table(20));
    write_json_atomic(
        &args.out.join("fragmentation.json"),
        &serde_json::to_value(&report)?,
    )?;
    fragmentation_chart(&args.out.join("fragmentation.png"), &report)?;

    let new_ids: Vec<u32> = ext.rows_to_initialise().map(|t| t.id).collect();
    let model_out = match &args.model {
        Some(path) => Some(resize_and_export(&args, path, &ext)?),
        None => None,
    };
    let config_out = args.out.join("train_new_rows.toml");
    write_train_config(&config_out, &new_ids)?;

    println!("\nwrote {}", tokenizer_out.display());
    println!("wrote {}", args.out.join("fragmentation.json").display());
    println!("wrote {}", args.out.join("fragmentation.png").display());
    println!("wrote {}", args.out.join("new_tokens.json").display());
    println!("wrote {}", config_out.display());
    if let Some(m) = &model_out {
        println!("wrote {}", m.display());
    }
    println!("\nto train the {} new rows:", new_ids.len());
    let model_arg = match (&model_out, args.mode) {
        (Some(m), _) => format!("--model {} ", m.display()),
        (None, Mode::Unused) => {
            println!(
                "(the model's rows for them are still the <unused*> rows; pass --model to \
                 start them at the mean of their pieces)"
            );
            String::new()
        }
        (None, Mode::Add) => {
            println!("(run again with --model first: the model has no rows for the new ids)");
            format!("--model {} ", args.out.join("model.gguf").display())
        }
    };
    println!(
        "  cargo run --release --example finetune -- {model_arg}--tokenizer {} --config {} \
         --train data/train.sft.jsonl --out runs/new-rows",
        tokenizer_out.display(),
        config_out.display()
    );
    eprintln!("done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn read_terms(path: Option<&Path>) -> anyhow::Result<Vec<String>> {
    Ok(match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading terms from {}", p.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => Dictionary::bundled()
            .entries()
            .iter()
            .map(|e| e.term.clone())
            .collect(),
    })
}

fn describe(ext: &Extension) {
    let list = |items: Vec<String>| {
        let more = if items.len() > SHOW {
            format!(", … ({} more)", items.len() - SHOW)
        } else {
            String::new()
        };
        format!(
            "{}{more}",
            items.into_iter().take(SHOW).collect::<Vec<_>>().join(", ")
        )
    };
    println!(
        "{} terms already were single tokens{}",
        ext.already_single.len(),
        if ext.already_single.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                list(
                    ext.already_single
                        .iter()
                        .map(|(t, id)| format!("{t} ({id})"))
                        .collect()
                )
            )
        }
    );
    let fresh: Vec<_> = ext.rows_to_initialise().collect();
    let known = ext.added.len() - fresh.len();
    if known > 0 {
        println!(
            "{known} terms were vocabulary entries that encoding never produced whole; they now \
             encode to that entry (its row is trained already)"
        );
    }
    if fresh.is_empty() {
        println!("no new tokens");
        return;
    }
    println!(
        "{} new tokens, ids {}; vocabulary {} -> {}",
        fresh.len(),
        id_ranges(fresh.iter().map(|t| t.id).collect()),
        ext.old_vocab_size,
        ext.new_vocab_size
    );
    println!(
        "  {}",
        list(
            fresh
                .iter()
                .map(|t| match &t.replaced {
                    Some(old) => format!(
                        "{} = {} (was {old}, {} pieces)",
                        t.term,
                        t.id,
                        t.pieces.len()
                    ),
                    None => format!("{} = {} ({} pieces)", t.term, t.id, t.pieces.len()),
                })
                .collect()
        )
    );
}

/// `6..=104, 255999..=256706`: sorted ids as runs of consecutive ids.
fn id_ranges(mut ids: Vec<u32>) -> String {
    ids.sort_unstable();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some((_, hi)) if *hi + 1 == id => *hi = id,
            _ => runs.push((id, id)),
        }
    }
    runs.iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}..={hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fragmentation report on the corpus file (streamed, its lines counted first for the
/// progress bar) or on generated sentences.
fn fragmentation(
    before: &Tokenizer,
    after: &Tokenizer,
    terms: &[String],
    corpus: Option<&Path>,
) -> anyhow::Result<FragmentationReport> {
    let generated: Vec<String> = match corpus {
        Some(_) => Vec::new(),
        None => DatasetBuilder::new(Dictionary::bundled())
            .seed(1)
            .n(5_000)
            .build()?
            .into_iter()
            .map(|e| e.text)
            .collect(),
    };
    let total = match corpus {
        Some(p) => count_lines(p)?,
        None => generated.len() as u64,
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "measuring [{bar:40}] {pos}/{len} lines ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut logged_tenth = 0;
    let mut progress = |done: u64| {
        bar.set_position(done);
        let tenth = done * 10 / total.max(1);
        if bar.is_hidden() && tenth > logged_tenth {
            logged_tenth = tenth;
            eprintln!("measured {done} of {total} lines");
        }
    };
    let report = match corpus {
        Some(p) => {
            let file = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let mut failure = None;
            let lines = BufReader::new(file)
                .lines()
                .map_while(|r| r.map_err(|e| failure = Some(e)).ok());
            let report = FragmentationReport::measure(before, after, terms, lines, &mut progress)?;
            if let Some(e) = failure {
                return Err(e).with_context(|| format!("reading {}", p.display()));
            }
            report
        }
        None => FragmentationReport::measure(before, after, terms, &generated, &mut progress)?,
    };
    bar.finish_and_clear();
    Ok(report)
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// Loads the model, initialises the new rows, writes `OUT/model.gguf` with the extended
/// vocabulary and checks that the GGUF's own tokenizer gives every new term its id.
fn resize_and_export(args: &Args, path: &Path, ext: &Extension) -> anyhow::Result<PathBuf> {
    let t0 = Instant::now();
    let device = Device::default();
    let model =
        Gemma::load(path, &device).with_context(|| format!("loading {}", path.display()))?;
    let old_rows = model.config().vocab_size;
    eprintln!(
        "loaded {} ({old_rows} embedding rows) in {:.1}s",
        path.display(),
        t0.elapsed().as_secs_f64()
    );
    let rows = kwx::token_rows(ext);
    let options = ResizeOptions {
        pad_to_multiple_of: args.pad_to_multiple_of,
        seed: args.seed,
        ..ResizeOptions::default()
    };
    let t1 = Instant::now();
    let model = match args.mode {
        // A model with more rows than the old tokenizer has tokens keeps them.
        Mode::Add => {
            model.resize_token_embeddings(ext.new_vocab_size.max(old_rows), &rows, &options)?
        }
        Mode::Unused => {
            if args.pad_to_multiple_of.is_some() {
                eprintln!("--pad-to-multiple-of is ignored in unused mode (no rows are added)");
            }
            model.init_token_rows(&rows, &options)?
        }
    };
    let new_rows = model.config().vocab_size;
    eprintln!(
        "initialised {} rows ({} -> {new_rows} embedding rows) in {:.1}s",
        rows.len(),
        old_rows,
        t1.elapsed().as_secs_f64()
    );

    let vocab = gguf_vocab(&ext.tokenizer, new_rows)?;
    let weight_type = args.weight_type.ggml();

    let options = WriteOptions {
        name: "kwx extended vocabulary".into(),
        ..WriteOptions::new(weight_type)
    };
    let out = args.out.join("model.gguf");
    let t2 = Instant::now();
    write_gemma(&model, &vocab, &out, &options)
        .with_context(|| format!("writing {}", out.display()))?;
    let bytes = std::fs::metadata(&out)?.len();
    eprintln!(
        "wrote {} ({:.1} MB, {}) in {:.1}s",
        out.display(),
        bytes as f64 / 1e6,
        weight_type.name(),
        t2.elapsed().as_secs_f64()
    );

    // The GGUF carries its own vocabulary: rebuilt from it, every new term must be one token.
    let from_gguf = tokenizer_from_gguf(&GgufFile::open(&out)?)?;
    let wrong: Vec<String> = ext
        .added
        .iter()
        .filter_map(|t| match from_gguf.encode(t.term.as_str(), false) {
            Ok(e) if e.get_ids() == [t.id] => None,
            Ok(e) => Some(format!(
                "{} -> {:?} (expected [{}])",
                t.term,
                e.get_ids(),
                t.id
            )),
            Err(e) => Some(format!("{}: {e}", t.term)),
        })
        .collect();
    if wrong.is_empty() {
        eprintln!(
            "the GGUF's vocabulary encodes all {} terms to their new ids",
            ext.added.len()
        );
    } else {
        eprintln!(
            "warning: the GGUF's own vocabulary splits {} of {} terms (tokenizer.json does not): \
             {}",
            wrong.len(),
            ext.added.len(),
            wrong
                .iter()
                .take(SHOW)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(out)
}

/// The GGUF vocabulary for a model with `rows` embedding rows. Rows past the tokenizer's last id
/// (`--pad-to-multiple-of`) get llama.cpp's converter's placeholders `[PAD{id}]` from
/// `GgufVocab::from_hf_tokenizer`.
fn gguf_vocab(tokenizer: &Tokenizer, rows: usize) -> anyhow::Result<GgufVocab> {
    let vocab = GgufVocab::from_hf_tokenizer(tokenizer, rows)?;
    let padded = rows.saturating_sub(tokenizer.get_vocab_size(true));
    if padded > 0 {
        eprintln!("{padded} padding rows named [PAD{{id}}] in the GGUF vocabulary");
    }
    Ok(vocab)
}

/// How many terms take 1, 2, 3, … tokens, before and after, as a PNG.
fn fragmentation_chart(path: &Path, report: &FragmentationReport) -> anyhow::Result<()> {
    let longest = report
        .terms
        .iter()
        .map(|t| t.before.max(t.after))
        .max()
        .unwrap_or(1);
    let histogram = |tokens: fn(&kwx::tokenizer::TermRow) -> usize| {
        (1..=longest)
            .map(|n| {
                let count = report.terms.iter().filter(|t| tokens(t) == n).count();
                (n as f64, count as f64)
            })
            .collect::<Vec<_>>()
    };
    let panel = Panel {
        title: format!(
            "Tokens per term ({} terms; corpus {:+.1}% tokens)",
            report.terms.len(),
            100.0 * report.corpus_length_change
        ),
        x_label: "tokens per term".into(),
        y_label: "terms".into(),
        series: vec![
            Series {
                name: format!("before (mean {:.2})", report.mean_tokens_before),
                points: histogram(|t| t.before),
            },
            Series {
                name: format!("after (mean {:.2})", report.mean_tokens_after),
                points: histogram(|t| t.after),
            },
        ],
        y_range: None,
    };
    line_charts(path, &[panel]).with_context(|| format!("drawing {}", path.display()))
}

/// A `finetune --config` that trains only the new embedding rows: PEFT's
/// `TrainableTokensConfig` (`peft_type = "TRAINABLE_TOKENS"`), checked by parsing it back.
fn write_train_config(path: &Path, ids: &[u32]) -> anyhow::Result<()> {
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    let mut text = String::new();
    text.push_str(
        "# Trains only the embedding rows of the tokens extend_tokenizer added (PEFT's\n\
         # TrainableTokensConfig; the tie with the output head is kept, every other weight frozen).\n\
         # For new rows plus a LoRA, use peft_type = \"LORA\" with target_modules as usual.\n\
         # cargo run --release --example finetune -- --model MODEL.gguf \\\n\
         #     --tokenizer tokenizer.json --config train_new_rows.toml --train train.sft.jsonl\n\
         mode = \"lora\"\n\n[lora]\npeft_type = \"TRAINABLE_TOKENS\"\n\
         trainable_token_indices = [",
    );
    for (i, chunk) in ids.chunks(12).enumerate() {
        text.push_str(if i == 0 { "\n    " } else { ",\n    " });
        text.push_str(&chunk.join(", "));
    }
    text.push_str(if ids.is_empty() { "]\n" } else { ",\n]\n" });
    write_atomic(path, text.as_bytes())?;
    TrainConfig::from_toml_file(path)
        .with_context(|| format!("checking {} with TrainConfig", path.display()))?;
    Ok(())
}

fn write_json_atomic(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(value)?;
    json.push('\n');
    write_atomic(path, json.as_bytes())
}

/// Writes `bytes` to a temporary file in `path`'s folder, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}
