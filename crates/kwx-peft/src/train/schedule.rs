//! Learning-rate schedules: linear warmup, then cosine, linear or constant, as transformers'
//! `get_{cosine,linear,constant}_schedule_with_warmup` compute them.

use serde::{Deserialize, Serialize};

/// The shape of the learning rate after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Half a cosine period down to 0 at the last step.
    #[default]
    Cosine,
    /// A straight line down to 0 at the last step.
    Linear,
    /// Flat after warmup.
    Constant,
}

/// A warmup-then-decay schedule over `total` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The peak learning rate.
    pub peak: f64,
    /// Steps of linear warmup from 0.
    pub warmup: usize,
    /// All optimizer steps.
    pub total: usize,
    /// What follows warmup.
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate for 0-based optimizer step `step` (the value the step uses).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup.max(1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = (step - self.warmup) as f64 / span;
        let factor = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => (1.0 - progress).max(0.0),
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()),
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_transformers_schedules() {
        // get_linear_schedule_with_warmup(num_warmup_steps=2, num_training_steps=5), peak 1e-2:
        // lr_lambda(s) = s/2 for s < 2, else (5 - s) / 3.
        let s = Schedule {
            peak: 1e-2,
            warmup: 2,
            total: 5,
            decay: Decay::Linear,
        };
        let got: Vec<f64> = (0..5).map(|i| s.lr(i)).collect();
        let want = [0.0, 5e-3, 1e-2, 1e-2 * 2.0 / 3.0, 1e-2 / 3.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
        // get_cosine_schedule_with_warmup: 0.5 (1 + cos(pi * progress)).
        let c = Schedule {
            peak: 1.0,
            warmup: 0,
            total: 4,
            decay: Decay::Cosine,
        };
        assert!((c.lr(2) - 0.5).abs() < 1e-15);
        assert!((c.lr(1) - 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())).abs() < 1e-15);
        let k = Schedule {
            peak: 3.0,
            warmup: 3,
            total: 9,
            decay: Decay::Constant,
        };
        assert_eq!((k.lr(0), k.lr(1), k.lr(8)), (0.0, 1.0, 3.0));
    }
}
