//! Keyword-extraction metrics: precision, recall and F1, micro and macro, under strict and
//! lenient matching, per category, for keywords present in or absent from the text, and for
//! held-out dictionary terms apart from seen ones.
//!
//! Every strategy (prompting, RAG, LoRA, SFT, tokenizer) is scored by this one module, so their
//! numbers compare. Keyphrase evaluation follows the usual set-based precision/recall/F1 over
//! normalised keywords with present/absent reported apart (Meng et al. 2017, "Deep Keyphrase
//! Generation"); the held-out/seen split follows Augenstein, Derczynski and Bontcheva (2017) (see
//! [`crate::split`]).
//!
//! # Matching
//!
//! A keyword is compared by its *key* under a [`Match`] mode ([`Evaluator::key`]):
//!
//! - **strict**: the keyword with leading and trailing whitespace trimmed, compared exactly (no
//!   Unicode normalisation: gold labels and model output are expected in NFC already).
//! - **lenient**: whitespace and middle dots (`·`, `ㆍ`; [`korean::is_joiner`]) removed, letters
//!   lowercased, then trailing particles and endings stripped with [`korean::strip_particles`]
//!   (`임산부에게` = `임산부`; compound suffixes stay, so `파스형` ≠ `파스`). With a dictionary
//!   ([`Evaluator::dictionary`]) the normalised keyword and then each stem of its particle chain
//!   is looked up among the dictionary's normalised surfaces; the first hit makes the key that
//!   entry's term, so aliases match their term (`임신부에게` = `임산부`). Strict matching never
//!   uses the dictionary.
//!
//! Keywords whose key is empty (blank strings, a lone `·` under lenient) are dropped. Gold and
//! predictions are sets per example: two predictions with the same key count once, under each
//! mode separately (`임산부`, `임산부에게` are one lenient prediction and two strict ones).
//!
//! # Conventions
//!
//! From counts TP, FP, FN: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R)
//! (0 when P + R = 0). With no predictions (TP + FP = 0) precision is 1 when there is no gold
//! either and 0 otherwise; with no gold (TP + FN = 0) recall is 1 when there are no predictions
//! and 0 otherwise. So an example with empty gold and empty prediction scores P = R = F1 = 1, a
//! prediction against empty gold scores 0/0/0, and an empty prediction against gold 0/0/0.
//!
//! - **micro**: the rule above on TP, FP, FN summed over every example.
//! - **macro**: the mean over examples of each example's P, R and F1 (F1 is the mean of the
//!   per-example F1s, not the harmonic mean of macro P and R). Its counts are the micro ones.
//! - **slices** (per category, present/absent, held-out/seen) are micro scores over the keywords
//!   of the slice, gold and predictions filtered alike; a slice's `examples` counts the examples
//!   with at least one gold or predicted keyword in it. A slice with no keywords scores 1/1/1
//!   with zero counts.
//!
//! A keyword's category and held-out status come from its lenient dictionary entry in both modes,
//! so a slice holds the same keywords under strict and lenient matching (a strict FP `임산부에게`
//! is a population FP). Without a dictionary entry the category is `unknown`; a keyword is
//! held out when its lenient key is the lenient key of a held-out term.
//!
//! A keyword is *present* when it occurs in the example text: strict, its key is a substring of
//! the text; lenient, its key (or, for a dictionary entry, any of the entry's normalised
//! surfaces) is a substring of the text with whitespace and middle dots removed and lowercased.
//!
//! ```
//! use kwx_data::dictionary::Dictionary;
//! use kwx_data::eval::{EvalExample, Evaluator};
//!
//! let gold = ["임산부".to_owned(), "파스".to_owned()];
//! let predicted = ["임신부에게".to_owned(), "파스".to_owned()];
//! let report = Evaluator::new()
//!     .dictionary(Dictionary::bundled())
//!     .evaluate([EvalExample::new("임신부에게 파스를 권하지 않는다", &gold, &predicted)]);
//! assert_eq!(report.strict.micro.tp, 1);
//! assert_eq!(report.lenient.micro.f1, 1.0);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::dictionary::{Dictionary, Entry};
use crate::korean;
use crate::split::HeldOutSplit;

/// The category name of keywords without a dictionary entry.
pub const UNKNOWN_CATEGORY: &str = "unknown";

/// How keywords are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// Exact string after trimming.
    Strict,
    /// Normalised, particles stripped, aliases mapped to their term.
    Lenient,
}

impl Match {
    /// Both modes, strict first.
    pub const ALL: [Match; 2] = [Match::Strict, Match::Lenient];
}

/// One scored example: its text, gold keywords and predicted keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalExample<'a> {
    /// The sentence the keywords were extracted from.
    pub text: &'a str,
    /// Gold keywords (dictionary forms, as [`crate::builder::Example::labels`]).
    pub gold: &'a [String],
    /// The strategy's keywords, in any form.
    pub predicted: &'a [String],
}

