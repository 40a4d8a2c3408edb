//! Growing a [`Gemma`]'s vocabulary: the model side of tokenizer customization.
//!
//! Adding domain tokens to the tokenizer (`kwx-tokenizer`) gives them ids the model has no rows
//! for. [`Gemma::resize_token_embeddings`] appends those rows (and padding), keeping every
//! existing row bit-identical, so the model computes exactly what it computed before on old ids;
//! [`Gemma::init_token_rows`] re-initialises rows in place, for ids a tokenizer repurposes (Gemma's
//! `<unused*>` tokens).
//!
//! Two starting points, [`RowInit`]:
//! - the mean of the rows of the pieces the old tokenizer split the new token into, as in Fast
//!   Vocabulary Transfer (Gee et al., 2022, "Fast Vocabulary Transfer for Language Model
//!   Compression"), so the new token starts where its spelling pointed;
//! - the mean of the whole vocabulary plus small Gaussian noise, transformers'
//!   `PreTrainedModel._init_added_embeddings_weights_with_mean` (`modeling_utils.py`, behind
//!   `resize_token_embeddings(mean_resizing=True)`; after Hewitt, 2021, "Initializing New Word
//!   Embeddings for Pretrained Language Models"), which keeps the next-token distribution close to
//!   the original. transformers samples from `N(mean, 1e-9 · Σ)` with `Σ` the rows' full covariance
//!   (divided by the row count); kwx keeps only its diagonal, the per-dimension variance, which
//!   needs no `hidden × hidden` matrix or Cholesky factor. The factor (1e-9 there, 1e-5 in Hewitt's
//!   post) is [`ResizeOptions::noise_variance_scale`].
//!
//! A tied output head follows the embedding; an untied `lm_head` (`[hidden, vocab]` in burn) gets
//! the same treatment on its own columns, from its own statistics, as transformers'
//! `_init_added_lm_head_weights_with_mean` does.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{ResizeError, Result};
use crate::model::Gemma;

/// The variance factor transformers applies to the rows' covariance
/// (`_init_added_embeddings_weights_with_mean`'s `epsilon`).
pub const TRANSFORMERS_NOISE_VARIANCE_SCALE: f64 = 1e-9;

/// How one embedding row starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowInit {
    /// Mean of these existing rows (the pieces the new token replaced under the old tokenizer).
    /// Ids index the vocabulary as it was before the call; an id listed twice counts twice.
    MeanOf(Vec<u32>),
    /// Mean of all existing rows plus small Gaussian noise (fallback when a term has no pieces).
    VocabMean,
}

/// Settings of [`Gemma::resize_token_embeddings`] and [`Gemma::init_token_rows`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeOptions {
    /// Round the new vocabulary size up to a multiple of this (as transformers'
    /// `pad_to_multiple_of`: aligned matrix sizes run faster on GPUs). `None`: no padding.
    pub pad_to_multiple_of: Option<usize>,
    /// Seed of the noise added to [`RowInit::VocabMean`] rows; the same seed gives the same rows.
    pub seed: u64,
    /// Variance of the noise relative to the rows' per-dimension variance: each value of a
    /// [`RowInit::VocabMean`] row is `mean_d + N(0, 1) · std_d · √scale`. `0` gives the plain
    /// mean. Default: [`TRANSFORMERS_NOISE_VARIANCE_SCALE`].
    pub noise_variance_scale: f64,
}

impl Default for ResizeOptions {
    fn default() -> Self {
        Self {
            pad_to_multiple_of: None,
            seed: 0,
            noise_variance_scale: TRANSFORMERS_NOISE_VARIANCE_SCALE,
        }
    }
}

