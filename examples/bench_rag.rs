//! kwx-rag speed: index build time, size and memory, and query latency, throughput and recall
//! on generated chunks, for the Korean analyzer against tantivy's default analyzer and a
//! brute-force substring scan; and dense search, exact against HNSW, on random vectors.
//!
//! ```text
//! cargo run --release --example bench_rag -- --chunks 10000,1000000 --queries 1000 \
//!     --json target/bench_rag.json
//! ```
//!
//! The workload (`examples/common/rag_gen.rs`, shared with `benches/rag.rs`): chunks whose terms
//! are new compounds of two or three bundled dictionary terms (`해열파스`), bodies built from the
//! parts' definitions, and queries that name 1–3 chunk terms with particles attached
//! (`해열파스를 하루에 몇 번 사용하나요?`). The named chunks are each query's gold; recall@k is
//! the share of them in the top k, averaged over queries.
//!
//! Methods, each timed one query at a time from one thread:
//! - `korean`: `RagIndex::search` (lexical, the default) on an index built with
//!   `Analyzer::Korean`: BM25 over word stems and character bigrams, hits loaded from the store.
//! - `default`: the same on an index built with `Analyzer::TantivyDefault`.
//! - `scan`: no index. Each query's word-analyzer tokens (`kwx_rag::analyzer::word_tokens`:
//!   words, stems without particles, compound heads) are looked up with `str::contains` in every
//!   chunk's lowercased `term aliases body`; a chunk scores the number of tokens it contains, ties
//!   go to the lower id. Single-threaded; it runs until `--scan-budget-s` is spent, so at large
//!   sizes it covers only the first queries (the count is reported).
//! - `dense-exact` / `dense-hnsw` (sizes up to `--dense-max`): `RagIndex::search` in dense mode on
//!   vectors from a seeded random embedder (one random unit vector per text hash, 640 dims by
//!   default). This measures the vector machinery, not an embedding model. Exact search scans
//!   all rows on rayon's global pool; HNSW is `hnsw_rs` (`kwx_rag::ann`). Recall@10 is HNSW's
//!   overlap with the exact top 10 for the same query vector. Random vectors are the hard case
//!   for HNSW; real embeddings cluster and do better.
//! - `--dense-large N` (off by default): HNSW build time, latency and recall@10 for `N` random
//!   vectors through `AnnIndex` and `exact_top_k` directly, no index folder. Slow: 100,000
//!   vectors of 640 dims took 34 minutes to build on 2 cores.
//!
//! Memory: `build peak` is the process's peak RSS during the build, `query peak` during reopening
//! and querying (the peak is reset before each phase through `/proc/self/clear_refs`); both
//! include the generated chunks the process holds (`base` RSS, reported per size).
#![allow(clippy::print_stdout)]

