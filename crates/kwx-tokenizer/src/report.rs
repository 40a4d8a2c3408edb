//! How badly a tokenizer shatters domain terms, and what a customized one changes.

use std::fmt::Write as _;

use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::error::Result;
use crate::extend::encode_ids;

/// Tokens per term under two tokenizers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TermRow {
    /// The term.
    pub term: String,
    /// Tokens before.
    pub before: usize,
    /// Tokens after.
    pub after: usize,
}

/// Term fragmentation and corpus length, before and after a tokenizer change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FragmentationReport {
    /// Per term, in the order given.
    pub terms: Vec<TermRow>,
    /// Mean tokens per term before.
    pub mean_tokens_before: f64,
    /// Mean tokens per term after.
    pub mean_tokens_after: f64,
    /// Share of terms split into three or more pieces, before.
    pub split_3plus_before: f64,
    /// The same, after.
    pub split_3plus_after: f64,
    /// Terms that are one token, before.
    pub single_before: usize,
    /// Terms that are one token, after.
    pub single_after: usize,
    /// Corpus lines measured.
    pub corpus_lines: u64,
    /// Corpus tokens before.
    pub corpus_tokens_before: u64,
    /// Corpus tokens after.
    pub corpus_tokens_after: u64,
    /// `after / before - 1` over the corpus (negative: shorter sequences).
    pub corpus_length_change: f64,
}

/// Lines per parallel batch.
const BATCH: usize = 4096;

impl FragmentationReport {
    /// Measures `terms` and `corpus` (one text per item, streamed in batches) under both
    /// tokenizers; `progress` receives the number of corpus lines done so far.
    pub fn measure<T, I, S>(
        before: &Tokenizer,
        after: &Tokenizer,
        terms: &[T],
        corpus: I,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self>
    where
        T: AsRef<str>,
        I: IntoIterator<Item = S>,
        S: AsRef<str> + Send + Sync,
    {
        let rows = terms
            .iter()
            .map(|t| {
                let term = t.as_ref();
                Ok(TermRow {
                    term: term.to_owned(),
                    before: encode_ids(before, term)?.len(),
                    after: encode_ids(after, term)?.len(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (mut lines, mut tokens_before, mut tokens_after) = (0u64, 0u64, 0u64);
        let mut batch: Vec<S> = Vec::with_capacity(BATCH);
        let mut flush = |batch: &mut Vec<S>| -> Result<()> {
            let (b, a) = batch
                .par_iter()
                .map(|line| {
                    let line = line.as_ref();
                    Ok((
                        encode_ids(before, line)?.len() as u64,
                        encode_ids(after, line)?.len() as u64,
                    ))
                })
                .try_reduce(|| (0, 0), |x, y| Ok((x.0 + y.0, x.1 + y.1)))?;
            tokens_before += b;
            tokens_after += a;
            lines += batch.len() as u64;
            batch.clear();
            progress(lines);
            Ok(())
        };
        for line in corpus {
            batch.push(line);
            if batch.len() == BATCH {
                flush(&mut batch)?;
            }
        }
        if !batch.is_empty() {
            flush(&mut batch)?;
        }
        let n = rows.len().max(1) as f64;
        let mean = |f: fn(&TermRow) -> usize| rows.iter().map(|r| f(r) as f64).sum::<f64>() / n;
        let share = |f: fn(&TermRow) -> usize| rows.iter().filter(|r| f(r) >= 3).count() as f64 / n;
        let single = |f: fn(&TermRow) -> usize| rows.iter().filter(|r| f(r) == 1).count();
        Ok(Self {
            mean_tokens_before: mean(|r| r.before),
            mean_tokens_after: mean(|r| r.after),
            split_3plus_before: share(|r| r.before),
            split_3plus_after: share(|r| r.after),
            single_before: single(|r| r.before),
            single_after: single(|r| r.after),
            corpus_lines: lines,
            corpus_tokens_before: tokens_before,
            corpus_tokens_after: tokens_after,
            corpus_length_change: if tokens_before == 0 {
                0.0
            } else {
                tokens_after as f64 / tokens_before as f64 - 1.0
            },
            terms: rows,
        })
    }

    /// A markdown table: the summary, then the `worst` most fragmented terms (before).
    pub fn table(&self, worst: usize) -> String {
        let n = self.terms.len();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| {n} terms, {} corpus lines | before | after |",
            self.corpus_lines
        );
        let _ = writeln!(out, "|---|---:|---:|");
        let _ = writeln!(
            out,
            "| tokens per term (mean) | {:.2} | {:.2} |",
            self.mean_tokens_before, self.mean_tokens_after
        );
        let _ = writeln!(
            out,
            "| terms in ≥ 3 pieces | {:.1}% | {:.1}% |",
            100.0 * self.split_3plus_before,
            100.0 * self.split_3plus_after
        );
        let _ = writeln!(
            out,
            "| single-token terms | {} | {} |",
            self.single_before, self.single_after
        );
        let _ = writeln!(
            out,
            "| corpus tokens | {} | {} ({:+.1}%) |",
            self.corpus_tokens_before,
            self.corpus_tokens_after,
            100.0 * self.corpus_length_change
        );
        if worst > 0 && !self.terms.is_empty() {
            let mut rows: Vec<&TermRow> = self.terms.iter().collect();
            rows.sort_by(|a, b| b.before.cmp(&a.before).then(a.term.cmp(&b.term)));
            let _ = writeln!(out);
            let _ = writeln!(out, "| term | tokens before | after |");
            let _ = writeln!(out, "|---|---:|---:|");
            for r in rows.into_iter().take(worst) {
                let _ = writeln!(out, "| {} | {} | {} |", r.term, r.before, r.after);
            }
        }
        out
    }
}
