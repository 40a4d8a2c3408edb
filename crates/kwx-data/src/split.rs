//! Train/validation/test splits: by example (in-distribution) and by held-out term.
//!
//! A by-example split shares vocabulary across the three sets, so it measures how well a model
//! fits the dictionary it was trained on. The held-out-term split measures generalisation to
//! keywords never seen in training, the seen/unseen distinction of Augenstein, Derczynski and
//! Bontcheva (2017), "Generalisation in named entity recognition: a quantitative analysis": a
//! fraction of each category's terms never occurs, as term or alias or inside a longer surface,
//! in any training text; validation and test mix examples built around held-out terms (flagged
//! [`Example::held_out`]) with examples that use seen terms only, so both can be scored apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::builder::{BuildError, DatasetBuilder, Example};
use crate::dictionary::{Category, Dictionary};

/// Why a split could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// Ratios that are negative, not finite, or do not sum to 1.
    #[error("split ratios must be non-negative and sum to 1, got ({train}, {val}, {test})")]
    InvalidRatios {
        /// Train share.
        train: f32,
        /// Validation share.
        val: f32,
        /// Test share.
        test: f32,
    },
    /// A held-out fraction outside `[0, 1]`.
    #[error("held-out fraction must be in [0, 1], got {0}")]
    InvalidFraction(f32),
    /// Building one of the sets failed.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Three example sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Splits {
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples.
    pub val: Vec<Example>,
    /// Test examples.
    pub test: Vec<Example>,
}

/// Shuffles `examples` with `seed` and cuts them by `ratios` (train, val, test). Sizes are
/// rounded; test takes the remainder.
pub fn split_by_example(
    mut examples: Vec<Example>,
    ratios: (f32, f32, f32),
    seed: u64,
) -> Result<Splits, SplitError> {
    let (train, val, test) = ratios;
    let valid = [train, val, test]
        .iter()
        .all(|r| r.is_finite() && *r >= 0.0)
        && ((train + val + test) - 1.0).abs() < 1e-4;
    if !valid {
        return Err(SplitError::InvalidRatios { train, val, test });
    }
    examples.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n = examples.len();
    let n_train = ((n as f64 * f64::from(train)).round() as usize).min(n);
    let n_val = ((n as f64 * f64::from(val)).round() as usize).min(n - n_train);
    let rest = examples.split_off(n_train);
    let mut val_set = rest;
    let test_set = val_set.split_off(n_val);
    Ok(Splits {
        train: examples,
        val: val_set,
        test: test_set,
    })
}

/// A choice of dictionary terms that training never sees.
///
/// Its `Display` is a report: the held-out terms per category, then the shadowed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOutSplit {
    by_category: BTreeMap<Category, Vec<String>>,
    terms: BTreeSet<String>,
    shadowed: BTreeSet<String>,
}

impl HeldOutSplit {
    /// Holds out `round(fraction × size)` terms of each category, at least one when `fraction`
    /// is positive and, while `fraction < 1`, at most all but one, so training keeps every
    /// category it can. The choice is a seeded shuffle of each category in dictionary order.
    pub fn new(dictionary: &Dictionary, fraction: f32, seed: u64) -> Result<Self, SplitError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(SplitError::InvalidFraction(fraction));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut by_category = BTreeMap::new();
        for category in Category::ALL {
            let mut terms: Vec<&str> = dictionary
                .entries()
                .iter()
                .filter(|e| e.category == category)
                .map(|e| e.term.as_str())
                .collect();
            let size = terms.len();
            if size == 0 || fraction == 0.0 {
                continue;
            }
            let mut k = ((size as f64 * f64::from(fraction)).round() as usize).max(1);
            if fraction < 1.0 && size > 1 {
                k = k.min(size - 1);
            }
            terms.shuffle(&mut rng);
            let mut chosen: Vec<String> = terms[..k].iter().map(|&t| t.to_owned()).collect();
            chosen.sort();
            by_category.insert(category, chosen);
        }
        let terms: BTreeSet<String> = by_category.values().flatten().cloned().collect();
        let held_surfaces: Vec<&str> = dictionary
            .entries()
            .iter()
            .filter(|e| terms.contains(&e.term))
            .flat_map(|e| e.surfaces())
            .collect();
        let shadowed = dictionary
            .entries()
            .iter()
            .filter(|e| !terms.contains(&e.term))
            .filter(|e| {
                e.surfaces()
                    .any(|s| held_surfaces.iter().any(|h| s.contains(h)))
            })
            .map(|e| e.term.clone())
            .collect();
        Ok(Self {
            by_category,
            terms,
            shadowed,
        })
    }

    /// Every held-out term, sorted.
    pub fn terms(&self) -> &BTreeSet<String> {
        &self.terms
    }

    /// The held-out terms of one category, sorted.
    pub fn terms_in(&self, category: Category) -> &[String] {
        self.by_category.get(&category).map_or(&[], Vec::as_slice)
    }

    /// Whether `term` is held out.
    pub fn contains(&self, term: &str) -> bool {
        self.terms.contains(term)
    }

    /// Terms that are not held out but cannot occur in training either, because one of their
    /// surfaces contains a held-out surface (holding out 진통 shadows 해열진통제). They appear
    /// in validation and test only next to a held-out term, in examples flagged `held_out`.
    pub fn shadowed(&self) -> &BTreeSet<String> {
        &self.shadowed
    }

    /// Builds the three sets with `builder`'s settings: `sizes.0` training examples that use no
    /// held-out surface anywhere in their text, and `sizes.1`/`sizes.2` validation and test
    /// examples of which `held_out_rate` of the keyword ones are built around a held-out term
    /// (flagged `held_out`) and the rest use seen terms only. Each set gets its own seed derived
    /// from the builder's and ids prefixed `train`, `val`, `test`.
    pub fn build(
        &self,
        builder: &DatasetBuilder<'_>,
        sizes: (usize, usize, usize),
        held_out_rate: f32,
    ) -> Result<Splits, SplitError> {
        self.build_with_progress(builder, sizes, held_out_rate, |_| {})
    }

    /// [`HeldOutSplit::build`], calling `on_example(done)` with the number of examples built so
    /// far over all three sets (for a progress bar); the sets are the same.
    pub fn build_with_progress(
        &self,
        builder: &DatasetBuilder<'_>,
        sizes: (usize, usize, usize),
        held_out_rate: f32,
        mut on_example: impl FnMut(usize),
    ) -> Result<Splits, SplitError> {
        let seed = builder.current_seed();
        let mut set = |k: u64, n: usize, prefix: &str, rate: f32, before: usize| {
            builder
                .clone()
                .seed(mix(seed, k))
                .n(n)
                .id_prefix(prefix)
                .held_out_terms(self.terms.iter().cloned())
                .held_out_rate(rate)
                .build_with_progress(|done| on_example(before + done))
        };
        Ok(Splits {
            train: set(1, sizes.0, "train", 0.0, 0)?,
            val: set(2, sizes.1, "val", held_out_rate, sizes.0)?,
            test: set(3, sizes.2, "test", held_out_rate, sizes.0 + sizes.1)?,
        })
    }
}

impl fmt::Display for HeldOutSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (category, terms) in &self.by_category {
            writeln!(f, "{category} ({}): {}", terms.len(), terms.join(", "))?;
        }
        let shadowed: Vec<&str> = self.shadowed.iter().map(String::as_str).collect();
        write!(f, "shadowed ({}): {}", shadowed.len(), shadowed.join(", "))
    }
}

/// SplitMix64 of `seed + k`: independent streams per set from one user seed.
fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
