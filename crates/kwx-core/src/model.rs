//! The Gemma decoder: norm, rotary embedding, attention, MLP, block and KV cache.
//!
//! One implementation for Gemma 1, 2 and 3, driven by [`GemmaConfig`]. It follows transformers'
//! `models/gemma/modeling_gemma.py`, `gemma2/modeling_gemma2.py` and `gemma3/modeling_gemma3.py`
//! (`GemmaRMSNorm`, `rotate_half`, `eager_attention_forward`, the decoder layers) and computes in
//! f32, or with its matrix products in bf16 or f16 ([`Precision`], autocast's split).

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::module::{self, attention};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, FloatDType, Int, Tensor, TensorData};

use crate::config::{Activation, AttentionType, Family, GemmaConfig, Rope};
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::rows::TokenRows;

/// Gemma's RMSNorm: `x * rsqrt(mean(x²) + eps) * (1 + w)`.
///
/// The parameter holds the scale `1 + w` itself, computed once in f32 at load exactly as
/// transformers computes it on every call, and stored the way llama.cpp's GGUF stores it, so
/// both formats load and save without rounding. [`RmsNorm::hf_weight`] gives transformers' `w`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// The scale `1 + w`, `[dim]`.
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    /// A norm of width `dim` with `w = 0` (scale one), as transformers initialises it.
    pub fn new(dim: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            eps,
        }
    }

    /// A norm from transformers' weight `w` (the offset from one).
    pub fn from_hf_weight(w: Tensor<1>, eps: f64) -> Self {
        Self {
            weight: Param::from_tensor(w + 1.0),
            eps,
        }
    }

    /// transformers' weight `w = scale - 1`.
    pub fn hf_weight(&self) -> Tensor<1> {
        self.weight.val() - 1.0
    }

    /// Normalises over the last dimension.
    ///
    /// # Shapes
    /// `[..., dim]` → `[..., dim]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::fused::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// `down(act(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[hidden, intermediate]`.
    pub gate_proj: Linear,
    /// `[hidden, intermediate]`.
    pub up_proj: Linear,
    /// `[intermediate, hidden]`.
    pub down_proj: Linear,
}

impl Mlp {
    /// # Shapes
    /// `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, activation: Activation) -> Tensor<3> {
        self.forward_dropout(x, activation, None, FloatDType::F32)
    }

    /// [`Mlp::forward`] with `dropout` (and the layer's index) on adapter inputs and the
    /// products in `dtype`.
    fn forward_dropout(
        &self,
        x: Tensor<3>,
        activation: Activation,
        dropout: Option<(&AdapterDropout, usize)>,
        dtype: FloatDType,
    ) -> Tensor<3> {
        let drop = |name| dropout.map(|(d, layer)| (d, layer, name));
        let gate = linear(&self.gate_proj, x.clone(), drop("mlp.gate_proj"), dtype);
        let up = linear(&self.up_proj, x, drop("mlp.up_proj"), dtype);
        let hidden = match activation {
            Activation::GeluTanh => crate::fused::gelu_tanh_mul(gate, up),
            Activation::Gelu => gelu(gate) * up,
        };
        linear(&self.down_proj, hidden, drop("mlp.down_proj"), dtype)
    }
}

/// Dropout on the inputs of LoRA factors while training: PEFT's `lora_dropout`, applied where
/// PEFT applies it (`x·W + s·B(A(dropout(x)))`: the frozen path sees `x` itself), with masks
/// drawn from `seed`, so a step run again (a resumed run) draws the same masks. Each adapted
/// linear layer draws its own mask (PEFT gives every module its own `nn.Dropout`).
///
/// Passed to [`Gemma::forward_hidden_with_dropout`]; only weights carrying burn's
/// [`LoraAdapter`](burn::module::LoraAdapter) are affected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdapterDropout {
    p: f64,
    seed: u64,
}

impl AdapterDropout {
    /// Dropout with probability `p` in `[0, 1)`; anything else is an [`Error::InvalidInput`].
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidInput(format!(
                "adapter dropout {p} is not a probability in [0, 1)"
            )));
        }
        Ok(Self { p, seed })
    }

    /// The probability of zeroing an input value.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The seed of this forward pass.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The same probability with another seed (another pass).
    #[must_use]
    pub fn reseeded(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// The mask for linear `module` (`"self_attn.q_proj"`) of decoder layer `layer`, over `len`
    /// input values in row-major order: each `0` with probability `p`, else `1 / (1 - p)`
    /// (inverted dropout, as `torch.nn.Dropout`).
    pub fn mask(&self, layer: usize, module: &str, len: usize) -> Vec<f32> {
        use rand::{RngCore, SeedableRng};
        // FNV-1a over the module's name and layer, mixed with the pass's seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in module.bytes().chain((layer as u64).to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h ^ self.seed);
        // u32 draws below `threshold` are dropped: probability threshold / 2³² = p.
        let threshold = (self.p * 4_294_967_296.0) as u64;
        let keep = (1.0 / (1.0 - self.p)) as f32;
        (0..len)
            .map(|_| {
                if u64::from(rng.next_u32()) < threshold {
                    0.0
                } else {
                    keep
                }
            })
            .collect()
    }
}