impl Gemma {
    /// Grows the vocabulary to `new_vocab_size` (rounded up to a multiple of
    /// [`ResizeOptions::pad_to_multiple_of`]), keeping every existing row bit-identical.
    ///
    /// `rows` initialises chosen rows: ids at or above the old vocabulary size for new tokens,
    /// and ids below it too, to re-initialise repurposed rows (Gemma's `<unused*>` tokens). Every
    /// other new row (padding, tokens without pieces) gets [`RowInit::VocabMean`]. All means are
    /// taken over the matrix as it was before the call. A tied head follows the embedding; an
    /// untied `lm_head` gets the same treatment on its own columns (and bias, if any).
    /// `config().vocab_size` becomes the new size.
    ///
    /// Parameter ids are kept, as are the parameters' autodiff settings, so records and
    /// optimizers keep addressing the same tensors (optimizer state for them has the old shape:
    /// resize before training, or start a new optimizer).
    ///
    /// # Errors
    /// [`ResizeError`] (inside [`crate::Error::Resize`]) when `new_vocab_size` is below the current
    /// size (shrinking is refused), `pad_to_multiple_of` is 0, a row id is outside the new
    /// vocabulary or given twice, a [`RowInit::MeanOf`] list is empty or names an id outside the
    /// old vocabulary, or the embedding or head carries a reparameterization (attach adapters after
    /// resizing).
    ///
    /// # Shapes
    /// `embed_tokens: [vocab, hidden]` → `[new_vocab, hidden]`; `lm_head: [hidden, vocab]` →
    /// `[hidden, new_vocab]`
    pub fn resize_token_embeddings(
        self,
        new_vocab_size: usize,
        rows: &[(u32, RowInit)],
        options: &ResizeOptions,
    ) -> Result<Gemma> {
        let current = self.config().vocab_size;
        if new_vocab_size < current {
            return Err(ResizeError::Shrink {
                current,
                requested: new_vocab_size,
            }
            .into());
        }
        let vocab_size = match options.pad_to_multiple_of {
            None => new_vocab_size,
            Some(multiple) => new_vocab_size
                .checked_next_multiple_of(multiple)
                .filter(|_| multiple > 0)
                .ok_or(ResizeError::PadToMultipleOf {
                    pad_to_multiple_of: multiple,
                    new_vocab_size,
                })?,
        };
        self.rebuild_rows(vocab_size, rows, options)
    }

    /// Re-initialises existing rows without changing the vocabulary size (repurposed ids); every
    /// row not named in `rows` stays bit-identical. Means are taken over the matrix as it was
    /// before the call. An untied `lm_head` gets the same treatment on its own columns.
    ///
    /// # Errors
    /// As [`Gemma::resize_token_embeddings`], for the checks on `rows` and the options.
    pub fn init_token_rows(
        self,
        rows: &[(u32, RowInit)],
        options: &ResizeOptions,
    ) -> Result<Gemma> {
        let vocab_size = self.config().vocab_size;
        self.rebuild_rows(vocab_size, rows, options)
    }

    fn rebuild_rows(
        mut self,
        vocab_size: usize,
        rows: &[(u32, RowInit)],
        options: &ResizeOptions,
    ) -> Result<Gemma> {
        let scale = options.noise_variance_scale;
        if !scale.is_finite() || scale < 0.0 {
            return Err(ResizeError::NoiseScale { value: scale }.into());
        }
        if reparameterized(&self.embed_tokens) {
            return Err(ResizeError::Reparameterized {
                param: "model.embed_tokens.weight",
            }
            .into());
        }
        if self.lm_head.as_ref().is_some_and(reparameterized) {
            return Err(ResizeError::Reparameterized {
                param: "lm_head.weight",
            }
            .into());
        }
        let old_vocab = self.config().vocab_size;
        let plan = Plan::new(old_vocab, vocab_size, rows, scale)?;
        if plan.rows.is_empty() {
            return Ok(self);
        }
        tracing::info!(
            old_vocab,
            new_vocab = vocab_size,
            initialised = plan.rows.len(),
            tied = self.lm_head.is_none(),
            "resizing token embeddings"
        );
        // One stream per matrix: the head's noise does not depend on the embedding's row count.
        let rng = |stream| {
            let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
            rng.set_stream(stream);
            rng
        };
        let embed = self.embed_tokens.weight.clone();
        self.embed_tokens.weight = embed.map(|w| plan.apply(w, Layout::Rows, &mut rng(0)));
        if let Some(head) = self.lm_head.as_mut() {
            let weight = head.weight.clone();
            head.weight = weight.map(|w| plan.apply(w, Layout::Columns, &mut rng(1)));
            if let Some(bias) = head.bias.clone() {
                head.bias = Some(bias.map(|b| {
                    let rows = b.unsqueeze_dim::<2>(1);
                    plan.apply(rows, Layout::Rows, &mut rng(2))
                        .squeeze_dim::<1>(1)
                }));
            }
        }
        self.set_vocab_size(vocab_size);
        Ok(self)
    }
}

