//! Builds a kwx-rag retrieval index from the dictionary and (optionally) leaflet documents.
//!
//! ```text
//! cargo run --release --example build_index -- --out target/kwx-index \
//!     --docs crates/kwx-rag/data/leaflets [--embed-model ~/.cache/kwx/gemma-3-270m/gemma-3-270m-q4_k_m.gguf --embed-layers 6]
//! ```
//! `--dictionary` takes a .jsonl/.toml/.tsv dictionary (default: the bundled one); `--docs` a
//! folder of leaflet `.txt` files or a `.jsonl` of documents (repeatable). With `--embed-model`
//! every chunk is embedded with a Gemma model (pooled hidden states) for dense and hybrid
//! search. The index is written atomically: an interrupted build leaves the old one intact.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kwx::data::dictionary::Dictionary;
use kwx::rag::document::documents_from_jsonl;
use kwx::rag::{
    Analyzer, BuildProgress, Chunk, ChunkOptions, Document, GemmaEmbedder, IndexBuilder,
};

#[derive(Parser, Debug)]
#[command(about = "Build a kwx-rag retrieval index")]
struct Args {
    /// The index folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing index at --out.
    #[arg(long)]
    overwrite: bool,
    /// A dictionary file (.jsonl, .toml, .tsv); default: the bundled Korean pharmaceutical one.
    #[arg(long)]
    dictionary: Option<PathBuf>,
    /// Leaflet documents: a folder of .txt leaflets or a .jsonl file; repeatable.
    #[arg(long)]
    docs: Vec<PathBuf>,
    /// Longest document chunk, in characters.
    #[arg(long, default_value_t = 400)]
    max_chars: usize,
    /// Overlap between consecutive pieces of a long field, in characters.
    #[arg(long, default_value_t = 80)]
    overlap_chars: usize,
    /// Use tantivy's default analyzer instead of the Korean one (a baseline).
    #[arg(long)]
    plain_analyzer: bool,
    /// A Gemma model (HF folder or .gguf) to embed chunks with, for dense and hybrid search.
    #[arg(long)]
    embed_model: Option<PathBuf>,
    /// Decoder layers the embedder runs (default: all).
    #[arg(long)]
    embed_layers: Option<usize>,
    /// Texts per embedding batch.
    #[arg(long, default_value_t = 16)]
    embed_batch: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t0 = Instant::now();
    let (dictionary, source) = match &args.dictionary {
        Some(path) => (Dictionary::from_path(path)?, path.display().to_string()),
        None => (
            Dictionary::bundled().clone(),
            "bundled:pharma_ko".to_owned(),
        ),
    };
    let mut chunks = Chunk::from_dictionary(&dictionary, &source);
    let n_entries = chunks.len();
    let options = ChunkOptions::new()
        .max_chars(args.max_chars)
        .overlap_chars(args.overlap_chars);
    let mut n_docs = 0;
    for path in &args.docs {
        for doc in read_documents(path)? {
            chunks.extend(doc.chunks(&options)?);
            n_docs += 1;
        }
    }
    println!(
        "{} chunks: {n_entries} dictionary entries, {} pieces of {n_docs} documents",
        chunks.len(),
        chunks.len() - n_entries
    );

    let mut builder = IndexBuilder::new(&args.out)
        .overwrite(args.overwrite)
        .analyzer(if args.plain_analyzer {
            Analyzer::TantivyDefault
        } else {
            Analyzer::Korean
        })
        .embed_batch(args.embed_batch);
    if let Some(model) = &args.embed_model {
        let pb = ProgressBar::new_spinner().with_message(format!("loading {}", model.display()));
        pb.enable_steady_tick(Duration::from_millis(200));
        let mut embedder = GemmaEmbedder::from_path(model)?;
        if let Some(layers) = args.embed_layers {
            embedder = embedder.layers(layers);
        }
        pb.finish_and_clear();
        builder = builder.embedder(Arc::new(embedder));
    }

    let pb = ProgressBar::new(chunks.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    let index = builder.build_with_progress(&chunks, |p| match p {
        BuildProgress::Indexing { done, .. } => {
            pb.set_message("index");
            pb.set_position(done as u64);
        }
        BuildProgress::Embedding { done, .. } => {
            if pb.message() != "embed" {
                pb.set_message("embed");
                pb.reset_eta();
            }
            pb.set_position(done as u64);
        }
        BuildProgress::Finishing => pb.set_message("commit"),
        _ => {}
    })?;
    pb.finish_and_clear();
    println!(
        "wrote {} ({} chunks, analyzer {:?}, vectors: {}) in {:.1} s",
        index.dir().display(),
        index.len(),
        index.analyzer(),
        index.embedder_id().unwrap_or("none"),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn read_documents(path: &Path) -> anyhow::Result<Vec<Document>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| Document::from_path(f).map_err(Into::into))
            .collect()
    } else if path.extension().is_some_and(|x| x == "jsonl") {
        Ok(documents_from_jsonl(path)?)
    } else {
        Ok(vec![Document::from_path(path)?])
    }
}