/// Which dropout a linear layer's adapter input gets: the pass's, the layer index and the
/// module's name.
type LinearDropout<'a> = Option<(&'a AdapterDropout, usize, &'static str)>;

/// `x·W + b`. A weight carrying burn's LoRA reparameterization (`W + s·a·b`) is computed
/// factored, `x·W + (drop(x)·a)·(s·b)`, as PEFT computes it: `W + s·a·b` and its weight-shaped
/// gradient are never formed (for rank 8 on Gemma 3 270M's layers, the gradient of the factors
/// costs `r/out` of a weight gradient), and the adapter's input can be dropped out.
///
/// The products run in `dtype` (operands cast on the way in, as autocast casts them; a cast to
/// the type a tensor has is free) and the result comes back in `x`'s type.
///
/// The rows of every sequence are one matrix (`[b·s, in]`): each product is one matrix product,
/// and the weight's gradient one product over all the rows. As `[b, s, in]` burn runs a batched
/// product per sequence and, for the weight's gradient, `b` products summed afterwards (small
/// products, the weight packed `b` times); on the 5.9M-parameter model that cost a full
/// fine-tuning step a fifth of its time.
fn linear(lin: &Linear, x: Tensor<3>, dropout: LinearDropout<'_>, dtype: FloatDType) -> Tensor<3> {
    let [b, s, inp] = x.dims();
    let x = x.reshape([b * s, inp]);
    let out = x.dtype();
    let bias = lin.bias.as_ref().map(|b| b.val().cast(dtype));
    let y = match lin.weight.adapter() {
        None => module::linear(x.cast(dtype), lin.weight.val().cast(dtype), bias).cast(out),
        Some(lora) => {
            let y = module::linear(x.clone().cast(dtype), lin.weight.base().cast(dtype), bias);
            let x = match dropout {
                Some((d, layer, name)) if d.p > 0.0 => {
                    let dims = x.dims();
                    let mask = d.mask(layer, name, dims.iter().product());
                    let mask = Tensor::<2>::from_data(TensorData::new(mask, dims), &x.device());
                    x.clone() * mask.cast(x.dtype())
                }
                _ => x,
            };
            let down = module::linear(x.cast(dtype), lora.a.val().cast(dtype), None);
            let up = lora.b.val().mul_scalar(lora.scale).cast(dtype);
            (y + module::linear(down, up, None)).cast(out)
        }
    };
    let [_, o] = y.dims();
    y.reshape([b, s, o])
}

/// Multi-head attention with grouped key/value heads (MHA, GQA and MQA by config).
#[derive(Module, Debug)]
pub struct Attention {
    /// `[hidden, heads * head_dim]`.
    pub q_proj: Linear,
    /// `[hidden, kv_heads * head_dim]`.
    pub k_proj: Linear,
    /// `[hidden, kv_heads * head_dim]`.
    pub v_proj: Linear,
    /// `[heads * head_dim, hidden]`.
    pub o_proj: Linear,
    /// Gemma 3 per-head query norm.
    pub q_norm: Option<RmsNorm>,
    /// Gemma 3 per-head key norm.
    pub k_norm: Option<RmsNorm>,
}

/// One decoder block. Field names are transformers'; in Gemma 1 `post_attention_layernorm` is the
/// norm *before* the MLP and the two feed-forward norms are absent.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Attention.
    pub self_attn: Attention,
    /// MLP.
    pub mlp: Mlp,
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Gemma 1: norm before the MLP; Gemma 2/3: norm on the attention output.
    pub post_attention_layernorm: RmsNorm,
    /// Gemma 2/3: norm before the MLP.
    pub pre_feedforward_layernorm: Option<RmsNorm>,
    /// Gemma 2/3: norm on the MLP output.
    pub post_feedforward_layernorm: Option<RmsNorm>,
}

/// A Gemma causal language model.
#[derive(Module, Debug)]
pub struct Gemma {
    /// Token embedding `[vocab, hidden]`; also the output projection when tied.
    pub embed_tokens: Embedding,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Output projection `[hidden, vocab]` when not tied to the embedding.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: GemmaConfig,
    #[module(skip)]
    precision: Precision,
}

/// Cached keys and values of one layer, `[batch, kv_heads, slots, head_dim]`.
#[derive(Debug, Clone)]
struct LayerCache {
    keys: Tensor<4>,
    values: Tensor<4>,
}