/// Whether a module's parameters carry a reparameterization (burn visits its state as a nested
/// module of this container type).
fn reparameterized<M: Module>(module: &M) -> bool {
    struct Finder(bool);
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            self.0 |= container_type == "Reparameterization";
        }
    }
    let mut finder = Finder(false);
    module.visit(&mut finder);
    finder.0
}

/// How the vocabulary runs along a matrix: embedding rows, or `lm_head` columns.
#[derive(Clone, Copy)]
enum Layout {
    Rows,
    Columns,
}

impl Layout {
    fn dim(self) -> usize {
        match self {
            Layout::Rows => 0,
            Layout::Columns => 1,
        }
    }
}

/// A validated set of row initialisations, the same for the embedding and an untied head.
struct Plan<'a> {
    old_vocab: usize,
    new_vocab: usize,
    /// Every row that gets a new value, ascending id: the named rows and the unnamed new ones.
    rows: Vec<(u32, Init<'a>)>,
    noise_variance_scale: f64,
}

#[derive(Clone, Copy)]
enum Init<'a> {
    MeanOf(&'a [u32]),
    VocabMean,
}

impl<'a> Plan<'a> {
    fn new(
        old_vocab: usize,
        new_vocab: usize,
        rows: &'a [(u32, RowInit)],
        noise_variance_scale: f64,
    ) -> Result<Self, ResizeError> {
        if u32::try_from(new_vocab).is_err() {
            return Err(ResizeError::VocabTooLarge {
                vocab_size: new_vocab,
            });
        }
        let mut named = BTreeMap::new();
        for (id, init) in rows {
            if *id as usize >= new_vocab {
                return Err(ResizeError::RowOutOfRange {
                    id: *id,
                    vocab_size: new_vocab,
                });
            }
            let init = match init {
                RowInit::MeanOf(ids) if ids.is_empty() => {
                    return Err(ResizeError::EmptyMeanOf { row: *id });
                }
                RowInit::MeanOf(ids) => {
                    if let Some(&bad) = ids.iter().find(|&&p| p as usize >= old_vocab) {
                        return Err(ResizeError::MeanOfOutOfRange {
                            row: *id,
                            id: bad,
                            vocab_size: old_vocab,
                        });
                    }
                    Init::MeanOf(ids)
                }
                RowInit::VocabMean => Init::VocabMean,
            };
            if named.insert(*id, init).is_some() {
                return Err(ResizeError::DuplicateRow { id: *id });
            }
        }
        // new_vocab fits u32 (checked above), so every id below it does.
        for id in old_vocab as u32..new_vocab as u32 {
            named.entry(id).or_insert(Init::VocabMean);
        }
        Ok(Self {
            old_vocab,
            new_vocab,
            rows: named.into_iter().collect(),
            noise_variance_scale,
        })
    }

