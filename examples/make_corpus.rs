//! Writes a Korean pharmaceutical text corpus of at least `--bytes` bytes, one sentence per line:
//! sentences from the seeded dataset builder, with a dictionary definition after every few of
//! them, and (`--open-vocabulary`, default a half of the lines) sentences of pseudo-Korean words
//! with a natural, Zipf-shaped frequency curve, so the corpus has a long tail of rare words as
//! real text does (the builder's templates alone hold ~27,000 distinct words, too few for a
//! 16,000-piece vocabulary). The corpus of the tokenizer benchmarks
//! (`scripts/bench_tokenizer_compare.sh`).
//!
//! Pseudo-words: a lexicon of 200,000 words of 1–4 Hangul syllables drawn from the syllable
//! frequencies of the dictionary's definitions, 40% of them ending in a particle
//! (을/를/이/가/은/는/에/의/로/와); sentence words are drawn by rank with probability ∝ 1/rank^1.1
//! (Zipf), 6–14 per sentence.
//!
//! ```text
//! cargo run --release --example make_corpus -- --bytes 20000000 --out /tmp/kwx-corpus-20mb.txt
//! ```
//! Sentences are built in chunks of `--chunk` examples, each chunk from its own seed derived from
//! `--seed`, so memory stays bounded whatever the size; the same `--seed` gives the same file.
//! The definitions cycle through the bundled dictionary in file order. The file is written
//! atomically (a temporary file in the same folder, then a rename).
#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kwx::data::builder::DatasetBuilder;
use kwx::data::dictionary::Dictionary;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(about = "Write a Korean pharmaceutical corpus, one sentence per line")]
struct Args {
    /// Minimum size of the corpus in bytes (the last line may go past it).
    #[arg(long)]
    bytes: u64,
    /// Output file (written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Seed; the same seed gives a byte-identical file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sentences generated per chunk (bounds memory).
    #[arg(long, default_value_t = 20_000)]
    chunk: usize,
    /// A dictionary definition follows every N generated sentences (0: no definitions).
    #[arg(long, default_value_t = 8)]
    definition_every: usize,
    /// Share of lines made of Zipf-distributed pseudo-Korean words (0: template sentences only).
    #[arg(long, default_value_t = 0.5)]
    open_vocabulary: f64,
}

/// Zipf-distributed pseudo-Korean sentences (see the file's doc).
struct OpenVocabulary {
    lexicon: Vec<String>,
    /// Cumulative Zipf weights over lexicon ranks.
    cumulative: Vec<f64>,
    rng: StdRng,
}

impl OpenVocabulary {
    fn new(text: &[String], seed: u64) -> anyhow::Result<Self> {
        let mut counts: std::collections::BTreeMap<char, f64> = std::collections::BTreeMap::new();
        for c in text.iter().flat_map(|t| t.chars()) {
            if ('가'..='힣').contains(&c) {
                *counts.entry(c).or_default() += 1.0;
            }
        }
        anyhow::ensure!(
            !counts.is_empty(),
            "the dictionary has no Hangul to learn syllables from"
        );
        let syllables: Vec<char> = counts.keys().copied().collect();
        let weights = WeightedIndex::new(counts.values().copied())?;
        let lengths = WeightedIndex::new([0.15, 0.4, 0.3, 0.15])?;
        const PARTICLES: [&str; 10] = ["을", "를", "이", "가", "은", "는", "에", "의", "로", "와"];
        let mut rng = StdRng::seed_from_u64(seed ^ 0x005E_ED0F_7A1F);
        let lexicon = (0..200_000)
            .map(|_| {
                let n = lengths.sample(&mut rng) + 1;
                let mut w: String = (0..n)
                    .map(|_| syllables[weights.sample(&mut rng)])
                    .collect();
                if rng.random_bool(0.4) {
                    w.push_str(PARTICLES[rng.random_range(0..PARTICLES.len())]);
                }
                w
            })
            .collect::<Vec<_>>();
        let mut total = 0.0;
        let cumulative = (1..=lexicon.len())
            .map(|r| {
                total += 1.0 / (r as f64).powf(1.1);
                total
            })
            .collect();
        Ok(Self {
            lexicon,
            cumulative,
            rng,
        })
    }

