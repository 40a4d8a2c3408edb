//! One optimizer step, and the pieces a run (or a benchmark) sets up before it: the trainable
//! model and the optimizer.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use kwx_core::{AdapterDropout, Gemma};
use serde::{Deserialize, Serialize};

use super::config::{Mode, TrainConfig};
use super::loss::{MicroBatch, completion_loss_sum_scaled};
use crate::adapter::Adapter;
use crate::config::LoraConfig;
use crate::error::{Error, Result};
use crate::inject::{attach, stable_id};

/// What one optimizer step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss per label token over the step's micro-batches.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Label tokens in the step.
    pub label_tokens: usize,
    /// Whether the update was skipped: with loss scaling, a step whose scaled gradients
    /// overflowed changes no weight (the scaler backs off instead).
    pub skipped: bool,
}

/// Dynamic loss scaling for f16 training, as PyTorch's `GradScaler` does it: the loss is
/// multiplied by `scale` before the backward pass, so gradients that f16 would flush to zero
/// stay representable, and the gradients are divided by it before clipping and the update. A
/// step whose gradients overflow is skipped and halves the scale; `growth_interval` finite
/// steps in a row double it. bf16 has f32's range and needs none of this.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current scale.
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub good_steps: usize,
    /// Finite steps in a row after which the scale doubles.
    pub growth_interval: usize,
}

impl LossScaler {
    /// The scale below which an overflowing step is an error rather than a back-off: f16's
    /// smallest subnormal, 2⁻²⁴. A loss that overflows at this scale overflows in the forward
    /// pass, where no scaling helps.
    pub const MIN_SCALE: f64 = 5.960_464_477_539_063e-8;

    /// A scaler starting at `scale` (PyTorch: 65,536) that doubles after `growth_interval`
    /// finite steps (PyTorch: 2,000).
    pub fn new(scale: f64, growth_interval: usize) -> Self {
        Self {
            scale,
            good_steps: 0,
            growth_interval,
        }
    }

    /// Records a step: finite gradients count towards growth, overflow halves the scale.
    fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
        }
    }
}

/// `base` made trainable on the autodiff wrapper of its device: LoRA freezes the base and
/// attaches `initial` (or a fresh adapter from `lora` and `seed`); full training tracks every
/// weight. Parameter ids are derived from names, so optimizer state saved by one process
/// resumes in another.
///
/// The model keeps `base`'s [`Precision`](kwx_core::Precision): under bf16 or f16 LoRA stores
/// the frozen base matrices in that type (half their memory, no cast per step) while the
/// adapter, saved modules and token rows train in f32; full training keeps f32 master weights
/// and casts them into each product.
pub fn trainable_model(
    base: Gemma,
    mode: Mode,
    lora: &LoraConfig,
    seed: u64,
    initial: Option<&Adapter>,
) -> Result<Gemma> {
    match mode {
        Mode::Lora => {
            let base = to_autodiff(base).freeze();
            let adapter = match initial {
                Some(a) => a.clone(),
                None => Adapter::init(&base, lora, seed)?,
            };
            // After the adapter copied what it trains from the f32 base.
            attach(base.cast_frozen_matrices(), &adapter)
        }
        Mode::Full => Ok(with_stable_ids(to_autodiff(base))),
    }
}

/// AdamW as `config` sets it (β, ε, decoupled weight decay), with norm scales excluded from
/// decay as transformers' Trainer excludes norm weights.
pub fn optimizer(config: &TrainConfig, model: &Gemma) -> ModuleOptimizer {
    let adamw = AdamWConfig::new()
        .with_beta_1(config.adam_beta1 as f32)
        .with_beta_2(config.adam_beta2 as f32)
        .with_epsilon(config.adam_epsilon as f32)
        .with_weight_decay(config.weight_decay as f32);
    let mut optim = adamw.init();
    let norms = norm_ids(model);
    if !norms.is_empty() {
        optim = optim.with_group(
            ParamGroup::from_ids(norms),
            adamw.with_weight_decay(0.0).build(),
            None,
        );
    }
    optim
}

/// One optimizer step over `batches` (gradient accumulation): each micro-batch's summed loss is
/// divided by the label tokens of all of them, so the step's gradient is that of the mean over
/// every label token, however the tokens fall into micro-batches; then global-norm clipping
/// (`max_grad_norm` 0 = off) and the update at `lr`. A non-finite loss or gradient norm is an
/// error (its `step` field is 0: the caller knows the step).
///
/// `dropout` (LoRA's `lora_dropout`) draws micro-batch `i`'s masks from its seed mixed with `i`:
/// give each step its own seed (the trainer derives it from the run's seed and the step).
///
/// The step runs on a thread of rayon's pool: the CPU backend starts parallel work in nearly
/// every tensor operation, and from a thread outside the pool each start is a hand-off to a
/// worker and a wake-up back.
pub fn train_step(
    model: Gemma,
    optim: &mut ModuleOptimizer,
    batches: &[MicroBatch],
    lr: f64,
    max_grad_norm: f64,
    dropout: Option<AdapterDropout>,
) -> Result<(Gemma, StepStats)> {
    rayon::scope(|_| train_step_here(model, optim, batches, lr, max_grad_norm, dropout, None))
}