mod common;
#[path = "common/rag_gen.rs"]
mod rag_gen;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kwx::data::dictionary::Dictionary;
use kwx::rag::ann::AnnIndex;
use kwx::rag::index::exact_top_k;
use kwx::rag::{Analyzer, BuildProgress, Chunk, IndexBuilder, Mode, RagIndex, SearchRequest};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Time kwx-rag index builds and queries on generated chunks")]
struct Args {
    /// Corpus sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    chunks: Vec<usize>,
    /// Queries per method and size.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Hits per lexical query (recall@k).
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Indexing threads (default: the machine's cores, at most 8).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the indexes are built (default: a fresh folder under the system temp dir, removed
    /// at the end).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seconds the brute-force scan may spend per size (at least one query runs).
    #[arg(long, default_value_t = 120.0)]
    scan_budget_s: f64,
    /// Dense search runs for sizes up to this.
    #[arg(long, default_value_t = 10_000)]
    dense_max: usize,
    /// Vector dimension of the random embedder.
    #[arg(long, default_value_t = 640)]
    dim: usize,
    /// Random vectors for the standalone HNSW run (0: skip; 100,000 builds for half an hour).
    #[arg(long, default_value_t = 0)]
    dense_large: usize,
    /// Seed of chunks, queries and vectors.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Latency summary of one method on one size.
struct Timing {
    queries: usize,
    qps: f64,
    p50_ms: f64,
    p99_ms: f64,
    recall: f64,
}

impl Timing {
    fn new(latencies: &mut [Duration], recall_sum: f64) -> Self {
        latencies.sort();
        let n = latencies.len().max(1);
        let total: f64 = latencies.iter().map(Duration::as_secs_f64).sum();
        let pct = |p: f64| {
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            latencies
                .get(rank - 1)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Self {
            queries: latencies.len(),
            qps: latencies.len() as f64 / total.max(f64::MIN_POSITIVE),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            recall: recall_sum / n as f64,
        }
    }

    fn json(&self) -> Value {
        json!({
            "queries": self.queries,
            "qps": round(self.qps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "recall": round(self.recall, 4),
        })
    }
}

/// One row of the results table.
struct Row {
    chunks: usize,
    method: &'static str,
    build_s: Option<f64>,
    disk_mib: Option<f64>,
    build_peak_mib: Option<f64>,
    query_peak_mib: Option<f64>,
    timing: Timing,
    recall_of: &'static str,
}

fn table_row(r: &Row, k: usize) -> String {
    let opt = |v: Option<f64>, d: usize| v.map_or_else(|| "–".to_owned(), |x| format!("{x:.d$}"));
    let recall = if r.recall_of == "gold" {
        format!("{:.3} @{k}", r.timing.recall)
    } else {
        format!("{:.3} @10 vs exact", r.timing.recall)
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
        r.chunks,
        r.method,
        opt(r.build_s, 1),
        opt(r.disk_mib, 1),
        opt(r.build_peak_mib, 0),
        opt(r.query_peak_mib, 0),
        r.timing.queries,
        r.timing.qps,
        r.timing.p50_ms,
        r.timing.p99_ms,
        recall,
    )
}

/// Keeps `row` for the final table and shows it now (a long run's finished rows survive an
/// interruption).
fn push_row(rows: &mut Vec<Row>, k: usize, row: Row) {
    eprintln!("{}", table_row(&row, k));
    rows.push(row);
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn bar(len: usize, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64).with_message(msg.to_owned());
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// Resets the kernel's peak-RSS counter (`VmHWM`) of this process; false where unsupported.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Current resident set size in MiB (`VmRSS`).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Builds an index, reporting progress on a bar; returns seconds taken.
fn build(builder: IndexBuilder, chunks: &[Chunk], msg: &str) -> anyhow::Result<f64> {
    let pb = bar(chunks.len(), msg);
    let started = Instant::now();
    let index = builder.build_with_progress(chunks, |p| match p {
        BuildProgress::Indexing { done, .. } | BuildProgress::Embedding { done, .. } => {
            pb.set_position(done as u64);
        }
        BuildProgress::Finishing => pb.set_message(format!("{msg} (finishing)")),
        _ => {}
    })?;
    let secs = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    drop(index);
    Ok(secs)
}

/// Runs `queries` through `search` one at a time; `search` returns the found ids.
fn time_queries<Q>(
    queries: &[Q],
    msg: &str,
    budget: Option<Duration>,
    mut search: impl FnMut(&Q) -> anyhow::Result<(Vec<u64>, f64)>,
) -> anyhow::Result<Timing> {
    let pb = bar(queries.len(), msg);
    let mut latencies = Vec::with_capacity(queries.len());
    let mut recall_sum = 0.0;
    let started = Instant::now();
    for q in queries {
        let t = Instant::now();
        let (found, recall) = search(q)?;
        latencies.push(t.elapsed());
        std::hint::black_box(found);
        recall_sum += recall;
        pb.inc(1);
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
    }
    pb.finish_and_clear();
    Ok(Timing::new(&mut latencies, recall_sum))
}

/// The naive baseline: token-in-text counts over every chunk, top `k`, lower id on ties.
fn scan_top_k(haystacks: &[String], query: &str, k: usize) -> Vec<u64> {
    let mut words: Vec<String> = Vec::new();
    kwx::rag::analyzer::word_tokens(query, |t, _, _| words.push(t));
    words.sort();
    words.dedup();
    let mut best: Vec<(usize, u64)> = Vec::with_capacity(k + 1);
    for (id, text) in haystacks.iter().enumerate() {
        let score = words.iter().filter(|w| text.contains(w.as_str())).count();
        if score == 0 || (best.len() == k && score <= best[k - 1].0) {
            continue;
        }
        let at = best.partition_point(|&(s, _)| s >= score);
        best.insert(at, (score, id as u64));
        best.truncate(k);
    }
    best.into_iter().map(|(_, id)| id).collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.k > 0, "--k must be at least 1");
    anyhow::ensure!(args.queries > 0, "--queries must be at least 1");
    anyhow::ensure!(!args.chunks.is_empty(), "--chunks lists no size");
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
    let (out, temporary) = match &args.out {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("kwx-bench-rag-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let peak_resets = reset_peak_rss();
    if !peak_resets {
        eprintln!("bench_rag: cannot reset peak RSS here; peaks are cumulative");
    }
    let dict = Dictionary::bundled();
    let mut rows: Vec<Row> = Vec::new();
    let mut sizes_json: Vec<Value> = Vec::new();

    for &n in &args.chunks {
        anyhow::ensure!(n > 0, "--chunks: a size of 0");
        let started = Instant::now();
        let chunks = rag_gen::chunks(dict, n, args.seed);
        let queries = rag_gen::queries(&chunks, args.queries, args.seed ^ 0x5eed);
        let gen_s = started.elapsed().as_secs_f64();
        let base_mib = rss_mib();
        eprintln!(
            "{n} chunks generated in {gen_s:.1} s (RSS {:.0} MiB); e.g. {:?} / query {:?}",
            base_mib.unwrap_or(0.0),
            chunks[0].embedding_text(),
            queries[0].text
        );
        let mut size_json = json!({ "chunks": n, "generate_s": round(gen_s, 2),
            "base_rss_mib": base_mib.map(|m| round(m, 1)) });

        for (analyzer, method) in [
            (Analyzer::Korean, "korean"),
            (Analyzer::TantivyDefault, "default"),
        ] {
            let dir = out.join(format!("{method}-{n}"));
            reset_peak_rss();
            let builder = IndexBuilder::new(&dir)
                .overwrite(true)
                .analyzer(analyzer)
                .threads(threads);
            let build_s = build(builder, &chunks, &format!("build {method} {n}"))?;
            let build_peak = common::peak_rss_mib();
            let disk = dir_bytes(&dir)?;
            reset_peak_rss();
            let opened = Instant::now();
            let index = RagIndex::open(&dir)?;
            let open_s = opened.elapsed().as_secs_f64();
            let timing = time_queries(&queries, &format!("query {method} {n}"), None, |q| {
                let hits = index.search(&SearchRequest::new(q.text.as_str(), args.k))?;
                let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                let r = rag_gen::recall(&q.gold, &ids);
                Ok((ids, r))
            })?;
            let query_peak = common::peak_rss_mib();
            drop(index);
            size_json[method] = json!({
                "build_s": round(build_s, 2),
                "open_s": round(open_s, 3),
                "disk_bytes": disk,
                "build_peak_rss_mib": build_peak.map(|m| round(m, 1)),
                "query_peak_rss_mib": query_peak.map(|m| round(m, 1)),
                "threads": threads,
                "k": args.k,
                "lexical": timing.json(),
            });
            push_row(
                &mut rows,
                args.k,
                Row {
                    chunks: n,
                    method,
                    build_s: Some(build_s),
                    disk_mib: Some(mib(disk)),
                    build_peak_mib: build_peak,
                    query_peak_mib: query_peak,
                    timing,
                    recall_of: "gold",
                },
            );
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }

        // Brute force: lowercase the haystacks once (untimed preparation, like a build).
        let haystacks: Vec<String> = chunks
            .iter()
            .map(|c| {
                let mut s = c.term.clone().unwrap_or_default();
                for a in &c.aliases {
                    s.push(' ');
                    s.push_str(a);
                }
                s.push(' ');
                s.push_str(&c.text);
                s.to_lowercase()
            })
            .collect();
        reset_peak_rss();
        let budget = Duration::from_secs_f64(args.scan_budget_s.max(0.0));
        let timing = time_queries(&queries, &format!("scan {n}"), Some(budget), |q| {
            let ids = scan_top_k(&haystacks, &q.text, args.k);
            let r = rag_gen::recall(&q.gold, &ids);
            Ok((ids, r))
        })?;
        let scan_peak = common::peak_rss_mib();
        drop(haystacks);
        size_json["scan"] = json!({ "threads": 1, "k": args.k, "query_peak_rss_mib": scan_peak,
            "lexical": timing.json() });
        push_row(
            &mut rows,
            args.k,
            Row {
                chunks: n,
                method: "scan",
                build_s: None,
                disk_mib: None,
                build_peak_mib: None,
                query_peak_mib: scan_peak,
                timing,
                recall_of: "gold",
            },
        );

        if n <= args.dense_max {
            dense(
                &args,
                &out,
                &chunks,
                &queries,
                threads,
                &mut rows,
                &mut size_json,
            )?;
        }
        sizes_json.push(size_json);
    }

    let large = if args.dense_large > 0 {
        Some(dense_large(&args)?)
    } else {
        None
    };

    if temporary {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }

    println!(
        "| chunks | method | build s | index MiB | build peak RSS MiB | query peak RSS MiB | \
         queries | QPS | p50 ms | p99 ms | recall |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!("{}", table_row(r, args.k));
    }
    if let Some(l) = &large {
        println!();
        println!(
            "HNSW alone on {} random {}-dim vectors: build {:.1} s ({} threads); search \
             {:.0} QPS, p50 {:.2} ms, p99 {:.2} ms, recall@10 vs exact {:.3}; exact scan {:.0} QPS, \
             p50 {:.2} ms, p99 {:.2} ms",
            args.dense_large,
            args.dim,
            l["build_s"].as_f64().unwrap_or(0.0),
            l["threads"],
            l["hnsw"]["qps"].as_f64().unwrap_or(0.0),
            l["hnsw"]["p50_ms"].as_f64().unwrap_or(0.0),
            l["hnsw"]["p99_ms"].as_f64().unwrap_or(0.0),
            l["hnsw"]["recall"].as_f64().unwrap_or(0.0),
            l["exact"]["qps"].as_f64().unwrap_or(0.0),
            l["exact"]["p50_ms"].as_f64().unwrap_or(0.0),
            l["exact"]["p99_ms"].as_f64().unwrap_or(0.0),
        );
    }
    println!();
    println!(
        "dense rows use a random embedder (seeded unit vectors per text hash, {} dims): they time \
         the vector search machinery, not an embedding model. Peak RSS {}.",
        args.dim,
        if peak_resets {
            "is reset before each phase"
        } else {
            "is cumulative (could not reset)"
        }
    );

    if let Some(path) = &args.json {
        let report = json!({
            "bench": "kwx-rag",
            "seed": args.seed,
            "queries": args.queries,
            "k": args.k,
            "threads": threads,
            "rayon_threads": kwx::core::tokenizers::utils::parallelism::current_num_threads(),
            "dim": args.dim,
            "sizes": sizes_json,
            "dense_large": large,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Dense search through `RagIndex` on random vectors: exact against HNSW.
fn dense(
    args: &Args,
    out: &Path,
    chunks: &[Chunk],
    queries: &[rag_gen::Query],
    threads: usize,
    rows: &mut Vec<Row>,
    size_json: &mut Value,
) -> anyhow::Result<()> {
    let n = chunks.len();
    let embedder = Arc::new(rag_gen::RandomEmbedder {
        dim: args.dim,
        seed: args.seed,
    });
    let mut exact_ids: Vec<Vec<u64>> = Vec::new();
    for (method, ann_threshold) in [("dense-exact", usize::MAX), ("dense-hnsw", 0)] {
        let dir = out.join(format!("{method}-{n}"));
        reset_peak_rss();
        let builder = IndexBuilder::new(&dir)
            .overwrite(true)
            .threads(threads)
            .embedder(embedder.clone())
            .embed_batch(256)
            .ann_threshold(ann_threshold);
        let build_s = build(builder, chunks, &format!("build {method} {n}"))?;
        let build_peak = common::peak_rss_mib();
        let disk = dir_bytes(&dir)?;
        reset_peak_rss();
        let index = RagIndex::open(&dir)?.with_embedder(embedder.clone())?;
        anyhow::ensure!(
            index.uses_ann() == (ann_threshold == 0),
            "{method}: wrong search path"
        );
        let mut i = 0;
        let timing = time_queries(queries, &format!("query {method} {n}"), None, |q| {
            let request = SearchRequest::new(q.text.as_str(), 10).mode(Mode::Dense);
            let ids: Vec<u64> = index.search(&request)?.iter().map(|h| h.id).collect();
            let r = if ann_threshold == 0 {
                rag_gen::recall(&exact_ids[i], &ids)
            } else {
                exact_ids.push(ids.clone());
                1.0
            };
            i += 1;
            Ok((ids, r))
        })?;
        let query_peak = common::peak_rss_mib();
        drop(index);
        size_json[method] = json!({
            "build_s": round(build_s, 2),
            "disk_bytes": disk,
            "build_peak_rss_mib": build_peak.map(|m| round(m, 1)),
            "query_peak_rss_mib": query_peak.map(|m| round(m, 1)),
            "dim": args.dim,
            "k": 10,
            "dense": timing.json(),
            "note": "random embedder: times the vector machinery, not an embedding model; \
                     build_s includes the lexical index",
        });
        push_row(
            rows,
            args.k,
            Row {
                chunks: n,
                method,
                build_s: Some(build_s),
                disk_mib: Some(mib(disk)),
                build_peak_mib: build_peak,
                query_peak_mib: query_peak,
                timing,
                recall_of: "exact",
            },
        );
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// HNSW on `--dense-large` random vectors through `AnnIndex` and `exact_top_k` directly.
fn dense_large(args: &Args) -> anyhow::Result<Value> {
    let n = args.dense_large;
    let dim = args.dim;
    let pb = ProgressBar::new_spinner().with_message(format!("generating {n}×{dim} vectors"));
    pb.enable_steady_tick(Duration::from_millis(200));
    let flat = rag_gen::random_vectors(n, dim, args.seed);
    pb.set_message(format!("building HNSW over {n} vectors"));
    reset_peak_rss();
    let started = Instant::now();
    let ann = AnnIndex::build(&flat, dim)?;
    let build_s = started.elapsed().as_secs_f64();
    let build_peak = common::peak_rss_mib();
    pb.finish_and_clear();
    eprintln!("HNSW over {n} random {dim}-dim vectors built in {build_s:.1} s");
    let queries: Vec<Vec<f32>> = (0..args.queries.min(1000) as u64)
        .map(|i| rag_gen::random_unit(dim, args.seed ^ 0xabcd ^ (i << 20)))
        .collect();
    let mut exact_ids: Vec<Vec<u64>> = Vec::new();
    let exact = time_queries(&queries, &format!("exact {n}"), None, |q| {
        let ids: Vec<u64> = exact_top_k(&flat, dim, q, 10, |_| true)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        exact_ids.push(ids.clone());
        Ok((ids, 1.0))
    })?;
    let mut i = 0;
    let hnsw = time_queries(&queries, &format!("hnsw {n}"), None, |q| {
        let ids: Vec<u64> = ann.search(q, 10).into_iter().map(|(id, _)| id).collect();
        let r = rag_gen::recall(&exact_ids[i], &ids);
        i += 1;
        Ok((ids, r))
    })?;
    Ok(json!({
        "vectors": n,
        "dim": dim,
        "build_s": round(build_s, 2),
        "build_peak_rss_mib": build_peak.map(|m| round(m, 1)),
        "threads": kwx::core::tokenizers::utils::parallelism::current_num_threads(),
        "k": 10,
        "exact": exact.json(),
        "hnsw": hnsw.json(),
    }))
}