/// Keys and values of past tokens for incremental decoding.
///
/// Sliding layers keep only the `window - 1` most recent slots, which is all any later query can
/// see. A slot is one column of the (left-padded) batch; padded slots are remembered as invalid
/// and masked out.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// Per row, whether each slot so far holds a real token.
    valid: Vec<Vec<bool>>,
    /// Per row, the number of real tokens so far (the next position id).
    seen: Vec<usize>,
    store: bool,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            valid: Vec::new(),
            seen: Vec::new(),
            store: true,
        }
    }

    /// A cache that tracks positions but keeps no keys or values: for one-shot forwards
    /// (scoring, training), where storing them would only cost memory.
    pub fn disabled(num_layers: usize) -> Self {
        Self {
            store: false,
            ..Self::new(num_layers)
        }
    }

    /// Slots processed so far (including padding).
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    /// Whether nothing has been processed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size the cache holds, 0 when empty.
    pub fn batch_size(&self) -> usize {
        self.valid.len()
    }

    /// Drops every row except those listed, in that order (for batched generation).
    pub fn retain_rows(&mut self, rows: &[usize]) {
        if rows.len() == self.batch_size() && rows.iter().enumerate().all(|(i, r)| i == *r) {
            return;
        }
        self.valid = rows.iter().map(|&r| self.valid[r].clone()).collect();
        self.seen = rows.iter().map(|&r| self.seen[r]).collect();
        for layer in self.layers.iter_mut().flatten() {
            let device = layer.keys.device();
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(
                    rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                    [rows.len()],
                ),
                &device,
            );
            layer.keys = layer.keys.clone().select(0, idx.clone());
            layer.values = layer.values.clone().select(0, idx);
        }
    }
}

/// Per-forward tables shared by every layer: RoPE angles and attention masks.
struct StepContext {
    cos_global: Tensor<4>,
    sin_global: Tensor<4>,
    cos_local: Tensor<4>,
    sin_local: Tensor<4>,
    mask_global: Option<Tensor<4, Bool>>,
    mask_local: Option<Tensor<4, Bool>>,
    dropout: Option<AdapterDropout>,
}

impl GemmaConfig {
    /// A randomly initialised model (normal embeddings, Kaiming linears, zero norms), for tests and
    /// benchmarks; load real weights with [`crate::loader`].
    pub fn init(&self, device: &Device) -> Result<Gemma> {
        self.validate()?;
        let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        let norm = |d| RmsNorm::new(d, self.rms_norm_eps, device);
        let (h, hd) = (self.hidden_size, self.head_dim);
        let sandwich = self.family != Family::Gemma1;
        let qk_norm = self.family == Family::Gemma3;
        let layers = (0..self.num_hidden_layers)
            .map(|_| DecoderLayer {
                self_attn: Attention {
                    q_proj: linear(h, self.num_attention_heads * hd),
                    k_proj: linear(h, self.num_key_value_heads * hd),
                    v_proj: linear(h, self.num_key_value_heads * hd),
                    o_proj: linear(self.num_attention_heads * hd, h),
                    q_norm: qk_norm.then(|| norm(hd)),
                    k_norm: qk_norm.then(|| norm(hd)),
                },
                mlp: Mlp {
                    gate_proj: linear(h, self.intermediate_size),
                    up_proj: linear(h, self.intermediate_size),
                    down_proj: linear(self.intermediate_size, h),
                },
                input_layernorm: norm(h),
                post_attention_layernorm: norm(h),
                pre_feedforward_layernorm: sandwich.then(|| norm(h)),
                post_feedforward_layernorm: sandwich.then(|| norm(h)),
            })
            .collect();
        let embed_tokens = EmbeddingConfig::new(self.vocab_size, h)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        Ok(Gemma {
            embed_tokens,
            layers,
            norm: norm(h),
            lm_head: (!self.tie_word_embeddings).then(|| linear(h, self.vocab_size)),
            config: self.clone(),
            precision: Precision::F32,
        })
    }
}