/// [`train_step`] with dynamic loss scaling (f16 training; see [`LossScaler`]): the backward
/// pass runs on the loss times `scaler.scale` and the gradients are unscaled before clipping.
/// A step whose loss or gradients are not finite is skipped ([`StepStats::skipped`]: no weight
/// or optimizer state changes) and halves the scale; only once the scale falls below
/// [`LossScaler::MIN_SCALE`] is it an error.
pub fn train_step_scaled(
    model: Gemma,
    optim: &mut ModuleOptimizer,
    batches: &[MicroBatch],
    lr: f64,
    max_grad_norm: f64,
    dropout: Option<AdapterDropout>,
    scaler: &mut LossScaler,
) -> Result<(Gemma, StepStats)> {
    rayon::scope(|_| {
        train_step_here(
            model,
            optim,
            batches,
            lr,
            max_grad_norm,
            dropout,
            Some(scaler),
        )
    })
}

fn train_step_here(
    model: Gemma,
    optim: &mut ModuleOptimizer,
    batches: &[MicroBatch],
    lr: f64,
    max_grad_norm: f64,
    dropout: Option<AdapterDropout>,
    scaler: Option<&mut LossScaler>,
) -> Result<(Gemma, StepStats)> {
    let label_tokens: usize = batches.iter().map(MicroBatch::label_tokens).sum();
    let scale = scaler.as_ref().map_or(1.0, |s| s.scale);
    let mut accumulator = GradientsAccumulator::<Gemma>::new();
    let mut loss_sum = 0.0f64;
    // Each micro-batch's summed loss enters the gradient divided by the step's label tokens and
    // multiplied by the loss scale (used only when a micro-batch has labels, so never 1 / 0).
    let grad_scale = scale / label_tokens as f64;
    for (i, batch) in batches.iter().enumerate() {
        let dropout = dropout.map(|d| d.reseeded(mix(d.seed(), i as u64)));
        let (loss, n) = completion_loss_sum_scaled(&model, batch, dropout, grad_scale)?;
        loss_sum += loss.sum;
        // `None` only without labels: the model is on autodiff (`trainable_model`).
        let Some(scaled) = loss.scaled.filter(|_| n > 0) else {
            continue;
        };
        let grads = scaled.backward();
        accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
    }
    let mut stats = StepStats {
        loss: 0.0,
        grad_norm: 0.0,
        label_tokens,
        skipped: false,
    };
    if label_tokens == 0 {
        return Ok((model, stats));
    }
    stats.loss = loss_sum / label_tokens as f64;
    let non_finite = |what: &'static str, loss: f64| Error::NonFiniteLoss {
        step: 0,
        what,
        loss,
        last_checkpoint: None,
    };
    let mut grads = accumulator.grads();
    if scale != 1.0 {
        scale_grads(&model, &mut grads, 1.0 / scale);
    }
    stats.grad_norm = if stats.loss.is_finite() {
        clip_grad_norm(&model, &mut grads, max_grad_norm)
    } else {
        stats.loss
    };
    let finite = stats.grad_norm.is_finite();
    if let Some(scaler) = scaler {
        scaler.update(finite);
        if !finite {
            if scaler.scale < LossScaler::MIN_SCALE {
                let (what, value) = if stats.loss.is_finite() {
                    ("gradient norm at the smallest loss scale", stats.grad_norm)
                } else {
                    ("loss at the smallest loss scale", stats.loss)
                };
                return Err(non_finite(what, value));
            }
            stats.skipped = true;
            return Ok((model, stats));
        }
    } else if !stats.loss.is_finite() {
        return Err(non_finite("loss", stats.loss));
    } else if !finite {
        return Err(non_finite("gradient norm", stats.grad_norm));
    }
    let model = optim.step(lr, model, grads);
    Ok((model, stats))
}

/// Two seeds mixed into one (splitmix64's finalizer over their combination).
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The module on the autodiff wrapper of its device, every active parameter tracked.
fn to_autodiff(model: Gemma) -> Gemma {
    if model.device().is_autodiff() {
        model
    } else {
        model.train()
    }
}

/// Gives every parameter an id derived from its path, so optimizer state saved by one process
/// finds its parameters in the next.
fn with_stable_ids(model: Gemma) -> Gemma {
    struct Ids(Vec<String>);
    impl ModuleMapper for Ids {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, tensor, mapper) = param.consume();
            Param::from_mapped_value(stable_id(&self.0.join(".")), tensor, mapper)
        }
    }
    model.map(&mut Ids(Vec::new()))
}

/// Ids of the trainable 1-D parameters (norm scales).
fn norm_ids(model: &Gemma) -> Vec<ParamId> {
    struct Norms(Vec<ParamId>);
    impl ModuleVisitor for Norms {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 1 && param.base().is_require_grad() {
                self.0.push(param.id);
            }
        }
    }
    let mut v = Norms(Vec::new());
    model.visit(&mut v);
    v.0
}

/// Trainable values in the model.
pub(crate) fn trainable_count(model: &Gemma) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.base().is_require_grad() {
                self.0 += param.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// Scales the gradients so their global L2 norm is at most `max_norm` (0 = no clipping), as
/// `torch.nn.utils.clip_grad_norm_`; returns the norm before clipping.
fn clip_grad_norm(model: &Gemma, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SumSq<'g> {
        grads: &'g GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSq<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut sum = SumSq { grads, total: None };
    model.visit(&mut sum);
    let norm = sum
        .total
        .map_or(0.0, |t| f64::from(t.into_scalar::<f32>()).sqrt());
    if max_norm > 0.0 && norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            scale_grads(model, grads, coef);
        }
    }
    norm
}

/// Multiplies every gradient of `model`'s parameters by `factor`.
fn scale_grads(model: &Gemma, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'g> {
        grads: &'g mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}