impl<'a> EvalExample<'a> {
    /// An example from its parts.
    pub fn new(text: &'a str, gold: &'a [String], predicted: &'a [String]) -> Self {
        Self {
            text,
            gold,
            predicted,
        }
    }
}

/// Precision, recall and F1 with the counts behind them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    /// TP / (TP + FP), or the convention in the module docs.
    pub precision: f64,
    /// TP / (TP + FN), or the convention in the module docs.
    pub recall: f64,
    /// Harmonic mean of precision and recall (for macro, the mean per-example F1).
    pub f1: f64,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// Examples scored (for a slice: examples with a keyword in it).
    pub examples: usize,
}

impl Scores {
    /// Scores from counts by the conventions in the module docs.
    pub fn from_counts(tp: usize, fp: usize, fn_: usize, examples: usize) -> Self {
        let ratio = |num: usize, den: usize| num as f64 / den as f64;
        let precision = match (tp + fp, fn_) {
            (0, 0) => 1.0,
            (0, _) => 0.0,
            (predicted, _) => ratio(tp, predicted),
        };
        let recall = match (tp + fn_, fp) {
            (0, 0) => 1.0,
            (0, _) => 0.0,
            (gold, _) => ratio(tp, gold),
        };
        Self {
            precision,
            recall,
            f1: f1(precision, recall),
            tp,
            fp,
            fn_,
            examples,
        }
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// All scores under one match mode.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Breakdown {
    /// Over every keyword of every example.
    pub micro: Scores,
    /// Mean of per-example scores.
    #[serde(rename = "macro")]
    pub macro_: Scores,
    /// Keywords that occur in the text.
    pub present: Scores,
    /// Keywords that do not occur in the text.
    pub absent: Scores,
    /// Keywords whose term is held out of training; `None` without a held-out set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<Scores>,
    /// Keywords whose term is not held out; `None` without a held-out set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Scores>,
    /// Per category name (`population`, …, [`UNKNOWN_CATEGORY`]); only categories that occur.
    pub by_category: BTreeMap<String, Scores>,
}

/// Strict and lenient scores over one evaluation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EvalReport {
    /// Number of examples.
    pub examples: usize,
    /// Exact matching.
    pub strict: Breakdown,
    /// Normalised matching.
    pub lenient: Breakdown,
}

impl EvalReport {
    /// The scores under `mode`.
    pub fn get(&self, mode: Match) -> &Breakdown {
        match mode {
            Match::Strict => &self.strict,
            Match::Lenient => &self.lenient,
        }
    }

    /// Pretty JSON: `{"examples", "strict": {"micro", "macro", "present", "absent", "held_out"?,
    /// "seen"?, "by_category"}, "lenient": {…}}`, each score `{"precision", "recall", "f1",
    /// "tp", "fp", "fn", "examples"}`.
    pub fn to_json(&self) -> String {
        // String keys and f64/usize values only: serialising cannot fail.
        serde_json::to_string_pretty(self).expect("an EvalReport always serialises")
    }

    /// A Markdown table: one row per slice (micro, macro, present, absent, held-out, seen, then
    /// each category), P/R/F1 and TP/FP/FN under strict then lenient matching, three decimals.
    pub fn to_markdown(&self) -> String {
        let mut rows: Vec<(String, Option<&Scores>, Option<&Scores>)> = vec![
            (
                "micro".into(),
                Some(&self.strict.micro),
                Some(&self.lenient.micro),
            ),
            (
                "macro".into(),
                Some(&self.strict.macro_),
                Some(&self.lenient.macro_),
            ),
            (
                "present".into(),
                Some(&self.strict.present),
                Some(&self.lenient.present),
            ),
            (
                "absent".into(),
                Some(&self.strict.absent),
                Some(&self.lenient.absent),
            ),
        ];
        if self.strict.held_out.is_some() || self.lenient.held_out.is_some() {
            rows.push((
                "held-out".into(),
                self.strict.held_out.as_ref(),
                self.lenient.held_out.as_ref(),
            ));
            rows.push((
                "seen".into(),
                self.strict.seen.as_ref(),
                self.lenient.seen.as_ref(),
            ));
        }
        let categories: BTreeSet<&String> = self
            .strict
            .by_category
            .keys()
            .chain(self.lenient.by_category.keys())
            .collect();
        for category in categories {
            rows.push((
                format!("category: {category}"),
                self.strict.by_category.get(category),
                self.lenient.by_category.get(category),
            ));
        }
        let mut out = format!("{} examples\n\n", self.examples);
        out.push_str(
            "| slice | P strict | R strict | F1 strict | TP/FP/FN strict \
             | P lenient | R lenient | F1 lenient | TP/FP/FN lenient |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (name, strict, lenient) in rows {
            out.push_str("| ");
            out.push_str(&name);
            for scores in [strict, lenient] {
                match scores {
                    Some(s) => {
                        let _ = write!(
                            out,
                            " | {:.3} | {:.3} | {:.3} | {}/{}/{}",
                            s.precision, s.recall, s.f1, s.tp, s.fp, s.fn_
                        );
                    }
                    None => out.push_str(" | — | — | — | —"),
                }
            }
            out.push_str(" |\n");
        }
        out
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_markdown())
    }
}