impl Gemma {
    /// Assembles a model from its parts; used by the loaders.
    pub(crate) fn from_parts(
        config: GemmaConfig,
        embed_tokens: Embedding,
        layers: Vec<DecoderLayer>,
        norm: RmsNorm,
        lm_head: Option<Linear>,
    ) -> Self {
        Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config,
            precision: Precision::F32,
        }
    }

    /// The model's configuration.
    pub fn config(&self) -> &GemmaConfig {
        &self.config
    }

    /// Records a new vocabulary size once [`crate::resize`] has rebuilt the embedding (and head).
    pub(crate) fn set_vocab_size(&mut self, vocab_size: usize) {
        self.config.vocab_size = vocab_size;
    }

    /// The type matrix products run in ([`Precision::F32`] unless set).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The model with its matrix products in `precision` from the next forward on (see
    /// [`Precision`]); weights keep their types. An error names a device whose backend does not
    /// compute in it.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        precision.check_device(&self.device())?;
        self.precision = precision;
        Ok(self)
    }

    /// Stores every frozen matrix (embedding, linear weights: parameters of two or more
    /// dimensions that take no gradient) in the model's precision, once, instead of casting it
    /// in every product; norm scales and trainable parameters keep their type (f32 master
    /// weights). Outside autodiff every parameter is frozen. Under [`Precision::F32`] the model
    /// comes back as it was. Cast before attaching adapters: the mapping rebuilds each
    /// parameter.
    ///
    /// The embedding lookup then yields the half type too; it is widened to f32 as it enters the
    /// residual stream, as every product's result is.
    pub fn cast_frozen_matrices(self) -> Self {
        struct Cast(FloatDType);
        impl burn::module::ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                if D < 2 || param.base().is_require_grad() {
                    return param;
                }
                param.map(|t| t.cast(self.0))
            }
        }
        if !self.precision.is_half() {
            return self;
        }
        let dtype = self.precision.dtype();
        self.map(&mut Cast(dtype))
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// A fresh cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Checks token ids against the vocabulary.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab_size = self.config.vocab_size;
        match ids.iter().position(|&id| id as usize >= vocab_size) {
            Some(position) => Err(Error::TokenOutOfVocab {
                id: ids[position],
                position,
                vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// Logits for every position of one unpadded sequence, without a cache.
    ///
    /// # Shapes
    /// `ids: [seq]` → `[seq, vocab]`
    pub fn logits(&self, ids: &[u32]) -> Result<Tensor<2>> {
        let mut cache = KvCache::disabled(self.layers.len());
        let hidden = self.forward_hidden(&[ids.to_vec()], None, &mut cache)?;
        Ok(self.project(hidden).squeeze_dim::<2>(0))
    }

    /// Runs `tokens` (one row per sequence, all of equal length) through the decoder after what
    /// `cache` already holds, and returns the final-norm hidden states.
    ///
    /// `valid` marks real tokens (`false` for left padding), one flag per token, row-major; `None`
    /// means all real. Positions count real tokens only, as transformers derives `position_ids`
    /// from the attention mask, so a left-padded row computes what the row would alone.
    ///
    /// # Shapes
    /// `tokens: [batch][seq]` → `[batch, seq, hidden]`
    pub fn forward_hidden(
        &self,
        tokens: &[Vec<u32>],
        valid: Option<&[bool]>,
        cache: &mut KvCache,
    ) -> Result<Tensor<3>> {
        self.forward_hidden_layers(tokens, valid, self.layers.len(), cache)
    }

    /// [`Gemma::forward_hidden`] through only the first `layers` decoder blocks, then the final
    /// norm: cheaper hidden states for embeddings. This is the final norm of transformers'
    /// `hidden_states[layers]` (`output_hidden_states=True`); `layers` equal to the model's count
    /// is exactly `forward_hidden`, 0 the normed, scaled token embedding. More layers than the
    /// model has is an [`Error::InvalidInput`].
    ///
    /// A storing cache only ever sees the layers run, so it must keep being used with the same
    /// `layers`; a cache filled through another count is refused.
    ///
    /// # Shapes
    /// `tokens: [batch][seq]` → `[batch, seq, hidden]`
    pub fn forward_hidden_layers(
        &self,
        tokens: &[Vec<u32>],
        valid: Option<&[bool]>,
        layers: usize,
        cache: &mut KvCache,
    ) -> Result<Tensor<3>> {
        self.run_layers(tokens, valid, layers, cache, None)
    }

    /// [`Gemma::forward_hidden`] through every layer with `dropout` on the inputs of LoRA
    /// factors (training; without a cache). Weights without burn's LoRA reparameterization
    /// compute as in `forward_hidden`.
    ///
    /// # Shapes
    /// `tokens: [batch][seq]` → `[batch, seq, hidden]`
    pub fn forward_hidden_with_dropout(
        &self,
        tokens: &[Vec<u32>],
        valid: Option<&[bool]>,
        dropout: AdapterDropout,
    ) -> Result<Tensor<3>> {
        let mut cache = KvCache::disabled(self.layers.len());
        self.run_layers(tokens, valid, self.layers.len(), &mut cache, Some(dropout))
    }

    fn run_layers(
        &self,
        tokens: &[Vec<u32>],
        valid: Option<&[bool]>,
        layers: usize,
        cache: &mut KvCache,
        dropout: Option<AdapterDropout>,
    ) -> Result<Tensor<3>> {
        let batch = tokens.len();
        let seq = tokens.first().map_or(0, Vec::len);
        if layers > self.layers.len() {
            return Err(Error::InvalidInput(format!(
                "{layers} layers requested, the model has {}",
                self.layers.len()
            )));
        }
        if batch == 0 || seq == 0 {
            return Err(Error::InvalidInput("no tokens to run".into()));
        }
        if let Some(row) = tokens.iter().position(|r| r.len() != seq) {
            return Err(Error::InvalidInput(format!(
                "row {row} has {} tokens, row 0 has {seq}: pad the batch",
                tokens[row].len()
            )));
        }
        if let Some(v) = valid
            && v.len() != batch * seq
        {
            return Err(Error::InvalidInput(format!(
                "{} validity flags for {} tokens",
                v.len(),
                batch * seq
            )));
        }
        if !cache.is_empty() && cache.batch_size() != batch {
            return Err(Error::InvalidInput(format!(
                "cache holds {} rows, input has {batch}",
                cache.batch_size()
            )));
        }
        if cache.layers.len() != self.layers.len() {
            return Err(Error::InvalidInput(format!(
                "cache made for {} layers, model has {}",
                cache.layers.len(),
                self.layers.len()
            )));
        }
        if cache.store && !cache.is_empty() {
            // Layers past the count that filled the cache hold nothing: continuing through
            // them would attend to no past at all.
            let filled = cache.layers.iter().take_while(|l| l.is_some()).count();
            if filled != layers || cache.layers[filled..].iter().any(Option::is_some) {
                return Err(Error::InvalidInput(format!(
                    "cache filled through {filled} layers, this forward runs {layers}"
                )));
            }
        }
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        self.check_ids(&flat)?;

        let device = self.device();
        let mut ctx = self.step_context(batch, seq, valid, cache, &device);
        ctx.dropout = dropout;
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(
                flat.iter().map(|&t| t as i64).collect::<Vec<_>>(),
                [batch, seq],
            ),
            &device,
        );
        // The embedding enters in the products' type, as a stored half matrix gives it (see
        // `cast_frozen_matrices`), and is widened to f32 for the residual stream.
        let x = self.embed(ids, &flat).cast(self.precision.dtype());
        let mut x = x.cast(FloatDType::F32) * (self.config.hidden_size as f64).sqrt();
        for (i, layer) in self.layers.iter().take(layers).enumerate() {
            x = self.layer_forward(layer, i, x, &ctx, cache);
        }
        Ok(self.norm.forward(x))
    }

    /// Token embeddings of `ids` (`flat` on the host): replaced rows ([`TokenRows`]) are
    /// swapped into a lookup of the frozen matrix instead of composing the whole matrix.
    ///
    /// # Shapes
    /// `ids: [batch, seq]` → `[batch, seq, hidden]`
    fn embed(&self, ids: Tensor<2, Int>, flat: &[u32]) -> Tensor<3> {
        let weight = &self.embed_tokens.weight;
        match weight.reparameterization::<TokenRows>() {
            Some(rows) => rows.embed(weight.base(), ids, flat),
            None => self.embed_tokens.forward(ids),
        }
    }

    /// Projects hidden states to vocabulary logits (tied or separate head, final softcap).
    ///
    /// # Shapes
    /// `[batch, seq, hidden]` → `[batch, seq, vocab]`
    pub fn project(&self, hidden: Tensor<3>) -> Tensor<3> {
        let out = hidden.dtype();
        let dtype = self.precision.dtype();
        let logits = match &self.lm_head {
            Some(head) => linear(head, hidden, None, dtype),
            None => {
                let hidden = hidden.cast(dtype);
                // E · hᵀ keeps the [vocab, hidden] embedding contiguous (burn's `linear` with the
                // transposed view copied the whole matrix on every call).
                let [b, s, h] = hidden.dims();
                let flat = hidden.reshape([b * s, h]);
                let flat_t = flat.clone().transpose();
                let weight = &self.embed_tokens.weight;
                let rows = weight.reparameterization::<TokenRows>();
                // Replaced rows enter as their own columns below, never through `E'`.
                let embed = if rows.is_some() {
                    weight.base()
                } else {
                    weight.val()
                }
                .cast(dtype);
                let threads = cpu_split_threads(&embed.device());
                let logits_t = if b * s <= 8 && threads > 1 {
                    // Decoding: a matrix-vector product that gemm runs on one thread, bound by
                    // one core's memory bandwidth; vocabulary slices on every thread halve it
                    // on 2 cores (Gemma 3 270M: 52 → 27 ms per token).
                    use rayon::prelude::*;
                    let vocab = self.config.vocab_size;
                    let chunk = vocab.div_ceil(threads);
                    let parts: Vec<Tensor<2>> = (0..vocab.div_ceil(chunk))
                        .into_par_iter()
                        .map(|i| {
                            let len = chunk.min(vocab - i * chunk);
                            embed
                                .clone()
                                .narrow(0, i * chunk, len)
                                .matmul(flat_t.clone())
                        })
                        .collect();
                    Tensor::cat(parts, 0)
                } else {
                    embed.matmul(flat_t)
                };
                let logits = logits_t.transpose();
                let logits = match rows {
                    Some(rows) => rows.replace_columns(flat, logits),
                    None => logits,
                };
                logits.reshape([b, s, self.config.vocab_size]).cast(out)
            }
        };
        match self.config.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// Records the new slots in the cache and builds the RoPE tables and masks for them.
    fn step_context(
        &self,
        batch: usize,
        seq: usize,
        valid: Option<&[bool]>,
        cache: &mut KvCache,
        device: &Device,
    ) -> StepContext {
        let past = cache.len();
        if cache.is_empty() {
            cache.valid = vec![Vec::new(); batch];
            cache.seen = vec![0; batch];
        }
        let mut positions = Vec::with_capacity(batch * seq);
        for b in 0..batch {
            for s in 0..seq {
                let is_valid = valid.is_none_or(|v| v[b * seq + s]);
                cache.valid[b].push(is_valid);
                if is_valid {
                    positions.push(cache.seen[b] as f32);
                    cache.seen[b] += 1;
                } else {
                    positions.push(0.0);
                }
            }
        }
        let total = past + seq;
        let window = self.config.sliding_window.unwrap_or(usize::MAX);
        let local_start = past - past.min(window.saturating_sub(1));
        let hd = self.config.head_dim;
        let (cos_global, sin_global) =
            rope_tables(&self.config.rope_global, &positions, batch, seq, hd, device);
        let (cos_local, sin_local) = if self.config.rope_local == self.config.rope_global {
            (cos_global.clone(), sin_global.clone())
        } else {
            rope_tables(&self.config.rope_local, &positions, batch, seq, hd, device)
        };
        let has_local = self.config.layer_types.contains(&AttentionType::Sliding);
        let mask_global = build_mask(&cache.valid, past, seq, 0, total, usize::MAX, device);
        let mask_local = if has_local {
            build_mask(&cache.valid, past, seq, local_start, total, window, device)
        } else {
            None
        };
        StepContext {
            cos_global,
            sin_global,
            cos_local,
            sin_local,
            mask_global,
            mask_local,
            dropout: None,
        }
    }

    fn layer_forward(
        &self,
        layer: &DecoderLayer,
        index: usize,
        x: Tensor<3>,
        ctx: &StepContext,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let cfg = &self.config;
        let h = layer.input_layernorm.forward(x.clone());
        let h = self.attention_forward(&layer.self_attn, index, h, ctx, cache);
        let drop = ctx.dropout.as_ref().map(|d| (d, index));
        let dtype = self.precision.dtype();
        match (
            &layer.pre_feedforward_layernorm,
            &layer.post_feedforward_layernorm,
        ) {
            (Some(pre), Some(post)) => {
                let x = x + layer.post_attention_layernorm.forward(h);
                let m =
                    layer
                        .mlp
                        .forward_dropout(pre.forward(x.clone()), cfg.activation, drop, dtype);
                x + post.forward(m)
            }
            _ => {
                let x = x + h;
                let m = layer.mlp.forward_dropout(
                    layer.post_attention_layernorm.forward(x.clone()),
                    cfg.activation,
                    drop,
                    dtype,
                );
                x + m
            }
        }
    }

    fn attention_forward(
        &self,
        attn: &Attention,
        index: usize,
        x: Tensor<3>,
        ctx: &StepContext,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let cfg = &self.config;
        let [batch, seq, _] = x.dims();
        let (heads, kv_heads, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        // Heads as `[batch, seq, heads, head_dim]`: the per-head norms and RoPE read rows of
        // `head_dim` in memory order there; the heads move before the sequence afterwards.
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, hd]);
        let drop = |name| ctx.dropout.as_ref().map(|d| (d, index, name));
        let dtype = self.precision.dtype();
        let mut q = split(
            linear(&attn.q_proj, x.clone(), drop("self_attn.q_proj"), dtype),
            heads,
        );
        let mut k = split(
            linear(&attn.k_proj, x.clone(), drop("self_attn.k_proj"), dtype),
            kv_heads,
        );
        let v = split(
            linear(&attn.v_proj, x, drop("self_attn.v_proj"), dtype),
            kv_heads,
        )
        .swap_dims(1, 2);
        if let Some(norm) = &attn.q_norm {
            q = norm.forward(q);
        }
        if let Some(norm) = &attn.k_norm {
            k = norm.forward(k);
        }
        let sliding = cfg.layer_types[index] == AttentionType::Sliding;
        let (cos, sin, mask) = if sliding {
            (&ctx.cos_local, &ctx.sin_local, &ctx.mask_local)
        } else {
            (&ctx.cos_global, &ctx.sin_global, &ctx.mask_global)
        };
        // Attention (and the cache) in the products' type: scores and the weighted sum are
        // products; the backend's kernel keeps its softmax in f32.
        let q = crate::fused::rope(q, cos, sin).swap_dims(1, 2).cast(dtype);
        let k = crate::fused::rope(k, cos, sin).swap_dims(1, 2).cast(dtype);
        let v = v.cast(dtype);

        let (k, v) = match &cache.layers[index] {
            // A cache filled under another precision joins in this one's type.
            Some(past) => (
                Tensor::cat(vec![past.keys.clone().cast(dtype), k], 2),
                Tensor::cat(vec![past.values.clone().cast(dtype), v], 2),
            ),
            None => (k, v),
        };
        if cache.store {
            let slots = k.dims()[2];
            let keep = if sliding {
                slots.min(cfg.sliding_window.unwrap_or(usize::MAX).saturating_sub(1))
            } else {
                slots
            };
            cache.layers[index] = Some(LayerCache {
                keys: k.clone().narrow(2, slots - keep, keep),
                values: v.clone().narrow(2, slots - keep, keep),
            });
        }
        let kv_len = k.dims()[2];
        let groups = cfg.kv_groups();
        let repeat = |t: Tensor<4>| {
            if groups == 1 {
                t
            } else {
                t.unsqueeze_dim::<5>(2)
                    .expand([batch, kv_heads, groups, kv_len, hd])
                    .reshape([batch, heads, kv_len, hd])
            }
        };
        let scale = cfg.query_pre_attn_scalar.powf(-0.5);
        let fused =
            crate::fused::attention(&q, &k, &v, mask.as_ref(), scale, cfg.attn_logit_softcapping);
        let out = fused.unwrap_or_else(|| {
            let mask = mask
                .as_ref()
                .map(|m| m.clone().expand([batch, heads, seq, kv_len]));
            let options = AttentionModuleOptions {
                scale: Some(scale),
                softcap: cfg.attn_logit_softcapping,
                is_causal: false,
            };
            attention(q, repeat(k), repeat(v), mask, None, options)
        });
        linear(
            &attn.o_proj,
            out.swap_dims(1, 2).reshape([batch, seq, heads * hd]),
            drop("self_attn.o_proj"),
            dtype,
        )
        .cast(FloatDType::F32)
    }
}

/// Threads to split a matrix-vector product across: rayon's pool on the flex (CPU) device, 1
/// elsewhere (GPU kernels parallelise on their own).
fn cpu_split_threads(device: &Device) -> usize {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return rayon::current_num_threads();
    }
    let _ = device;
    1
}

