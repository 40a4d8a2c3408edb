//! The fine-tuning loop: LoRA or full SFT on any burn backend with autodiff.
//!
//! - [`TrainConfig`]: the run's settings (TOML).
//! - [`Trainer`]: AdamW with decoupled weight decay (never on norms), linear warmup then cosine /
//!   linear / constant decay, gradient accumulation normalised by the label tokens of the whole
//!   optimizer step, global-norm clipping, completion-only loss projected at label positions
//!   only, validation loss and generation-based keyword F1, early stopping, best-model tracking.
//! - Checkpoints (`checkpoint-NNNNNN/`): adapter or model, optimizer state, trainer state (step,
//!   data position, history), written to a temporary folder and renamed into place; the last
//!   `keep_last` are kept. A killed run resumes with the same losses as an uninterrupted one.

mod checkpoint;
mod config;
mod data;
mod loss;
mod metrics;
mod schedule;
mod step;
mod trainer;

pub use checkpoint::{BEST_FILE, LOCK_FILE, latest_checkpoint};
pub use config::{BestMetric, Mode, TrainConfig};
pub use data::{Prepared, prepare, read_records, split_eval};
pub use loss::{MicroBatch, completion_loss_sum, completion_loss_sum_with};
pub use metrics::{KeywordCounts, KeywordScores, parse_keywords};
pub use schedule::{Decay, Schedule};
pub use step::{LossScaler, StepStats, optimizer, train_step, train_step_scaled, trainable_model};
pub use trainer::{
    EvalExample, EvalRecord, Event, Outcome, StepRecord, TrainData, Trainer, load_full_checkpoint,
};