/// Scores predictions against gold keywords; see the module docs for the rules.
#[derive(Debug, Clone, Default)]
pub struct Evaluator<'d> {
    /// Normalised surface → entry; the first entry wins when two surfaces normalise alike.
    surfaces: HashMap<String, &'d Entry>,
    held_out: Option<BTreeSet<String>>,
}

impl<'d> Evaluator<'d> {
    /// An evaluator without dictionary or held-out terms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives keywords their categories and lets lenient matching map aliases to their term.
    #[must_use]
    pub fn dictionary(mut self, dictionary: &'d Dictionary) -> Self {
        self.surfaces.clear();
        for (surface, entry) in dictionary.surfaces() {
            let key = normalize(surface);
            if !key.is_empty() {
                self.surfaces.entry(key).or_insert(entry);
            }
        }
        self
    }

    /// Scores the terms `split` holds out apart from the rest ([`Breakdown::held_out`]).
    #[must_use]
    pub fn held_out(self, split: &HeldOutSplit) -> Self {
        self.held_out_terms(split.terms())
    }

    /// Scores `terms` apart from the rest ([`Breakdown::held_out`]).
    #[must_use]
    pub fn held_out_terms<I>(mut self, terms: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.held_out = Some(terms.into_iter().map(|t| t.as_ref().to_owned()).collect());
        self
    }

    /// The dictionary entry `keyword` names, as lenient matching finds it: by a normalised
    /// surface, then by each stem of its particle chain (`임신부에게` → `임산부`).
    pub fn canonical(&self, keyword: &str) -> Option<&'d Entry> {
        self.lenient(keyword).and_then(|(_, entry)| entry)
    }

    /// The string `keyword` is compared by under `mode`; `None` when it is empty.
    pub fn key(&self, mode: Match, keyword: &str) -> Option<String> {
        match mode {
            Match::Strict => Some(keyword.trim())
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            Match::Lenient => self.lenient(keyword).map(|(key, _)| key),
        }
    }

    /// Scores `examples` under both modes.
    pub fn evaluate<'a>(&self, examples: impl IntoIterator<Item = EvalExample<'a>>) -> EvalReport {
        let held_keys: Option<BTreeSet<String>> = self.held_out.as_ref().map(|terms| {
            terms
                .iter()
                .filter_map(|t| self.lenient(t).map(|(key, _)| key))
                .collect()
        });
        let mut tallies = [Tally::default(), Tally::default()];
        let mut n = 0;
        for example in examples {
            n += 1;
            let text = Text {
                raw: example.text,
                normalized: normalize(example.text),
            };
            for (mode, tally) in Match::ALL.into_iter().zip(&mut tallies) {
                let keyed = |keywords: &[String]| -> BTreeMap<String, Attributes> {
                    keywords
                        .iter()
                        .filter_map(|k| self.keyed(mode, k, &text, held_keys.as_ref()))
                        .collect()
                };
                tally.add(&keyed(example.gold), &keyed(example.predicted));
            }
        }
        let [strict, lenient] = tallies.map(|t| t.finish(n, held_keys.is_some()));
        EvalReport {
            examples: n,
            strict,
            lenient,
        }
    }

    /// The lenient key of `keyword` and its dictionary entry, if any.
    fn lenient(&self, keyword: &str) -> Option<(String, Option<&'d Entry>)> {
        let normalized = normalize(keyword);
        if normalized.is_empty() {
            return None;
        }
        let chain = korean::particle_stems(&normalized);
        let hit = std::iter::once(normalized.as_str())
            .chain(chain.iter().copied())
            .find_map(|form| self.surfaces.get(form));
        Some(match hit {
            Some(&entry) => (entry.term.clone(), Some(entry)),
            None => (
                chain.last().copied().unwrap_or(&normalized).to_owned(),
                None,
            ),
        })
    }

    /// `keyword`'s key under `mode` with the slices it belongs to.
    fn keyed(
        &self,
        mode: Match,
        keyword: &str,
        text: &Text<'_>,
        held_keys: Option<&BTreeSet<String>>,
    ) -> Option<(String, Attributes)> {
        let key = self.key(mode, keyword)?;
        let lenient = self.lenient(keyword);
        let entry = lenient.as_ref().and_then(|(_, entry)| *entry);
        let present = match mode {
            Match::Strict => text.raw.contains(&key),
            Match::Lenient => match entry {
                Some(entry) => entry.surfaces().any(|s| {
                    let s = normalize(s);
                    !s.is_empty() && text.normalized.contains(&s)
                }),
                None => text.normalized.contains(&key),
            },
        };
        let held_out = match (held_keys, &lenient) {
            (Some(keys), Some((lenient_key, _))) => keys.contains(lenient_key),
            _ => false,
        };
        let category = entry.map_or(UNKNOWN_CATEGORY, |e| e.category.name());
        Some((
            key,
            Attributes {
                category,
                present,
                held_out,
            },
        ))
    }
}

