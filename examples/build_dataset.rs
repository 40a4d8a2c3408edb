//! Builds a keyword-extraction dataset from the dictionary: train/validation/test JSONL in both
//! formats the field uses, with a held-out-term split, and a summary.
//!
//! ```text
//! cargo run --release --example build_dataset -- --out data/ --train 20000 --val 2000 --test 2000
//! ```
//! Writes `{train,val,test}.sft.jsonl` (`{"text","labels"}`), `{train,val,test}.instruction.jsonl`
//! (`{"instruction","input","output"}`), `held_out.txt` and `summary.json`; prints the summary.
//! Every file is written atomically. The same `--seed` gives byte-identical files.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kwx::data::builder::{DEFAULT_INSTRUCTION, DatasetBuilder, Example};
use kwx::data::dictionary::Dictionary;
use kwx::data::jsonl::AtomicJsonlWriter;
use kwx::data::split::HeldOutSplit;

#[derive(Parser, Debug)]
#[command(about = "Build a keyword-extraction dataset from the dictionary")]
struct Args {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A dictionary file (.jsonl, .toml, .tsv); default: the bundled Korean pharmaceutical one.
    #[arg(long)]
    dictionary: Option<PathBuf>,
    /// Training examples.
    #[arg(long, default_value_t = 20_000)]
    train: usize,
    /// Validation examples.
    #[arg(long, default_value_t = 2_000)]
    val: usize,
    /// Test examples.
    #[arg(long, default_value_t = 2_000)]
    test: usize,
    /// Fraction of each category's terms held out of training.
    #[arg(long, default_value_t = 0.1)]
    held_out_fraction: f32,
    /// Share of validation/test keyword examples built around a held-out term.
    #[arg(long, default_value_t = 0.5)]
    held_out_rate: f32,
    /// Seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Instruction for the instruction-tuning files.
    #[arg(long, default_value = DEFAULT_INSTRUCTION)]
    instruction: String,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let owned;
    let dictionary = match &args.dictionary {
        Some(path) => {
            owned = Dictionary::from_path(path)?;
            &owned
        }
        None => Dictionary::bundled(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let t0 = Instant::now();
    let total = args.train + args.val + args.test;
    let pb = bar(total as u64, "generate");
    pb.enable_steady_tick(Duration::from_millis(200));
    let held_out = HeldOutSplit::new(dictionary, args.held_out_fraction, args.seed)?;
    let builder = DatasetBuilder::new(dictionary).seed(args.seed);
    let splits = held_out.build_with_progress(
        &builder,
        (args.train, args.val, args.test),
        args.held_out_rate,
        |done| {
            if done % 1024 == 0 || done == total {
                pb.set_position(done as u64);
            }
        },
    )?;
    pb.finish_and_clear();
    let generated = t0.elapsed();

    let mut summary = serde_json::Map::new();
    for (name, examples) in [
        ("train", &splits.train),
        ("val", &splits.val),
        ("test", &splits.test),
    ] {
        let pb = bar(examples.len() as u64, name);
        let mut sft = AtomicJsonlWriter::create(args.out.join(format!("{name}.sft.jsonl")))?;
        let mut inst =
            AtomicJsonlWriter::create(args.out.join(format!("{name}.instruction.jsonl")))?;
        for e in examples {
            sft.push(&e.to_sft())?;
            inst.push(&e.to_instruction(&args.instruction))?;
            pb.inc(1);
        }
        sft.commit()?;
        inst.commit()?;
        pb.finish_and_clear();
        summary.insert(name.into(), split_summary(examples));
    }
    let held: Vec<&String> = held_out.terms().iter().collect();
    std::fs::write(
        args.out.join("held_out.txt"),
        held.iter().map(|t| format!("{t}\n")).collect::<String>(),
    )?;
    summary.insert("held_out_terms".into(), serde_json::json!(held.len()));
    summary.insert(
        "shadowed_terms".into(),
        serde_json::json!(held_out.shadowed().len()),
    );
    summary.insert("seed".into(), serde_json::json!(args.seed));
    let summary = serde_json::Value::Object(summary);
    kwx::data::jsonl::write_jsonl_atomic(args.out.join("summary.json"), [&summary])?;

    let n = splits.train.len() + splits.val.len() + splits.test.len();
    println!(
        "{n} examples in {:.2}s ({:.0}/s), written to {}",
        generated.as_secs_f64(),
        n as f64 / generated.as_secs_f64().max(1e-9),
        args.out.display()
    );
    println!("{held_out}");
    println!("| split | examples | no keyword | held-out | labels | templates |");
    println!("|---|---|---|---|---|---|");
    for name in ["train", "val", "test"] {
        let s = &summary[name];
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            s["examples"], s["no_keyword"], s["held_out"], s["labels"], s["templates"]
        );
    }
    println!("\nlabels per category:");
    println!("| category | train | val | test |");
    println!("|---|---|---|---|");
    for c in kwx::data::Category::ALL {
        println!(
            "| {} | {} | {} | {} |",
            c.name(),
            summary["train"]["per_category"][c.name()],
            summary["val"]["per_category"][c.name()],
            summary["test"]["per_category"][c.name()]
        );
    }
    Ok(())
}

fn split_summary(examples: &[Example]) -> serde_json::Value {
    let mut per_category: BTreeMap<&str, usize> = kwx::data::Category::ALL
        .iter()
        .map(|c| (c.name(), 0))
        .collect();
    let mut per_template: BTreeMap<&str, usize> = BTreeMap::new();
    let mut labels = 0;
    for e in examples {
        for c in &e.categories {
            *per_category.entry(c.name()).or_default() += 1;
        }
        *per_template.entry(e.template_id.as_str()).or_default() += 1;
        labels += e.labels.len();
    }
    serde_json::json!({
        "examples": examples.len(),
        "no_keyword": examples.iter().filter(|e| e.labels.is_empty()).count(),
        "held_out": examples.iter().filter(|e| e.held_out).count(),
        "labels": labels,
        "templates": per_template.len(),
        "per_category": per_category,
        "per_template": per_template,
    })
}