    /// The matrix grown to the new vocabulary with the planned rows written; other rows are
    /// copied, bit for bit. Computed off the autodiff graph; the result keeps `weight`'s
    /// `require_grad`.
    fn apply(&self, weight: Tensor<2>, layout: Layout, rng: &mut ChaCha8Rng) -> Tensor<2> {
        let require_grad = weight.is_require_grad();
        let weight = weight.detach();
        let vocab_major = match layout {
            Layout::Rows => weight.clone(),
            Layout::Columns => weight.clone().transpose(),
        };
        let (ids, values) = self.values(vocab_major, rng);
        let device = weight.device();
        let dim = layout.dim();
        let mut grown_shape = weight.dims();
        grown_shape[dim] = self.new_vocab - self.old_vocab;
        let grown = if grown_shape[dim] > 0 {
            let padding = Tensor::zeros(grown_shape, (&device, weight.dtype()));
            Tensor::cat(vec![weight, padding], dim)
        } else {
            weight
        };
        let values = match layout {
            Layout::Rows => values,
            Layout::Columns => values.transpose(),
        };
        let n = ids.len();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &device);
        let grown = grown.select_assign(dim, ids, values, IndexingUpdateOp::Assign);
        if require_grad {
            // A new leaf: only leaves can require gradients.
            grown.detach().require_grad()
        } else {
            grown
        }
    }

    /// The planned rows of `old` (`[old_vocab, width]`) and their ids, in matching order:
    /// [`Init::MeanOf`] rows grouped by piece count (one `select` and `mean_dim` per group), then
    /// the [`Init::VocabMean`] rows in ascending id order, which fixes the order of noise draws.
    fn values(&self, old: Tensor<2>, rng: &mut ChaCha8Rng) -> (Vec<i64>, Tensor<2>) {
        let [_, width] = old.dims();
        let device = old.device();
        let mut by_count: BTreeMap<usize, Vec<(u32, &[u32])>> = BTreeMap::new();
        let mut vocab_mean = Vec::new();
        for &(id, init) in &self.rows {
            match init {
                Init::MeanOf(pieces) => {
                    by_count.entry(pieces.len()).or_default().push((id, pieces))
                }
                Init::VocabMean => vocab_mean.push(i64::from(id)),
            }
        }
        let mut ids = Vec::with_capacity(self.rows.len());
        let mut parts = Vec::new();
        for (count, group) in by_count {
            let pieces: Vec<i64> = group
                .iter()
                .flat_map(|(_, p)| p.iter().map(|&x| i64::from(x)))
                .collect();
            let len = pieces.len();
            let index = Tensor::<1, Int>::from_data(TensorData::new(pieces, [len]), &device);
            let mean = old
                .clone()
                .select(0, index)
                .reshape([group.len(), count, width])
                .mean_dim(1)
                .reshape([group.len(), width]);
            ids.extend(group.iter().map(|(id, _)| i64::from(*id)));
            parts.push(mean);
        }
        if !vocab_mean.is_empty() {
            let m = vocab_mean.len();
            let (var, mean) = old.clone().var_mean_bias(0);
            let rows = if self.noise_variance_scale > 0.0 {
                let std = var.sqrt() * self.noise_variance_scale.sqrt();
                let normals = standard_normals(rng, m * width);
                let noise = Tensor::<2>::from_data(
                    TensorData::new(normals, [m, width]),
                    (&device, old.dtype()),
                );
                noise * std + mean
            } else {
                mean.expand([m, width])
            };
            ids.extend(vocab_mean);
            parts.push(rows);
        }
        (ids, Tensor::cat(parts, 0))
    }
}

/// `n` draws from `N(0, 1)` by Box–Muller (rand 0.9 has no normal distribution without
/// `rand_distr`).
fn standard_normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // 1 - [0, 1) = (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * cos) as f32);
        out.push((r * sin) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_normals_have_unit_moments_and_follow_the_seed() {
        let draw = |seed| standard_normals(&mut ChaCha8Rng::seed_from_u64(seed), 20_001);
        let xs = draw(3);
        assert_eq!(xs.len(), 20_001);
        assert_eq!(xs, draw(3));
        assert_ne!(xs, draw(4));
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = xs
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }
}