/// An example text, raw and normalised like lenient keys.
struct Text<'a> {
    raw: &'a str,
    normalized: String,
}

/// The slices a keyword belongs to.
#[derive(Debug, Clone, Copy)]
struct Attributes {
    category: &'static str,
    present: bool,
    held_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slice {
    Present,
    Absent,
    HeldOut,
    Seen,
    Category(&'static str),
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    examples: usize,
}

impl Counts {
    fn count(&mut self, gold: bool, predicted: bool) {
        match (gold, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    fn merge(&mut self, other: Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.examples += 1;
    }

    fn scores(self) -> Scores {
        Scores::from_counts(self.tp, self.fp, self.fn_, self.examples)
    }
}

/// Running counts under one mode.
#[derive(Debug, Default)]
struct Tally {
    micro: Counts,
    /// Sums of per-example precision, recall and F1.
    macro_sums: [f64; 3],
    slices: BTreeMap<Slice, Counts>,
}

impl Tally {
    fn add(
        &mut self,
        gold: &BTreeMap<String, Attributes>,
        predicted: &BTreeMap<String, Attributes>,
    ) {
        let mut example = Counts::default();
        let mut slices: BTreeMap<Slice, Counts> = BTreeMap::new();
        let keys: BTreeSet<&String> = gold.keys().chain(predicted.keys()).collect();
        for key in keys {
            let (in_gold, in_predicted) = (gold.get(key), predicted.get(key));
            let Some(attributes) = in_gold.or(in_predicted) else {
                continue;
            };
            let (g, p) = (in_gold.is_some(), in_predicted.is_some());
            example.count(g, p);
            let place = if attributes.present {
                Slice::Present
            } else {
                Slice::Absent
            };
            let origin = if attributes.held_out {
                Slice::HeldOut
            } else {
                Slice::Seen
            };
            for slice in [place, origin, Slice::Category(attributes.category)] {
                slices.entry(slice).or_default().count(g, p);
            }
        }
        let scores = example.scores();
        for (sum, value) in
            self.macro_sums
                .iter_mut()
                .zip([scores.precision, scores.recall, scores.f1])
        {
            *sum += value;
        }
        self.micro.merge(example);
        for (slice, counts) in slices {
            self.slices.entry(slice).or_default().merge(counts);
        }
    }

    fn finish(self, examples: usize, held_out: bool) -> Breakdown {
        let micro = Counts {
            examples,
            ..self.micro
        };
        let micro = micro.scores();
        let macro_ = if examples == 0 {
            micro
        } else {
            let [precision, recall, f1] = self.macro_sums.map(|s| s / examples as f64);
            Scores {
                precision,
                recall,
                f1,
                ..micro
            }
        };
        let slice = |s: Slice| self.slices.get(&s).copied().unwrap_or_default().scores();
        Breakdown {
            micro,
            macro_,
            present: slice(Slice::Present),
            absent: slice(Slice::Absent),
            held_out: held_out.then(|| slice(Slice::HeldOut)),
            seen: held_out.then(|| slice(Slice::Seen)),
            by_category: self
                .slices
                .iter()
                .filter_map(|(s, counts)| match s {
                    Slice::Category(name) => Some(((*name).to_owned(), counts.scores())),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Whitespace and middle dots removed, lowercased.
fn normalize(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_whitespace() && !korean::is_joiner(c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|&x| x.to_owned()).collect()
    }

    /// Scores one example.
    fn one(evaluator: &Evaluator<'_>, text: &str, gold: &[&str], predicted: &[&str]) -> EvalReport {
        let (gold, predicted) = (strings(gold), strings(predicted));
        evaluator.evaluate([EvalExample::new(text, &gold, &predicted)])
    }

    #[track_caller]
    fn assert_scores(s: &Scores, (p, r, f): (f64, f64, f64), (tp, fp, fn_): (usize, usize, usize)) {
        assert!(
            (s.precision - p).abs() < EPS && (s.recall - r).abs() < EPS && (s.f1 - f).abs() < EPS,
            "expected P/R/F1 {p}/{r}/{f}, got {s:?}"
        );
        assert_eq!((s.tp, s.fp, s.fn_), (tp, fp, fn_), "counts of {s:?}");
    }

    #[test]
    fn perfect_match() {
        let r = one(
            &Evaluator::new(),
            "진통과 해열",
            &["진통", "해열"],
            &["해열", "진통"],
        );
        for mode in Match::ALL {
            assert_scores(&r.get(mode).micro, (1.0, 1.0, 1.0), (2, 0, 0));
            assert_scores(&r.get(mode).macro_, (1.0, 1.0, 1.0), (2, 0, 0));
        }
        assert_eq!(r.examples, 1);
    }

    #[test]
    fn partial_match() {
        // Gold {진통, 해열, 두통}, predicted {진통, 해열, 감기}: TP 2, FP 1, FN 1;
        // P = 2/3, R = 2/3, F1 = 2/3.
        let r = one(
            &Evaluator::new(),
            "",
            &["진통", "해열", "두통"],
            &["진통", "해열", "감기"],
        );
        let third = 2.0 / 3.0;
        assert_scores(&r.strict.micro, (third, third, third), (2, 1, 1));
        assert_scores(&r.lenient.micro, (third, third, third), (2, 1, 1));
    }

    #[test]
    fn particles_match_leniently_only() {
        // Strict: 임산부에게 ≠ 임산부, one FP and one FN, P = R = F1 = 0.
        // Lenient: 임산부에게 → 임산부, one TP.
        let text = "임산부에게 파스를 권하지 않는다";
        let plain = Evaluator::new();
        let dict = Evaluator::new().dictionary(Dictionary::bundled());
        for evaluator in [&plain, &dict] {
            let r = one(evaluator, text, &["임산부"], &["임산부에게"]);
            assert_scores(&r.strict.micro, (0.0, 0.0, 0.0), (0, 1, 1));
            assert_scores(&r.lenient.micro, (1.0, 1.0, 1.0), (1, 0, 0));
        }
        // Stacked particles and endings, spacing, case and middle dots.
        assert_eq!(
            plain.key(Match::Lenient, "임산부들에게는").as_deref(),
            Some("임산부")
        );
        assert_eq!(
            plain.key(Match::Lenient, " NSAIDs 제제 ").as_deref(),
            Some("nsaids제제")
        );
        // A particle after Latin letters stays: the stem must end in a syllable
        // (`korean::strip_particles`).
        assert_eq!(
            plain.key(Match::Lenient, "NSAIDs를").as_deref(),
            Some("nsaids를")
        );
        assert_eq!(
            plain.key(Match::Strict, " NSAIDs를 ").as_deref(),
            Some("NSAIDs를")
        );
        assert_eq!(
            plain.key(Match::Lenient, "효능·효과"),
            plain.key(Match::Lenient, "효능 효과")
        );
        // Compound suffixes are not particles.
        assert_eq!(
            plain.key(Match::Lenient, "파스형").as_deref(),
            Some("파스형")
        );
        assert_eq!(plain.key(Match::Strict, "  "), None);
        assert_eq!(plain.key(Match::Lenient, "·"), None);
    }

    #[test]
    fn duplicate_predictions_count_once_per_mode() {
        // Strict keys {진통}: the three predictions trim to one, TP 1.
        let r = one(
            &Evaluator::new(),
            "",
            &["진통"],
            &["진통", "진통", " 진통 "],
        );
        assert_scores(&r.strict.micro, (1.0, 1.0, 1.0), (1, 0, 0));
        // Strict keys {진통, 진통은}: TP 1, FP 1, P = 1/2, R = 1, F1 = 2/3.
        // Lenient keys {진통}: TP 1.
        let r = one(&Evaluator::new(), "", &["진통"], &["진통", "진통은"]);
        assert_scores(&r.strict.micro, (0.5, 1.0, 2.0 / 3.0), (1, 1, 0));
        assert_scores(&r.lenient.micro, (1.0, 1.0, 1.0), (1, 0, 0));
        // Duplicate gold counts once too; blank keywords are dropped.
        let r = one(
            &Evaluator::new(),
            "",
            &["진통", "진통", ""],
            &["진통", "  "],
        );
        assert_scores(&r.strict.micro, (1.0, 1.0, 1.0), (1, 0, 0));
    }

    #[test]
    fn empty_gold_and_empty_prediction() {
        // Nothing to find and nothing found: P = R = F1 = 1 by convention.
        let r = one(&Evaluator::new(), "이 약은 식후에 복용한다", &[], &[]);
        for mode in Match::ALL {
            assert_scores(&r.get(mode).micro, (1.0, 1.0, 1.0), (0, 0, 0));
            assert_scores(&r.get(mode).macro_, (1.0, 1.0, 1.0), (0, 0, 0));
            assert!(r.get(mode).by_category.is_empty());
        }
    }

    #[test]
    fn empty_gold_with_a_prediction() {
        // TP 0, FP 1: P = 0/1 = 0; no gold but a prediction, so R = 0; F1 = 0.
        let r = one(&Evaluator::new(), "", &[], &["진통"]);
        for mode in Match::ALL {
            assert_scores(&r.get(mode).micro, (0.0, 0.0, 0.0), (0, 1, 0));
            assert_scores(&r.get(mode).macro_, (0.0, 0.0, 0.0), (0, 1, 0));
        }
    }

    #[test]
    fn empty_prediction_with_gold() {
        // TP 0, FN 1: no prediction but gold, so P = 0; R = 0/1 = 0; F1 = 0.
        let r = one(&Evaluator::new(), "", &["진통"], &[]);
        for mode in Match::ALL {
            assert_scores(&r.get(mode).micro, (0.0, 0.0, 0.0), (0, 0, 1));
            assert_scores(&r.get(mode).macro_, (0.0, 0.0, 0.0), (0, 0, 1));
        }
    }

    fn two_examples() -> EvalReport {
        // 1: gold {진통, 해열, 두통, 소염}, predicted {진통, 감기}: TP 1, FP 1, FN 3;
        //    P = 1/2, R = 1/4, F1 = 2·(1/8)/(3/4) = 1/3.
        // 2: gold {파스}, predicted {파스}: P = R = F1 = 1.
        // Micro: TP 2, FP 1, FN 3: P = 2/3, R = 2/5, F1 = (8/15)/(16/15) = 1/2.
        // Macro: P = (1/2 + 1)/2 = 3/4, R = (1/4 + 1)/2 = 5/8, F1 = (1/3 + 1)/2 = 2/3.
        let gold1 = strings(&["진통", "해열", "두통", "소염"]);
        let pred1 = strings(&["진통", "감기"]);
        let both = strings(&["파스"]);
        Evaluator::new().evaluate([
            EvalExample::new("진통, 해열, 두통, 소염", &gold1, &pred1),
            EvalExample::new("파스", &both, &both),
        ])
    }

    #[test]
    fn macro_and_micro_differ() {
        let r = two_examples();
        assert_eq!(r.examples, 2);
        for mode in Match::ALL {
            let b = r.get(mode);
            assert_scores(&b.micro, (2.0 / 3.0, 0.4, 0.5), (2, 1, 3));
            assert_scores(&b.macro_, (0.75, 0.625, 2.0 / 3.0), (2, 1, 3));
            assert_eq!((b.micro.examples, b.macro_.examples), (2, 2));
        }
    }

    #[test]
    fn per_category_with_the_bundled_dictionary() {
        // Gold: 임산부 (population), 파스 (dosage_form), 진통 (symptom).
        // Predicted: 임산부에게 (→ 임산부, population), 파스, 감기 (disease), 블록체인 (unknown).
        let evaluator = Evaluator::new().dictionary(Dictionary::bundled());
        let r = one(
            &evaluator,
            "임산부에게 파스를 붙여 진통을 줄였다",
            &["임산부", "파스", "진통"],
            &["임산부에게", "파스", "감기", "블록체인"],
        );
        // Strict: TP {파스}, FP {임산부에게, 감기, 블록체인}, FN {임산부, 진통}:
        // P = 1/4, R = 1/3, F1 = 2·(1/12)/(7/12) = 2/7.
        assert_scores(&r.strict.micro, (0.25, 1.0 / 3.0, 2.0 / 7.0), (1, 3, 2));
        // Lenient: TP {임산부, 파스}, FP {감기, 블록체인}, FN {진통}:
        // P = 1/2, R = 2/3, F1 = 2·(1/3)/(7/6) = 4/7.
        assert_scores(&r.lenient.micro, (0.5, 2.0 / 3.0, 4.0 / 7.0), (2, 2, 1));

        let names = |b: &Breakdown| b.by_category.keys().cloned().collect::<Vec<_>>();
        let expected = ["disease", "dosage_form", "population", "symptom", "unknown"];
        assert_eq!(names(&r.strict), expected);
        assert_eq!(names(&r.lenient), expected);
        let s = &r.strict.by_category;
        // The strict FP 임산부에게 still belongs to population.
        assert_scores(&s["population"], (0.0, 0.0, 0.0), (0, 1, 1));
        assert_scores(&s["dosage_form"], (1.0, 1.0, 1.0), (1, 0, 0));
        assert_scores(&s["symptom"], (0.0, 0.0, 0.0), (0, 0, 1));
        assert_scores(&s["disease"], (0.0, 0.0, 0.0), (0, 1, 0));
        assert_scores(&s["unknown"], (0.0, 0.0, 0.0), (0, 1, 0));
        let l = &r.lenient.by_category;
        assert_scores(&l["population"], (1.0, 1.0, 1.0), (1, 0, 0));
        assert_scores(&l["dosage_form"], (1.0, 1.0, 1.0), (1, 0, 0));
        assert_scores(&l["symptom"], (0.0, 0.0, 0.0), (0, 0, 1));
        assert_eq!(l["population"].examples, 1);

        // Without a dictionary every keyword is unknown.
        let r = one(&Evaluator::new(), "", &["임산부"], &["파스"]);
        assert_eq!(names(&r.lenient), ["unknown"]);
    }

    #[test]
    fn aliases_match_their_term_leniently_with_a_dictionary() {
        let dict = Evaluator::new().dictionary(Dictionary::bundled());
        assert_eq!(
            dict.canonical("임신부에게").map(|e| e.term.as_str()),
            Some("임산부")
        );
        assert_eq!(dict.canonical("블록체인"), None);
        for predicted in ["임신부", "임신부에게", "임산부"] {
            let r = one(&dict, "임신부에게 권하지 않는다", &["임산부"], &[predicted]);
            assert_scores(&r.lenient.micro, (1.0, 1.0, 1.0), (1, 0, 0));
            // Present through its alias 임신부.
            assert_scores(&r.lenient.present, (1.0, 1.0, 1.0), (1, 0, 0));
        }
        // Strict never maps aliases.
        let r = one(&dict, "", &["임산부"], &["임신부"]);
        assert_scores(&r.strict.micro, (0.0, 0.0, 0.0), (0, 1, 1));
        // Nor does lenient without a dictionary.
        let r = one(&Evaluator::new(), "", &["임산부"], &["임신부"]);
        assert_scores(&r.lenient.micro, (0.0, 0.0, 0.0), (0, 1, 1));
    }

    #[test]
    fn present_and_absent_keywords() {
        // Gold 임산부, 파스 occur in the text, 진통 does not; predictions 임산부에게 (occurs),
        // 진통 and 두통 (do not).
        let r = one(
            &Evaluator::new(),
            "임산부에게 파스를 붙였다",
            &["임산부", "파스", "진통"],
            &["임산부에게", "진통", "두통"],
        );
        // Strict present: FN 임산부, FN 파스, FP 임산부에게: 0/0/0.
        assert_scores(&r.strict.present, (0.0, 0.0, 0.0), (0, 1, 2));
        // Strict absent: TP 진통, FP 두통: P = 1/2, R = 1, F1 = 2/3.
        assert_scores(&r.strict.absent, (0.5, 1.0, 2.0 / 3.0), (1, 1, 0));
        // Lenient present: TP 임산부, FN 파스: P = 1, R = 1/2, F1 = 2/3.
        assert_scores(&r.lenient.present, (1.0, 0.5, 2.0 / 3.0), (1, 0, 1));
        assert_scores(&r.lenient.absent, (0.5, 1.0, 2.0 / 3.0), (1, 1, 0));
        assert_eq!(
            (r.lenient.present.examples, r.lenient.absent.examples),
            (1, 1)
        );
        // No held-out set, no held-out slices.
        assert_eq!((r.strict.held_out, r.strict.seen), (None, None));
        // Lenient presence ignores spacing and middle dots in the text.
        let r = one(
            &Evaluator::new(),
            "효능 · 효과를 확인한다",
            &["효능·효과"],
            &[],
        );
        assert_scores(&r.lenient.present, (0.0, 0.0, 0.0), (0, 0, 1));
        assert_scores(&r.strict.absent, (0.0, 0.0, 0.0), (0, 0, 1));
    }

    #[test]
    fn held_out_terms_are_scored_apart() {
        // Held out: 진통, 임산부. Gold 임산부, 파스, 진통; predicted 임신부 (alias of 임산부),
        // 파스, 두통.
        let evaluator = Evaluator::new()
            .dictionary(Dictionary::bundled())
            .held_out_terms(["진통", "임산부"]);
        let r = one(
            &evaluator,
            "",
            &["임산부", "파스", "진통"],
            &["임신부", "파스", "두통"],
        );
        // Lenient held-out: TP 임산부, FN 진통: P = 1, R = 1/2, F1 = 2/3.
        assert_scores(
            r.lenient.held_out.as_ref().expect("held out"),
            (1.0, 0.5, 2.0 / 3.0),
            (1, 0, 1),
        );
        // Lenient seen: TP 파스, FP 두통: P = 1/2, R = 1, F1 = 2/3.
        let seen = r.lenient.seen.as_ref().expect("seen");
        assert_scores(seen, (0.5, 1.0, 2.0 / 3.0), (1, 1, 0));
        // Strict held-out: FN 임산부, FN 진통, FP 임신부 (its term is held out): 0/0/0.
        let held = r.strict.held_out.as_ref().expect("held out");
        assert_scores(held, (0.0, 0.0, 0.0), (0, 1, 2));
        assert_scores(
            r.strict.seen.as_ref().expect("seen"),
            (0.5, 1.0, 2.0 / 3.0),
            (1, 1, 0),
        );

        // Without a dictionary held-out terms compare by lenient key: 진통을 is 진통.
        let r = one(
            &Evaluator::new().held_out_terms(["진통"]),
            "",
            &["진통"],
            &["진통을"],
        );
        let held = r.lenient.held_out.as_ref().expect("held out");
        assert_scores(held, (1.0, 1.0, 1.0), (1, 0, 0));
        assert_eq!(held.examples, 1);
        // An empty slice scores 1 with zero counts and zero examples.
        let seen = r.lenient.seen.as_ref().expect("seen");
        assert_scores(seen, (1.0, 1.0, 1.0), (0, 0, 0));
        assert_eq!(seen.examples, 0);

        // A HeldOutSplit works the same way.
        let dictionary = Dictionary::bundled();
        let split = HeldOutSplit::new(dictionary, 0.1, 0).expect("split");
        let term = split
            .terms()
            .iter()
            .next()
            .expect("a held-out term")
            .as_str();
        let r = one(
            &Evaluator::new().dictionary(dictionary).held_out(&split),
            "",
            &[term],
            &[term],
        );
        assert_scores(
            r.strict.held_out.as_ref().expect("held out"),
            (1.0, 1.0, 1.0),
            (1, 0, 0),
        );
        assert_scores(
            r.strict.seen.as_ref().expect("seen"),
            (1.0, 1.0, 1.0),
            (0, 0, 0),
        );
    }

    #[test]
    fn json_keys_and_values() {
        let r = two_examples();
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(json["examples"], 2);
        let strict = &json["strict"];
        let keys: Vec<&str> = strict
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        // No held-out set: no held_out/seen keys.
        assert_eq!(keys, ["absent", "by_category", "macro", "micro", "present"]);
        assert!((strict["micro"]["precision"].as_f64().expect("f64") - 2.0 / 3.0).abs() < EPS);
        assert_eq!(strict["micro"]["recall"], 0.4);
        assert_eq!(strict["micro"]["f1"], 0.5);
        assert_eq!(strict["macro"]["precision"], 0.75);
        assert_eq!(strict["macro"]["recall"], 0.625);
        assert_eq!(
            (
                &strict["micro"]["tp"],
                &strict["micro"]["fp"],
                &strict["micro"]["fn"]
            ),
            (&2.into(), &1.into(), &3.into())
        );
        assert_eq!(json["lenient"]["by_category"]["unknown"]["tp"], 2);
        let back: EvalReport = serde_json::from_str(&r.to_json()).expect("round trip");
        assert_eq!(back, r);

        let with_held = one(
            &Evaluator::new().held_out_terms(["진통"]),
            "",
            &["진통"],
            &[],
        );
        let json: serde_json::Value = serde_json::from_str(&with_held.to_json()).expect("json");
        assert_eq!(json["lenient"]["held_out"]["fn"], 1);
        assert_eq!(json["lenient"]["seen"]["examples"], 0);
    }

    #[test]
    fn markdown_table() {
        let table = two_examples().to_markdown();
        assert!(table.starts_with("2 examples\n"), "{table}");
        for row in [
            "| micro | 0.667 | 0.400 | 0.500 | 2/1/3 | 0.667 | 0.400 | 0.500 | 2/1/3 |",
            "| macro | 0.750 | 0.625 | 0.667 | 2/1/3 | 0.750 | 0.625 | 0.667 | 2/1/3 |",
            "| category: unknown | 0.667 | 0.400 | 0.500 | 2/1/3 |",
        ] {
            assert!(table.contains(row), "{row} missing from\n{table}");
        }
        assert!(!table.contains("held-out"));

        // A category found under one mode only shows dashes under the other.
        let r = one(
            &Evaluator::new()
                .dictionary(Dictionary::bundled())
                .held_out_terms(["진통"]),
            "진통을 줄인다",
            &["진통"],
            &["진통을"],
        );
        let table = r.to_markdown();
        for row in [
            "| held-out | 0.000 | 0.000 | 0.000 | 0/1/1 | 1.000 | 1.000 | 1.000 | 1/0/0 |",
            "| seen | 1.000 | 1.000 | 1.000 | 0/0/0 | 1.000 | 1.000 | 1.000 | 0/0/0 |",
            "| category: symptom | 0.000 | 0.000 | 0.000 | 0/1/1 | 1.000 | 1.000 | 1.000 | 1/0/0 |",
        ] {
            assert!(table.contains(row), "{row} missing from\n{table}");
        }
        assert_eq!(r.to_string(), table);
    }

    #[test]
    fn no_examples() {
        let r = Evaluator::new().evaluate(std::iter::empty());
        assert_eq!(r.examples, 0);
        assert_scores(&r.strict.macro_, (1.0, 1.0, 1.0), (0, 0, 0));
    }
}