/// cos and sin of the rotary angles for each position, `[batch, seq, 1, head_dim]`, computed in
/// f32 the way transformers does (`inv_freq = 1 / base^(2i/d)`, angle = position · inv_freq).
fn rope_tables(
    rope: &Rope,
    positions: &[f32],
    batch: usize,
    seq: usize,
    head_dim: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let half = head_dim / 2;
    let base = rope.theta as f32;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32) / rope.linear_factor as f32)
        .collect();
    let mut cos = Vec::with_capacity(positions.len() * head_dim);
    let mut sin = Vec::with_capacity(positions.len() * head_dim);
    for &p in positions {
        for _ in 0..2 {
            for &f in &inv_freq {
                let angle = p * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    let shape = [batch, seq, 1, head_dim];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

/// The attention mask for queries at slots `past..past+seq` over key slots `key_start..total`:
/// `true` hides a key that is in the future, padding, or `window` or more slots back. A padded
/// query sees only itself, so no row is empty (an empty row would put NaNs in the cache).
/// Returns `None` when nothing is hidden.
fn build_mask(
    valid: &[Vec<bool>],
    past: usize,
    seq: usize,
    key_start: usize,
    total: usize,
    window: usize,
    device: &Device,
) -> Option<Tensor<4, Bool>> {
    let batch = valid.len();
    let keys = total - key_start;
    let mut mask = Vec::with_capacity(batch * seq * keys);
    let mut any = false;
    for row in valid {
        for q in past..past + seq {
            for k in key_start..total {
                let hidden = if !row[q] {
                    k != q
                } else {
                    k > q || q - k >= window || !row[k]
                };
                any |= hidden;
                mask.push(hidden);
            }
        }
    }
    any.then(|| Tensor::from_data(TensorData::new(mask, [batch, 1, seq, keys]), device))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test helpers
    use super::*;

    const F32: FloatDType = FloatDType::F32;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// An `[inp, out]` matrix of `v` (row-major).
    fn matrix(v: &[f32], [inp, out]: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [inp, out]), &Device::default())
    }

    /// A bias-free linear `w: [inp, out]`, with burn's LoRA `a: [inp, r]`, `b: [r, out]`,
    /// `scale` attached when `lora` is given.
    fn linear_with(
        w: &[f32],
        [inp, out]: [usize; 2],
        lora: Option<(&[f32], &[f32], usize, f64)>,
    ) -> Linear {
        let lin = Linear {
            weight: Param::from_tensor(matrix(w, [inp, out])),
            bias: None,
        };
        let Some((a, b, r, scale)) = lora else {
            return lin;
        };
        let adapter = burn::module::LoraAdapter {
            a: Param::from_tensor(matrix(a, [inp, r])),
            b: Param::from_tensor(matrix(b, [r, out])),
            scale,
        };
        let lin = lin.apply_reparameterization(crate::OnWeight::new(adapter));
        assert!(lin.weight.adapter().is_some());
        lin
    }

    #[test]
    fn adapter_dropout_masks_are_seeded_inverted_and_per_module() {
        let d = AdapterDropout::new(0.25, 7).unwrap();
        let m = d.mask(3, "self_attn.q_proj", 40_000);
        let zeros = m.iter().filter(|&&v| v == 0.0).count();
        // Binomial(40 000, 0.25): sd 86.6; five of them.
        assert!((zeros as f64 - 10_000.0).abs() < 433.0, "{zeros} zeros");
        let keep = (1.0f64 / 0.75) as f32;
        assert!(m.iter().all(|&v| v == 0.0 || v == keep));
        assert_eq!(m, d.mask(3, "self_attn.q_proj", 40_000));
        assert_ne!(m, d.mask(3, "self_attn.k_proj", 40_000));
        assert_ne!(m, d.mask(4, "self_attn.q_proj", 40_000));
        let other = AdapterDropout::new(0.25, 8).unwrap();
        assert_ne!(m, other.mask(3, "self_attn.q_proj", 40_000));
        let none = AdapterDropout::new(0.0, 7).unwrap();
        assert!(none.mask(0, "mlp.up_proj", 1000).iter().all(|&v| v == 1.0));
        for p in [1.0, 1.5, -0.1, f64::NAN] {
            assert!(
                matches!(AdapterDropout::new(p, 0), Err(Error::InvalidInput(_))),
                "{p}"
            );
        }
    }

    /// The factored LoRA linear against plain f64 arithmetic: `x·W + s·((x⊙m)·a)·b`, the mask
    /// only on the adapter's input; without dropout it equals burn's composed `x·(W + s·a·b)`.
    #[test]
    fn lora_linear_is_factored_and_drops_only_the_adapter_input() {
        let device = Device::default();
        let (rows, inp, out, r, scale) = (6, 7, 5, 3, 1.75);
        let (w, a, b, x) = (
            values(inp * out, 1),
            values(inp * r, 2),
            values(r * out, 3),
            values(rows * inp, 4),
        );
        let lin = linear_with(&w, [inp, out], Some((&a, &b, r, scale)));
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [2, 3, inp]), &device);
        let expect = |mask: &[f32]| -> Vec<f64> {
            let mut y = vec![0.0f64; rows * out];
            for i in 0..rows {
                for o in 0..out {
                    let mut base = 0.0;
                    for k in 0..inp {
                        base += f64::from(x[i * inp + k]) * f64::from(w[k * out + o]);
                    }
                    let mut side = 0.0;
                    for j in 0..r {
                        let mut down = 0.0;
                        for k in 0..inp {
                            down += f64::from(x[i * inp + k] * mask[i * inp + k])
                                * f64::from(a[k * r + j]);
                        }
                        side += down * f64::from(b[j * out + o]);
                    }
                    y[i * out + o] = base + scale * side;
                }
            }
            y
        };
        let close = |got: Tensor<3>, want: &[f64]| {
            let got: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
            for (g, w) in got.iter().zip(want) {
                assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
            }
        };
        let ones = vec![1.0; rows * inp];
        close(linear(&lin, xt.clone(), None, F32), &expect(&ones));
        close(lin.forward(xt.clone()), &expect(&ones));
        let d = AdapterDropout::new(0.5, 11).unwrap();
        let mask = d.mask(2, "mlp.up_proj", rows * inp);
        assert!(mask.contains(&0.0) && mask.contains(&2.0));
        close(
            linear(&lin, xt.clone(), Some((&d, 2, "mlp.up_proj")), F32),
            &expect(&mask),
        );
        // A linear without an adapter ignores dropout.
        let plain = linear_with(&w, [inp, out], None);
        let zeros = vec![0.0; r * out];
        let zero_side = linear_with(&w, [inp, out], Some((&a, &zeros, r, scale)));
        let want: Vec<f32> = plain.forward(xt.clone()).into_data().try_to_vec().unwrap();
        let got: Vec<f32> = linear(&plain, xt.clone(), Some((&d, 2, "mlp.up_proj")), F32)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(got, want);
        close(
            linear(&zero_side, xt, Some((&d, 2, "mlp.up_proj")), F32),
            &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        );
    }

    /// In bf16 and f16 every product takes rounded operands and gives a rounded result, as
    /// autocast computes: the LoRA linear against f64 arithmetic that rounds where the half
    /// types round (`x`, `W`, `a`, `s·b`, each product, the sum). Every output is a value of the
    /// half type (it went through it) and within one of its steps of the emulation; most are
    /// equal to it.
    #[test]
    fn half_precision_linear_rounds_operands_and_every_product() {
        let device = Device::default();
        let (rows, inp, out, r, scale) = (8, 24, 12, 4, 1.75f32);
        let (w, a, b, x) = (
            values(inp * out, 5),
            values(inp * r, 6),
            values(r * out, 7),
            values(rows * inp, 8),
        );
        let lin = linear_with(&w, [inp, out], Some((&a, &b, r, f64::from(scale))));
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [2, 4, inp]), &device);
        type Round = fn(f32) -> f32;
        let cases: [(FloatDType, Round, f32); 2] = [
            (
                FloatDType::BF16,
                |v| half::bf16::from_f32(v).to_f32(),
                2f32.powi(-8),
            ),
            (
                FloatDType::F16,
                |v| half::f16::from_f32(v).to_f32(),
                2f32.powi(-11),
            ),
        ];
        for (dtype, round, unit) in cases {
            let rd = |v: &[f32]| v.iter().map(|&v| round(v)).collect::<Vec<_>>();
            let sb: Vec<f32> = b.iter().map(|&v| round(v * scale)).collect();
            let (x, w, a) = (rd(&x), rd(&w), rd(&a));
            let product = |lhs: &[f32], rhs: &[f32], n: usize, k: usize, m: usize| {
                let mut y = vec![0.0f32; n * m];
                for i in 0..n {
                    for o in 0..m {
                        let s: f64 = (0..k)
                            .map(|j| f64::from(lhs[i * k + j]) * f64::from(rhs[j * m + o]))
                            .sum();
                        y[i * m + o] = round(s as f32);
                    }
                }
                y
            };
            let base = product(&x, &w, rows, inp, out);
            let down = product(&x, &a, rows, inp, r);
            let side = product(&down, &sb, rows, r, out);
            let want: Vec<f32> = base.iter().zip(&side).map(|(p, q)| round(p + q)).collect();
            let got = linear(&lin, xt.clone(), None, dtype);
            assert_eq!(got.dtype(), burn::tensor::DType::F32, "{dtype:?}");
            let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
            let mut equal = 0;
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(round(*g), *g, "{dtype:?}: {g} is not a value of the type");
                assert!(
                    (g - w).abs() <= w.abs() * unit * 2.0 + 1e-6,
                    "{dtype:?}: {g} vs {w}"
                );
                equal += usize::from(g == w);
            }
            assert!(
                equal * 10 >= got.len() * 9,
                "{dtype:?}: {equal} of {}",
                got.len()
            );
        }
    }
}