    fn sentence(&mut self) -> String {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let n = self.rng.random_range(6..=14);
        let mut words = Vec::with_capacity(n);
        for _ in 0..n {
            let u = self.rng.random::<f64>() * total;
            let rank = self.cumulative.partition_point(|&c| c < u);
            words.push(self.lexicon[rank.min(self.lexicon.len() - 1)].as_str());
        }
        let mut s = words.join(" ");
        s.push('.');
        s
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.chunk > 0, "--chunk must be at least 1");
    anyhow::ensure!(
        (0.0..1.0).contains(&args.open_vocabulary),
        "--open-vocabulary must be in [0, 1)"
    );
    let dictionary = Dictionary::bundled();
    let definitions: Vec<String> = dictionary
        .entries()
        .iter()
        .map(|e| one_line(&e.definition))
        .filter(|d| !d.is_empty())
        .collect();

    let t0 = Instant::now();
    let mut out = AtomicFile::create(&args.out)?;
    let bar = ProgressBar::new(args.bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("corpus");

    let mut open = OpenVocabulary::new(&definitions, args.seed)?;
    let mut mix = StdRng::seed_from_u64(args.seed);
    let (mut written, mut sentences, mut defs, mut pseudo) = (0u64, 0u64, 0u64, 0u64);
    let mut next_definition = 0usize;
    let mut chunk = 0u64;
    'chunks: while written < args.bytes {
        let examples = DatasetBuilder::new(dictionary)
            .seed(chunk_seed(args.seed, chunk))
            .n(args.chunk)
            .build()
            .with_context(|| format!("generating chunk {chunk}"))?;
        for (i, example) in examples.iter().enumerate() {
            while mix.random_bool(args.open_vocabulary) {
                written += out.line(&open.sentence())?;
                pseudo += 1;
            }
            written += out.line(&one_line(&example.text))?;
            sentences += 1;
            if args.definition_every > 0
                && (i + 1) % args.definition_every == 0
                && !definitions.is_empty()
            {
                written += out.line(&definitions[next_definition % definitions.len()])?;
                next_definition += 1;
                defs += 1;
            }
            if written >= args.bytes {
                break 'chunks;
            }
            if i % 1024 == 0 {
                bar.set_position(written);
            }
        }
        chunk += 1;
        bar.set_position(written);
        if bar.is_hidden() {
            eprintln!(
                "chunk {chunk}: {written} of {} bytes ({:.0}%)",
                args.bytes,
                100.0 * written as f64 / args.bytes.max(1) as f64
            );
        }
    }
    out.commit()?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "wrote {} ({written} bytes, {} lines: {sentences} sentences, {defs} definitions, \
         {pseudo} pseudo-word sentences) in {secs:.1}s ({:.1} MB/s)",
        args.out.display(),
        sentences + defs + pseudo,
        written as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}

/// The builder seed of chunk `i`: distinct streams for every (seed, chunk) pair in practice.
fn chunk_seed(seed: u64, i: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The text on one line: line breaks become spaces, the ends are trimmed.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ").trim().to_owned()
}

/// A file written under a temporary name in the target's folder and renamed over the target on
/// [`AtomicFile::commit`]; dropped uncommitted (an error, a panic), the temporary file is removed.
struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    writer: BufWriter<File>,
    committed: bool,
}

impl AtomicFile {
    fn create(target: &Path) -> anyhow::Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file name", target.display()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(
            ".{}.{}.{nanos}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self {
            tmp,
            target: target.to_owned(),
            writer: BufWriter::with_capacity(1 << 20, file),
            committed: false,
        })
    }

    /// Writes `text` and a newline; returns the bytes written.
    fn line(&mut self, text: &str) -> anyhow::Result<u64> {
        self.writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"))
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        Ok(text.len() as u64 + 1)
    }

    fn commit(mut self) -> anyhow::Result<()> {
        self.writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_all())
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.target).with_context(|| {
            format!(
                "renaming {} to {}",
                self.tmp.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
