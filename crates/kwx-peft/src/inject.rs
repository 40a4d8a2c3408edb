//! Putting an [`Adapter`] on a [`Gemma`] and taking it off again.
//!
//! LoRA itself is burn's: each adapted weight gets burn-core's [`LoraAdapter`] reparameterization
//! (`W' = W + scale · a·b`, burn's `[in, out]` layout, so `a = Aᵀ` and `b = Bᵀ`), which autodiff,
//! the optimizer and `materialize` already understand. kwx adds what burn lacks: PEFT's targeting
//! and scaling rules, factors loaded from a file rather than drawn at random, parameter ids that
//! are stable across runs (so optimizer state resumes), trainable token rows ([`TokenRows`],
//! kwx-core's reparameterization of the embedding that keeps the tie with the output head) and
//! whole saved modules. kwx-core computes both reparameterizations factored (`x·W + x·a·s·b`;
//! the frozen matrix with the replaced rows swapped in), never composing the weight.

use burn::module::{LoraAdapter, Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::Tensor;
use kwx_core::{Gemma, OnWeight, TokenRows};

use crate::adapter::{Adapter, LoraPair, linear_modules};
use crate::error::{Error, Result};

/// A parameter id derived from a name: the same in every run, so optimizer state saved by one
/// process finds its parameters in the next.
pub(crate) fn stable_id(name: &str) -> ParamId {
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ParamId::from(h)
}

/// A parameter that autodiff tracks when the tensor lives on an autodiff device.
fn trainable<const D: usize>(name: &str, t: Tensor<D>) -> Param<Tensor<D>> {
    let t = if t.is_autodiff() {
        t.detach().require_grad()
    } else {
        t
    };
    Param::initialized(stable_id(name), t)
}

fn linears_mut(model: &mut Gemma) -> Vec<(String, &mut Linear)> {
    let mut out = Vec::new();
    for (i, l) in model.layers.iter_mut().enumerate() {
        let a = &mut l.self_attn;
        let m = &mut l.mlp;
        for (name, lin) in [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ] {
            out.push((format!("model.layers.{i}.{name}"), lin));
        }
    }
    out
}

/// Every linear layer LoRA can adapt, by transformers module name
/// (`model.layers.0.self_attn.q_proj`), in layer order.
pub fn linears(model: &Gemma) -> Vec<(String, &Linear)> {
    let mut out = Vec::new();
    for (i, l) in model.layers.iter().enumerate() {
        for (name, lin) in [
            ("self_attn.q_proj", &l.self_attn.q_proj),
            ("self_attn.k_proj", &l.self_attn.k_proj),
            ("self_attn.v_proj", &l.self_attn.v_proj),
            ("self_attn.o_proj", &l.self_attn.o_proj),
            ("mlp.gate_proj", &l.mlp.gate_proj),
            ("mlp.up_proj", &l.mlp.up_proj),
            ("mlp.down_proj", &l.mlp.down_proj),
        ] {
            out.push((format!("model.layers.{i}.{name}"), lin));
        }
    }
    out
}

/// Puts `adapter` on `model`: the base weights keep their values and training state, the
/// adapter's tensors become parameters (trainable when the model lives on an autodiff device).
/// Freeze the base first ([`Module::freeze`]) for LoRA training.
///
/// PEFT's semantics: an adapted linear computes `x·(W + scaling·B·A)ᵀ`; trainable token rows
/// replace rows of the (tied) embedding; a saved `embed_tokens` replaces the input embedding and,
/// unless `ensure_weight_tying` is set, leaves the output head on the original matrix (PEFT
/// unties them); a saved `lm_head` becomes a separate output head.
pub fn attach(mut model: Gemma, adapter: &Adapter) -> Result<Gemma> {
    let device = model.device();
    // Fresh, contiguous tensors on the model's device: a transposed view would send the
    // matmuls down another kernel path, and a resumed run would round differently from an
    // uninterrupted one.
    let on = |t: &Tensor<2>| {
        let t = Tensor::<2>::from_data(t.clone().into_data(), &device);
        if device.is_autodiff() && !t.is_autodiff() {
            t.autodiff()
        } else {
            t
        }
    };
    let on_t = |t: &Tensor<2>| on(&t.clone().transpose());
    let known: std::collections::BTreeMap<String, [usize; 2]> =
        linear_modules(&model).into_iter().collect();
    if let Some(name) = adapter.layers.keys().find(|n| !known.contains_key(*n)) {
        return Err(Error::NoTargets {
            targets: vec![name.clone()],
            available: known.keys().cloned().collect(),
        });
    }
    for (name, lin) in linears_mut(&mut model) {
        let Some(LoraPair { a, b }) = adapter.layers.get(&name) else {
            continue;
        };
        let [out, inp] = known[&name];
        let r = a.dims()[0];
        if a.dims() != [r, inp] || b.dims() != [out, r] {
            return Err(Error::ShapeMismatch {
                name: format!("{name} lora_A/lora_B"),
                expected: vec![r, inp, out, r],
                got: [a.dims(), b.dims()].concat(),
            });
        }
        let lora = LoraAdapter {
            a: trainable(&format!("{name}.lora_A"), on_t(a)),
            b: trainable(&format!("{name}.lora_B"), on_t(b)),
            scale: adapter.config.scaling_for(&name),
        };
        *lin = lin.clone().apply_reparameterization(OnWeight::new(lora));
    }
    let tie = adapter
        .config
        .extra
        .get("ensure_weight_tying")
        .is_some_and(|v| v.as_bool() == Some(true));
    if let Some(saved) = adapter.saved_modules.get("embed_tokens") {
        if model.lm_head.is_none() && !tie {
            // PEFT unties: the head keeps the original matrix.
            model.lm_head = Some(Linear {
                weight: Param::initialized(
                    stable_id("lm_head.base"),
                    model.embed_tokens.weight.val().transpose(),
                ),
                bias: None,
            });
        }
        model.embed_tokens.weight = trainable("model.embed_tokens.saved", on(saved));
    }
    if let Some(saved) = adapter.saved_modules.get("lm_head") {
        model.lm_head = Some(Linear {
            weight: trainable("lm_head.saved", on_t(saved)),
            bias: None,
        });
    }
    if let (Some(rows), Some(ids)) = (&adapter.token_rows, adapter.config.trainable_tokens()) {
        let reparam = TokenRows {
            values: trainable("model.embed_tokens.token_rows", on(rows)),
            ids: ids.to_vec(),
        };
        model.embed_tokens = model
            .embed_tokens
            .apply_reparameterization(OnWeight::new(reparam));
    }
    Ok(model)
}

/// Reads the adapter's current tensors back from a model [`attach`] (and training) produced.
pub fn extract(model: &Gemma, config: &crate::LoraConfig) -> Result<Adapter> {
    let mut layers = std::collections::BTreeMap::new();
    for (name, lin) in linears(model) {
        if let Some(lora) = lin.weight.adapter() {
            layers.insert(
                name,
                LoraPair {
                    a: lora.a.val().transpose().detach().inner_or_self(),
                    b: lora.b.val().transpose().detach().inner_or_self(),
                },
            );
        }
    }
    let token_rows = model
        .embed_tokens
        .weight
        .reparameterization::<TokenRows>()
        .map(|t| t.values.val().detach().inner_or_self());
    let mut saved_modules = std::collections::BTreeMap::new();
    if config.saves("embed_tokens") {
        saved_modules.insert(
            "embed_tokens".to_string(),
            model.embed_tokens.weight.base().detach().inner_or_self(),
        );
    }
    if config.saves("lm_head") {
        let head = model.lm_head.as_ref().ok_or_else(|| {
            Error::config(
                "LoraConfig",
                "modules_to_save",
                "the model has no separate lm_head",
            )
        })?;
        saved_modules.insert(
            "lm_head".to_string(),
            head.weight.val().transpose().detach().inner_or_self(),
        );
    }
    Ok(Adapter {
        config: config.clone(),
        layers,
        token_rows,
        saved_modules,
        tied_head: model.lm_head.is_none(),
    })
}

trait InnerOrSelf {
    fn inner_or_self(self) -> Self;
}
impl<const D: usize> InnerOrSelf for Tensor<D> {
    /// Moves a tensor off the autodiff device so saved adapters carry no graph.
    fn inner_or_self(self) -> Self {
        if self.device().is_autodiff() {
            Tensor::from_inner(self.inner())
        } else {
            self
        }
    }
}

/// Folds every attached adapter into dense weights (`W + scaling·B·A`, token rows written in):
/// the result computes the same logits without the per-call adapter cost.
pub fn merge(model: Gemma) -> Gemma {
    model.materialize()
}

/// Undoes [`merge`] for LoRA layers: `W − scaling·B·A`, as PEFT's `unmerge`. Token rows and saved
/// modules overwrite the base values, which a merged model no longer holds: keep the base model
/// (see [`crate::AdapterSet`]) for those adapters instead.
pub fn unmerge(mut merged: Gemma, adapter: &Adapter) -> Result<Gemma> {
    if adapter.token_rows.is_some() || !adapter.saved_modules.is_empty() {
        return Err(Error::config(
            "LoraConfig",
            if adapter.token_rows.is_some() {
                "trainable_token_indices"
            } else {
                "modules_to_save"
            },
            "replaced rows cannot be recovered from a merged model; keep the base (AdapterSet)",
        ));
    }
    let device = merged.device();
    for (name, lin) in linears_mut(&mut merged) {
        let Some(LoraPair { a, b }) = adapter.layers.get(&name) else {
            continue;
        };
        let scale = adapter.config.scaling_for(&name);
        // burn layout [in, out]: (B·A)ᵀ = Aᵀ·Bᵀ.
        let delta = a
            .clone()
            .to_device(&device)
            .transpose()
            .matmul(b.clone().to_device(&device).transpose())
            .mul_scalar(scale);
        let id = lin.weight.id;
        let w = lin.weight.val() - delta;
        lin.weight = Param::initialized(id, w);
    }
    Ok(merged)
}
