//! [`TrainConfig`]: every knob of a run, readable from TOML.

use std::path::Path;

use serde::{Deserialize, Serialize};

use kwx_core::Precision;

use super::schedule::Decay;
use crate::config::LoraConfig;
use crate::error::{Error, Result};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// LoRA adapters (and any trainable token rows / saved modules); the base is frozen.
    #[default]
    Lora,
    /// Every weight of the model.
    Full,
}

/// Which validation number decides "best" and early stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BestMetric {
    /// Generation-based keyword F1 (higher is better); needs generation examples.
    #[default]
    F1,
    /// Validation loss (lower is better).
    EvalLoss,
}

/// A training run's settings. Field names follow transformers' `TrainingArguments` where one
/// exists. Defaults are listed per field; nothing is implied silently (weight decay defaults to
/// 0, as in transformers).
///
/// ```toml
/// mode = "lora"
/// learning_rate = 2e-4
/// micro_batch_size = 8
/// gradient_accumulation_steps = 2
/// epochs = 3
/// [lora]
/// r = 8
/// lora_alpha = 16
/// target_modules = "all-linear"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// LoRA or full fine-tuning (default LoRA).
    pub mode: Mode,
    /// The adapter, for LoRA mode (default r 8, alpha 16, all linear layers).
    pub lora: LoraConfig,
    /// Seed for adapter init and data order (default 42).
    pub seed: u64,
    /// Passes over the training set (default 1); ignored when `max_steps` > 0.
    pub epochs: usize,
    /// Optimizer steps to run; 0 = as many as `epochs` need (default 0).
    pub max_steps: usize,
    /// Rows per forward pass (default 8).
    pub micro_batch_size: usize,
    /// Micro-batches per optimizer step (default 1).
    pub gradient_accumulation_steps: usize,
    /// Peak learning rate (default 2e-4).
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay; norms are never decayed (default 0).
    pub weight_decay: f64,
    /// AdamW β₁ (default 0.9).
    pub adam_beta1: f64,
    /// AdamW β₂ (default 0.999).
    pub adam_beta2: f64,
    /// AdamW ε (default 1e-8).
    pub adam_epsilon: f64,
    /// Warmup steps; when 0, `warmup_ratio` of all steps (default 0).
    pub warmup_steps: usize,
    /// Warmup as a share of all steps (default 0).
    pub warmup_ratio: f64,
    /// Decay after warmup (default cosine).
    pub lr_scheduler: Decay,
    /// Clip the global gradient norm to this; 0 disables (default 1.0).
    pub max_grad_norm: f64,
    /// Longest example in tokens; longer ones are dropped and counted (default 512).
    pub max_len: usize,
    /// Validate every this many steps; 0 = only at the end (default 50).
    pub eval_every: usize,
    /// Validation examples for generation F1, 0 = none (default 64).
    pub eval_generate: usize,
    /// Longest generated answer during validation (default 64).
    pub max_new_tokens: usize,
    /// What "best" means (default F1).
    pub best_metric: BestMetric,
    /// Stop after this many validations without improvement; 0 = never (default 0).
    pub early_stopping_patience: usize,
    /// Checkpoint every this many steps; 0 = only at validations and the end (default 50).
    pub save_every: usize,
    /// Checkpoints to keep (the best is kept separately) (default 2).
    pub keep_last: usize,
    /// The type matrix products run in: `"f32"`, `"bf16"` or `"f16"` (default f32). Trainable
    /// weights stay f32 either way; LoRA stores the frozen base in the half type; f16 scales
    /// the loss dynamically. See [`kwx_core::Precision`].
    pub precision: Precision,
    /// f16 only: the first loss scale (default 65536, as PyTorch's `GradScaler`).
    pub initial_loss_scale: f64,
    /// f16 only: finite steps in a row after which the loss scale doubles (default 2000).
    pub loss_scale_growth_interval: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Lora,
            lora: LoraConfig::new(8, 16.0),
            seed: 42,
            epochs: 1,
            max_steps: 0,
            micro_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 2e-4,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            lr_scheduler: Decay::Cosine,
            max_grad_norm: 1.0,
            max_len: 512,
            eval_every: 50,
            eval_generate: 64,
            max_new_tokens: 64,
            best_metric: BestMetric::F1,
            early_stopping_patience: 0,
            save_every: 50,
            keep_last: 2,
            precision: Precision::F32,
            initial_loss_scale: 65536.0,
            loss_scale_growth_interval: 2000,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file (unknown keys are errors, with line and column).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = toml::from_str(&text).map_err(|e| Error::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks every field; `location` names the source in errors.
    pub fn validate(&self, location: &str) -> Result<()> {
        let bad = |field: &str, message: &str| Err(Error::config(location, field, message));
        if self.mode == Mode::Lora {
            self.lora.validate(&format!("{location} [lora]"))?;
            let mut known = crate::config::peft_defaults();
            known.insert("init_weights".into(), serde_json::Value::Bool(true));
            if let Some(k) = self.lora.extra.keys().find(|k| !known.contains_key(*k)) {
                return Err(Error::config(
                    format!("{location} [lora]"),
                    k.clone(),
                    "not a PEFT LoraConfig field",
                ));
            }
        }
        if self.micro_batch_size == 0 {
            return bad("micro_batch_size", "must be at least 1");
        }
        if self.gradient_accumulation_steps == 0 {
            return bad("gradient_accumulation_steps", "must be at least 1");
        }
        if self.epochs == 0 && self.max_steps == 0 {
            return bad("epochs", "set epochs or max_steps above 0");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be 0 or positive");
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) {
            return bad("adam_beta1", "betas must lie in [0, 1)");
        }
        if !(self.adam_epsilon.is_finite() && self.adam_epsilon > 0.0) {
            return bad("adam_epsilon", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", "must lie in [0, 1]");
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad("max_grad_norm", "must be 0 (off) or positive");
        }
        if self.max_len < 2 {
            return bad("max_len", "must be at least 2 tokens");
        }
        if self.keep_last == 0 {
            return bad("keep_last", "keep at least one checkpoint");
        }
        if !(self.initial_loss_scale.is_finite()
            && self.initial_loss_scale >= super::step::LossScaler::MIN_SCALE)
        {
            return bad(
                "initial_loss_scale",
                "must be a positive number (2^-24 or more)",
            );
        }
        if self.loss_scale_growth_interval == 0 {
            return bad("loss_scale_growth_interval", "must be at least 1 step");
        }
        if self.early_stopping_patience > 0
            && self.best_metric == BestMetric::F1
            && self.eval_generate == 0
        {
            return bad(
                "early_stopping_patience",
                "early stopping on F1 needs eval_generate > 0 (or best_metric = \"eval_loss\")",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test helpers
    use super::*;

    #[test]
    fn toml_reads_and_rejects_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(
            &p,
            "mode = \"full\"\nlearning_rate = 1e-3\nweight_decay = 0.1\n[lora]\nr = 4\nlora_alpha = 8\n",
        )
        .unwrap();
        let c = TrainConfig::from_toml_file(&p).unwrap();
        assert_eq!(
            (c.mode, c.learning_rate, c.weight_decay, c.lora.r),
            (Mode::Full, 1e-3, 0.1, 4)
        );
        std::fs::write(&p, "learning_rat = 1e-3\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("learning_rat") && e.contains("line 1"), "{e}");
        std::fs::write(&p, "micro_batch_size = 0\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("micro_batch_size"), "{e}");
        std::fs::write(&p, "precision = \"bf16\"\n").unwrap();
        let c = TrainConfig::from_toml_file(&p).unwrap();
        assert_eq!(c.precision, Precision::Bf16);
        assert_eq!(TrainConfig::default().precision, Precision::F32);
        std::fs::write(&p, "seed = 1\nprecision = \"fp16\"\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("fp16") && e.contains("line 2"), "{e}");
        std::fs::write(&p, "initial_loss_scale = 0.0\n").unwrap();
        let e = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(e.contains("initial_loss_scale"), "{e}");
    }
}
