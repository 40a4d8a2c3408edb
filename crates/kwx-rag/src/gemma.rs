//! The default [`crate::Embedder`]: pooled hidden states of a kwx Gemma model.
//!
//! A text's vector is the mean, over its tokens (not `<bos>`), of the final-norm hidden states
//! after the first `layers` decoder blocks ([`kwx_core::Gemma::forward_hidden_layers`]),
//! L2-normalised: sentence-transformers' mean pooling (`models/Pooling.py`,
//! `pooling_mode_mean_tokens`) on a decoder that was not trained for it. Fewer layers cost
//! proportionally less.
//!
//! Every sequence the model runs starts with `<bos>`, as Gemma was trained; the `<bos>` state,
//! the same for every text (it attends only to itself), stays out of the mean. Texts longer than
//! [`GemmaEmbedder::max_tokens`] are split into windows, never truncated.

use std::path::Path;

use kwx_core::burn::tensor::{Device, Int, Tensor, TensorData};
use kwx_core::{Gemma, GemmaTokenizer, KvCache};

use crate::embed::Embedder;
use crate::error::{RagError, Result};

/// Mean-pooled, L2-normalised Gemma hidden states as dense vectors.
///
/// ```no_run
/// use kwx_rag::{Embedder, GemmaEmbedder};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let embedder = GemmaEmbedder::from_path(kwx_core::home::gemma3_270m_gguf()?)?.layers(4);
/// let vectors = embedder.embed(&["임산부에게 적합한 해열제", "당뇨병 치료제"])?;
/// assert_eq!(vectors[0].len(), embedder.dim());
/// # Ok(()) }
/// ```
///
/// # Batching
/// Sequences are sorted by length within each [`Embedder::embed`] call and run
/// [`GemmaEmbedder::batch_size`] at a time, left-padded (padding changes no real token's
/// position or attention), so a text's vector does not depend on its neighbours beyond float
/// rounding (well under 1e-5).
///
/// # Long texts
/// A text of more than `max_tokens - 1` tokens is cut into the fewest windows of at most that
/// many tokens, of near-equal length, each run on its own after a `<bos>`; the vector is the
/// mean over all the text's tokens, each seen in the context of its window.
///
/// # Empty texts
/// A text with no tokens (the empty string) is an error naming its index: its vector would be
/// the `<bos>` state alone, the same for every empty text and close to nothing in particular.
pub struct GemmaEmbedder {
    model: Gemma,
    tokenizer: GemmaTokenizer,
    fingerprint: u32,
    layers: usize,
    batch_size: usize,
    max_tokens: usize,
}

// The embedder is shared across threads as is: burn's parameters are `Sync` (lazily initialised
// through a sync once-cell), so no lock serialises queries.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gemma>();
    assert_send_sync::<GemmaTokenizer>();
};

impl GemmaEmbedder {
    /// An embedder over `model` through all its layers, `batch_size` 16, `max_tokens` 256.
    /// `tokenizer` must be the model's own (ids beyond its vocabulary fail at embedding time).
    pub fn new(model: Gemma, tokenizer: GemmaTokenizer) -> Self {
        let fingerprint = fingerprint(&model, &tokenizer);
        let layers = model.config().num_hidden_layers;
        Self {
            model,
            tokenizer,
            fingerprint,
            layers,
            batch_size: 16,
            max_tokens: 256,
        }
    }

