//! The floating-point type a model computes its matrix products in: mixed precision as PyTorch's
//! autocast does it.
//!
//! Under [`Precision::Bf16`] or [`Precision::F16`] every matrix product (the linear layers, the
//! LoRA factors, attention, the output head) takes its operands in the half type and gives a
//! half result; everything else — the residual stream, RMSNorm, RoPE, the MLP activation, the
//! final softcap, log-softmax and the loss — stays in f32, as autocast keeps norms, softmax and
//! losses in f32. Parameters keep their own type: trainable ones stay f32 (the master weights an
//! optimizer updates) and are cast on the way into each product, and
//! [`Gemma::cast_frozen_matrices`](crate::Gemma::cast_frozen_matrices) stores the frozen ones in
//! the half type once (a LoRA run's base model: half the memory, no per-step cast).
//!
//! What it buys depends on the backend: CUDA and wgpu run half products on tensor cores; the CPU
//! backend (`flex`) widens bf16 operands to f32 for the product itself, so there it saves the
//! memory of stored weights, not time.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The type matrix products run in; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout (the default; what transformers computes in f32).
    #[default]
    F32,
    /// bfloat16 products, f32 elsewhere. The type Gemma was trained in; f32's range, so no loss
    /// scaling is needed.
    Bf16,
    /// float16 products, f32 elsewhere. Its range ends at 65,504: training needs loss scaling
    /// (kwx-peft's trainer scales dynamically), and Gemma's large activations can overflow it.
    F16,
}

impl Precision {
    /// Every precision, in declaration order.
    pub const ALL: [Self; 3] = [Self::F32, Self::Bf16, Self::F16];

    /// The burn type of the products.
    pub fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
            Self::F16 => FloatDType::F16,
        }
    }

    /// The name used in configs and flags (`f32`, `bf16`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// Whether products run in a half type.
    pub fn is_half(self) -> bool {
        self != Self::F32
    }

    /// Checks that `device`'s backend computes in this type; the error names the device.
    pub fn check_device(self, device: &Device) -> Result<()> {
        if device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            Err(Error::UnsupportedPrecision {
                precision: self.name(),
                device: format!("{device:?}"),
            })
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::UnknownPrecision(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test helpers
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("`fp16`") && err.contains("bf16"), "{err}");
    }

    #[test]
    fn the_cpu_backend_computes_in_every_precision() {
        let device = Device::default();
        for p in Precision::ALL {
            p.check_device(&device).unwrap();
        }
    }
}
