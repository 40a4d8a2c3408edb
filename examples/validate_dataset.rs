//! Validates a `{"text","labels"}` JSONL file as a stream and writes the rows it keeps:
//! labels missing from their text, duplicates, empty texts and labels, length outliers; invalid
//! lines are reported with their line numbers. Memory stays flat whatever the file size.
//!
//! ```text
//! cargo run --release --example validate_dataset -- --input train.sft.jsonl --output clean.jsonl [--drop-all]
//! ```
//! Prints the report (table), its JSON with `--json`, and the throughput and peak memory.
#![allow(clippy::print_stdout)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use kwx::data::jsonl::{
    AtomicJsonlWriter, JsonlReader, SftRecord, ValidationConfig, validate_sft_stream,
};

#[derive(Parser, Debug)]
#[command(about = "Validate an SFT JSONL file and write the rows kept")]
struct Args {
    /// Input `{"text","labels"}` JSONL.
    #[arg(long)]
    input: PathBuf,
    /// Where the kept rows go (written atomically).
    #[arg(long)]
    output: PathBuf,
    /// Drop every kind of offending row (default: drop empty texts/labels and exact duplicates,
    /// keep and report the rest).
    #[arg(long)]
    drop_all: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = if args.drop_all {
        ValidationConfig::drop_all()
    } else {
        ValidationConfig::default()
    };
    let t0 = Instant::now();
    let mut reader = JsonlReader::<_, SftRecord>::open(&args.input)?.skip_invalid(true);
    let mut out = AtomicJsonlWriter::create(&args.output)?;
    let report = validate_sft_stream(&mut reader, &config, out.writer())?;
    out.commit()?;
    let secs = t0.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    for e in reader.errors() {
        eprintln!("invalid: {e}");
    }
    let mib = reader.bytes_read() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{mib:.0} MiB in {secs:.2}s ({:.0} MiB/s), peak RSS {:.0} MiB",
        mib / secs.max(1e-9),
        common::peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