    /// Loads a model and its tokenizer with [`Gemma::load_with_tokenizer`] on the default
    /// device: a Hugging Face folder (its `tokenizer.json`) or a `.gguf` file (its own
    /// vocabulary).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (model, tokenizer) = Gemma::load_with_tokenizer(path, None, &Device::default())
            .map_err(|e| RagError::Embedder {
                embedder: format!("gemma:{}", path.display()),
                reason: format!("loading the model: {e}"),
            })?;
        Ok(Self::new(model, tokenizer))
    }

    /// Runs only the first `n` decoder blocks (default: all). Cost falls in proportion, and
    /// shallow is not worse: on Gemma 3 270M, 4 of 18 layers found a dictionary term's own
    /// definition among the 808 first 44% of the time, all 18 layers 28%. The id records `n`,
    /// so vectors from different depths never mix in one index. More layers than the model has
    /// is an error at [`Embedder::embed`].
    #[must_use]
    pub fn layers(mut self, n: usize) -> Self {
        self.layers = n;
        self
    }

    /// Sequences per forward pass (default 16); more is faster per text until memory or padding
    /// costs more. Zero is an error at [`Embedder::embed`].
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// The longest sequence the model runs, `<bos>` included (default 256); longer texts are
    /// embedded in windows (see [Long texts](GemmaEmbedder#long-texts)). Below 2 is an error at
    /// [`Embedder::embed`].
    #[must_use]
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = n;
        self
    }

    /// The model.
    pub fn model(&self) -> &Gemma {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &GemmaTokenizer {
        &self.tokenizer
    }

    fn check(&self) -> Result<()> {
        let model_layers = self.model.config().num_hidden_layers;
        if self.layers > model_layers {
            return Err(RagError::Config {
                field: "layers",
                reason: format!(
                    "{} layers requested, the model has {model_layers}",
                    self.layers
                ),
            });
        }
        if self.batch_size == 0 {
            return Err(RagError::Config {
                field: "batch_size",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_tokens < 2 {
            return Err(RagError::Config {
                field: "max_tokens",
                reason: format!(
                    "{} leaves no room for a token after <bos>: use at least 2",
                    self.max_tokens
                ),
            });
        }
        Ok(())
    }

    fn error(&self, reason: String) -> RagError {
        RagError::Embedder {
            embedder: self.id(),
            reason,
        }
    }

    /// The windows of every text, `<bos>` first, tagged with the text's index.
    fn windows(&self, texts: &[&str]) -> Result<Vec<(usize, Vec<u32>)>> {
        let bos = self.model.config().bos_token_id;
        let span = self.max_tokens - 1;
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let ids = self
                .tokenizer
                .encode(text, false)
                .map_err(|e| self.error(format!("tokenizing text {i}: {e}")))?;
            if ids.is_empty() {
                return Err(self.error(format!("text {i} is empty: nothing to embed")));
            }
            let n = ids.len().div_ceil(span);
            let (base, extra) = (ids.len() / n, ids.len() % n);
            let mut start = 0;
            for w in 0..n {
                let len = base + usize::from(w < extra);
                let mut seq = Vec::with_capacity(len + 1);
                seq.push(bos);
                seq.extend_from_slice(&ids[start..start + len]);
                out.push((i, seq));
                start += len;
            }
        }
        Ok(out)
    }

    /// Sums of the hidden states over the non-`<bos>` tokens of each sequence in one batch.
    fn pooled_sums(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let cfg = self.model.config();
        let seq = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(batch.len());
        let mut valid = Vec::with_capacity(batch.len() * seq);
        let mut pool = Vec::with_capacity(batch.len() * seq);
        for s in batch {
            let pad = seq - s.len();
            let mut row = vec![cfg.pad_token_id; pad];
            row.extend_from_slice(s);
            tokens.push(row);
            valid.extend((0..seq).map(|p| p >= pad));
            pool.extend((0..seq).map(|p| i64::from(p > pad)));
        }
        let mut cache = KvCache::disabled(cfg.num_hidden_layers);
        let hidden = self
            .model
            .forward_hidden_layers(&tokens, Some(&valid), self.layers, &mut cache)
            .map_err(|e| self.error(e.to_string()))?;
        let device = hidden.device();
        let mask = Tensor::<2, Int>::from_data(TensorData::new(pool, [batch.len(), seq]), &device)
            .float()
            .unsqueeze_dim::<3>(2);
        let sums: Vec<f32> = (hidden * mask)
            .sum_dim(1)
            .into_data()
            .try_into_vec()
            .map_err(|e| self.error(format!("reading hidden states: {e:?}")))?;
        Ok(sums.chunks(cfg.hidden_size).map(<[f32]>::to_vec).collect())
    }
}

impl Embedder for GemmaEmbedder {
    /// `gemma:{fingerprint}:mean:L{layers}`, the fingerprint 8 hex digits of a CRC-32 over the
    /// model's config (as JSON), sampled weights (rows of the token embedding spread over the
    /// vocabulary and its last rows, the final norm, the first row of every linear layer, all
    /// as the forward pass sees them, adapters included) and the tokenizer (its vocabulary size
    /// and the ids of a fixed Korean/English probe). Cheap (no pass over all weights) and stable
    /// across runs and machines; a check against accidents, not a cryptographic identity.
    fn id(&self) -> String {
        format!("gemma:{:08x}:mean:L{}", self.fingerprint, self.layers)
    }

    /// The model's hidden size.
    fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Unit-length vectors, one per text, in order; see [`GemmaEmbedder`] for windows and
    /// empty texts.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.check()?;
        let windows = self.windows(texts)?;
        let mut order: Vec<usize> = (0..windows.len()).collect();
        // Stable, so equal lengths keep input order and a call's batches are reproducible.
        order.sort_by_key(|&w| windows[w].1.len());
        let mut sums = vec![vec![0.0f32; self.dim()]; texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&w| windows[w].1.as_slice()).collect();
            for (&w, row) in chunk.iter().zip(self.pooled_sums(&batch)?) {
                for (acc, v) in sums[windows[w].0].iter_mut().zip(row) {
                    *acc += v;
                }
            }
        }
        // The mean's direction is the sum's: normalising makes dividing by the count moot.
        sums.into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if !(norm.is_finite() && norm > 0.0) {
                    return Err(self.error(format!("text {i}: pooled vector has norm {norm}")));
                }
                v.iter_mut().for_each(|x| *x /= norm);
                Ok(v)
            })
            .collect()
    }
}

/// See [`GemmaEmbedder::id`](Embedder::id).
fn fingerprint(model: &Gemma, tokenizer: &GemmaTokenizer) -> u32 {
    const EMBED_ROWS: usize = 16;
    const LAST_ROWS: usize = 4;
    const PROBE: &str = "kwx fingerprint: 임산부에게 적합한 해열제 500mg";
    let mut h = crc32fast::Hasher::new();
    let cfg = model.config();
    h.update(serde_json::to_string(cfg).unwrap_or_default().as_bytes());
    let mut floats = |t: Tensor<2>| {
        if let Ok(v) = t.into_data().try_into_vec::<f32>() {
            v.iter().for_each(|x| h.update(&x.to_le_bytes()));
        }
    };
    let embed = model.embed_tokens.weight.val();
    let [vocab, _] = embed.dims();
    let mut rows: Vec<i64> = (0..EMBED_ROWS)
        .map(|k| (k * vocab / EMBED_ROWS) as i64)
        .collect();
    rows.extend((vocab.saturating_sub(LAST_ROWS)..vocab).map(|r| r as i64));
    let n = rows.len();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &embed.device());
    floats(embed.select(0, idx));
    floats(model.norm.weight.val().unsqueeze_dim(0));
    for layer in &model.layers {
        let (a, m) = (&layer.self_attn, &layer.mlp);
        for lin in [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ] {
            floats(lin.weight.val().narrow(0, 0, 1));
        }
    }
    h.update(&(tokenizer.vocab_size() as u64).to_le_bytes());
    for id in tokenizer.encode(PROBE, false).unwrap_or_default() {
        h.update(&id.to_le_bytes());
    }
    h.finalize()
}
