//! # kwx-peft
//!
//! LoRA adapters that move freely between kwx and Hugging Face PEFT, and the fine-tuning loop
//! for kwx's Gemma models (strategies 3 and 4: instruction tuning with LoRA, supervised
//! fine-tuning full or LoRA).
//!
//! - [`LoraConfig`]: PEFT's `LoraConfig` (names, meaning, matching rules, `adapter_config.json`).
//! - [`Adapter`]: an adapter's tensors in PEFT's layout; [`Adapter::load`] / [`Adapter::save`]
//!   read and write PEFT 0.21's folder format.
//! - [`attach`], [`extract`](fn@extract), [`merge`], [`unmerge`]: the adapter on the model,
//!   built on burn's own LoRA reparameterization; [`AdapterSet`] switches adapters per request.
//! - [`train`]: the trainer (AdamW, warmup + decay, token-normalised accumulation, clipping,
//!   completion-only loss, evaluation, early stopping, checkpoints that resume exactly), in f32
//!   or with bf16/f16 products over f32 master weights ([`kwx_core::Precision`], f16 with
//!   dynamic loss scaling).
//!
//! kwx-core knows nothing of LoRA: an adapted weight is an ordinary burn parameter whose value is
//! `W + scale·a·b`.
//!
//! ```no_run
//! # fn main() -> kwx_peft::Result<()> {
//! let device = burn::tensor::Device::default();
//! let base = kwx_core::Gemma::load("models/gemma-3-270m", &device)?;
//! let adapter = kwx_peft::Adapter::load("adapters/pharma", &base)?;
//! let model = kwx_peft::attach(base, &adapter)?;
//! let logits = model.logits(&[2, 651, 1234])?;
//! # let _ = logits; Ok(()) }
//! ```

pub mod adapter;
pub mod config;
pub mod error;
pub mod extract;
pub mod inject;
pub mod set;
pub mod train;

pub use adapter::{Adapter, LoraPair};
pub use config::{LayerSelection, LoraConfig, TargetModules, TokenIndices};
pub use error::{Error, Result};
pub use inject::{attach, extract, merge, unmerge};
pub use kwx_core::TokenRows;
pub use set::AdapterSet;
