//! [`Trainer`]: the loop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use kwx_core::{AdapterDropout, Gemma, GemmaTokenizer, GenerationConfig, Generator, Precision};
use kwx_data::training::TrainingExample;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    self, ADAPTER_DIR, BEST_FILE, BestPointer, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, TrainerState,
};
use super::config::{BestMetric, Mode, TrainConfig};
use super::loss::{MicroBatch, completion_loss_sum};
use super::metrics::{KeywordCounts, KeywordScores};
use super::schedule::Schedule;
use super::step::{
    LossScaler, optimizer, train_step, train_step_scaled, trainable_count, trainable_model,
};
use crate::adapter::{Adapter, write_atomic};
use crate::error::{Error, Result};
use crate::inject::extract;

/// A validation example for generation-based scoring: the rendered prompt and the gold keywords.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalExample {
    /// The prompt's token ids (ending where the model's answer starts).
    pub prompt_ids: Vec<u32>,
    /// The keywords a perfect answer lists.
    pub gold: Vec<String>,
}

/// What the trainer learns from and is measured on.
#[derive(Debug, Clone, Default)]
pub struct TrainData {
    /// Training examples (kwx-data's encoder output: ids and completion-only labels).
    pub train: Vec<TrainingExample>,
    /// Validation examples for the loss.
    pub eval: Vec<TrainingExample>,
    /// Validation examples for generation F1 (the first `eval_generate` are used).
    pub generate: Vec<EvalExample>,
    /// The padding id.
    pub pad_id: u32,
    /// Tokens that end a generated answer (`<end_of_turn>`, `<eos>`).
    pub stop_ids: Vec<u32>,
}

/// One optimizer step, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based optimizer step.
    pub step: usize,
    /// Epochs completed, fractional.
    pub epoch: f64,
    /// Mean loss per label token over the step's micro-batches (0 for a skipped step whose
    /// loss overflowed).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping (0 for a skipped step: its gradients overflowed).
    pub grad_norm: f64,
    /// Label tokens in the step.
    pub label_tokens: usize,
    /// All tokens (padding included) processed.
    pub tokens: usize,
    /// Tokens per second over this step.
    pub tokens_per_s: f64,
    /// f16 training: the loss scale the step ran at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// f16 training: the step's scaled gradients overflowed, so no weight changed and the
    /// scale was halved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// One validation, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The optimizer step it followed.
    pub step: usize,
    /// Mean loss per label token over the validation set (`None` without validation examples).
    pub eval_loss: Option<f64>,
    /// Keyword scores of greedy answers (`None` without generation examples).
    pub scores: Option<KeywordScores>,
    /// Wall time of the validation.
    pub seconds: f64,
}

/// Progress reported to the caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Training starts (or resumes) at `step` of `total`.
    Start {
        /// Steps already done (0 unless resumed).
        step: usize,
        /// All steps.
        total: usize,
        /// Trainable values.
        trainable: usize,
    },
    /// An optimizer step finished.
    Step(&'a StepRecord),
    /// A validation finished.
    Eval(&'a EvalRecord),
    /// A checkpoint was written.
    Checkpoint(&'a Path),
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The best checkpoint (by the configured metric), if any validation ran.
    pub best: Option<PathBuf>,
    /// The final checkpoint.
    pub last: PathBuf,
    /// The adapter folder (LoRA) or model file (full) inside the best checkpoint, or the last
    /// one when no validation ran: what to load next.
    pub best_weights: PathBuf,
    /// Every step's record.
    pub steps: Vec<StepRecord>,
    /// Every validation's record.
    pub evals: Vec<EvalRecord>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// Fine-tunes a Gemma model (see the [module docs](super)).
#[derive(Debug)]
pub struct Trainer<'a> {
    config: TrainConfig,
    output_dir: PathBuf,
    data: TrainData,
    tokenizer: Option<&'a GemmaTokenizer>,
    initial: Option<Adapter>,
}

impl<'a> Trainer<'a> {
    /// A trainer writing checkpoints and `metrics.jsonl` under `output_dir`. Examples longer than
    /// `max_len` are an error here: drop or truncate them when encoding (kwx-data reports them).
    pub fn new(
        config: TrainConfig,
        output_dir: impl Into<PathBuf>,
        data: TrainData,
    ) -> Result<Self> {
        config.validate("TrainConfig")?;
        if data.train.is_empty() {
            return Err(Error::Data("no training examples".into()));
        }
        if let Some(e) = data
            .train
            .iter()
            .chain(&data.eval)
            .find(|e| e.input_ids.len() > config.max_len)
        {
            return Err(Error::Data(format!(
                "example {} has {} tokens, more than max_len {}",
                e.index,
                e.input_ids.len(),
                config.max_len
            )));
        }
        Ok(Self {
            config,
            output_dir: output_dir.into(),
            data,
            tokenizer: None,
            initial: None,
        })
    }

    /// The tokenizer that decodes generated answers (needed for generation F1).
    #[must_use]
    pub fn with_tokenizer(mut self, tokenizer: &'a GemmaTokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// Starts LoRA training from `adapter` (its config replaces `config.lora`) instead of a
    /// fresh initialisation: continue training a published adapter, or reproduce a reference run.
    pub fn with_adapter(mut self, adapter: Adapter) -> Result<Self> {
        if self.config.mode != Mode::Lora {
            return Err(Error::config(
                "TrainConfig",
                "mode",
                "an initial adapter needs mode = \"lora\"",
            ));
        }
        self.config.lora = adapter.config.clone();
        self.config.validate("adapter_config.json")?;
        self.initial = Some(adapter);
        Ok(self)
    }

    fn micro_batches_per_epoch(&self) -> usize {
        self.data.train.len().div_ceil(self.config.micro_batch_size)
    }

    /// All optimizer steps of the run.
    pub fn total_steps(&self) -> usize {
        if self.config.max_steps > 0 {
            self.config.max_steps
        } else {
            (self.config.epochs * self.micro_batches_per_epoch())
                .div_ceil(self.config.gradient_accumulation_steps)
        }
    }

    fn schedule(&self) -> Schedule {
        let total = self.total_steps();
        let warmup = if self.config.warmup_steps > 0 {
            self.config.warmup_steps
        } else {
            (self.config.warmup_ratio * total as f64).ceil() as usize
        };
        Schedule {
            peak: self.config.learning_rate,
            warmup,
            total,
            decay: self.config.lr_scheduler,
        }
    }

    /// LoRA dropout for optimizer step `step` (counted from 1): `lora_dropout` with a seed drawn
    /// from the run's seed and the step, so a resumed run draws the masks of an unbroken one.
    fn dropout(&self, step: usize) -> Result<Option<AdapterDropout>> {
        let p = self.config.lora.lora_dropout;
        if self.config.mode != Mode::Lora || p == 0.0 {
            return Ok(None);
        }
        Ok(Some(AdapterDropout::new(
            p,
            super::step::mix(self.config.seed, step as u64),
        )?))
    }

    /// The example indices of `epoch`, in training order.
    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        let seed = self.config.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        order
    }

    fn config_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.config).map_err(|source| Error::Json {
            path: "TrainConfig".into(),
            source,
        })
    }

    /// Checks that [`run`](Trainer::run) may start on the output folder: a fresh run
    /// (`resume` false) needs one without checkpoints. Callers with work to do before the run
    /// (an evaluation of the base model) call it first; `run` checks again.
    ///
    /// # Errors
    /// [`Error::OutputHasRun`] for a fresh run on a folder holding checkpoints.
    pub fn check_output(&self, resume: bool) -> Result<()> {
        let out = &self.output_dir;
        if resume || !out.is_dir() {
            return Ok(());
        }
        match checkpoint::latest_checkpoint(out)? {
            Some(checkpoint) => Err(Error::OutputHasRun {
                path: out.clone(),
                checkpoint,
            }),
            None => Ok(()),
        }
    }

    /// Trains `base` (on any device; the autodiff wrapper is added here), resuming from the
    /// newest checkpoint in the output folder when `resume` is set and one exists.
    ///
    /// # Errors
    /// Besides training errors, [`Error::OutputHasRun`] when `resume` is false and the output
    /// folder holds checkpoints, and [`Error::OutputInUse`] while another run holds it.
    pub fn run(
        &self,
        base: Gemma,
        resume: bool,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<Outcome> {
        let out = &self.output_dir;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let _lock = checkpoint::OutputLock::acquire(out)?;
        checkpoint::remove_stale_temporaries(out)?;
        self.check_output(resume)?;
        let resume_from = if resume {
            checkpoint::latest_checkpoint(out)?
        } else {
            None
        };
        let mut state = self.initial_state(resume_from.as_deref())?;

        let (mut model, mut optim, lora) = self.setup(base, resume_from.as_deref())?;

        let metrics_path = out.join("metrics.jsonl");
        rewrite_metrics(&metrics_path, &state)?;
        let mut metrics = std::fs::OpenOptions::new()
            .append(true)
            .open(&metrics_path)
            .map_err(|e| Error::io(&metrics_path, e))?;

        let total = self.total_steps();
        let schedule = self.schedule();
        let per_epoch = self.micro_batches_per_epoch();
        on_event(Event::Start {
            step: state.step,
            total,
            trainable: trainable_count(&model),
        });
        let mut order = self.epoch_order(state.epoch);
        let mut last_checkpoint = resume_from.clone();
        let mut stopped_early = false;

        while state.step < total {
            let started = Instant::now();
            let batches = self.next_batches(&mut state, &mut order)?;
            let label_tokens: usize = batches.iter().map(MicroBatch::label_tokens).sum();
            let tokens: usize = batches.iter().map(MicroBatch::tokens).sum();
            let step = state.step + 1;
            // The schedule counts updates: a step skipped by the loss scaler does not advance
            // it (as transformers' Trainer steps its scheduler only when the optimizer ran).
            let lr = schedule.lr(state.steps.iter().filter(|s| !s.skipped).count());
            let dropout = self.dropout(step)?;
            let loss_scale = state.loss_scaler.map(|s| s.scale);
            let max_norm = self.config.max_grad_norm;
            let result = match &mut state.loss_scaler {
                Some(scaler) => {
                    train_step_scaled(model, &mut optim, &batches, lr, max_norm, dropout, scaler)
                }
                None => train_step(model, &mut optim, &batches, lr, max_norm, dropout),
            };
            let (next, stats) = match result {
                Ok(r) => r,
                Err(Error::NonFiniteLoss { what, loss, .. }) => {
                    return Err(Error::NonFiniteLoss {
                        step,
                        what,
                        loss,
                        last_checkpoint,
                    });
                }
                Err(e) => return Err(e),
            };
            model = next;
            let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
            let (loss, grad_norm) = (finite(stats.loss), finite(stats.grad_norm));
            state.step = step;
            let elapsed = started.elapsed().as_secs_f64();
            let record = StepRecord {
                step,
                epoch: (state.epoch as f64) + state.cursor as f64 / per_epoch as f64,
                loss,
                lr,
                grad_norm,
                label_tokens,
                tokens,
                tokens_per_s: tokens as f64 / elapsed.max(1e-9),
                loss_scale,
                skipped: stats.skipped,
            };
            append_line(&mut metrics, &metrics_path, "step", &record)?;
            on_event(Event::Step(&record));
            state.steps.push(record);

            let last = state.step == total;
            let eval_due =
                last || (self.config.eval_every > 0 && state.step % self.config.eval_every == 0);
            let mut improved = false;
            if eval_due && (!self.data.eval.is_empty() || self.wants_generation()) {
                let rec = self.evaluate(&model, state.step)?;
                append_line(&mut metrics, &metrics_path, "eval", &rec)?;
                on_event(Event::Eval(&rec));
                improved = self.track_best(&mut state, rec);
                stopped_early = self.config.early_stopping_patience > 0
                    && state.bad_evals >= self.config.early_stopping_patience;
            }
            let save_due = last
                || stopped_early
                || improved
                || eval_due
                || (self.config.save_every > 0 && state.step % self.config.save_every == 0);
            if save_due {
                let dir = self.checkpoint(&model, &optim, &state, &lora, improved)?;
                on_event(Event::Checkpoint(&dir));
                last_checkpoint = Some(dir);
            }
            if stopped_early {
                break;
            }
        }

        let last = match &last_checkpoint {
            Some(p) => p.clone(),
            None => self.save_checkpoint(&model, &optim, &state, &lora)?,
        };
        let best = self.best_dir()?;
        let weights_in = |dir: &Path| match self.config.mode {
            Mode::Lora => dir.join(ADAPTER_DIR),
            Mode::Full => dir.join(MODEL_FILE),
        };
        Ok(Outcome {
            best_weights: weights_in(best.as_deref().unwrap_or(&last)),
            best,
            last,
            steps: state.steps,
            evals: state.evals,
            stopped_early,
        })
    }

    /// The state to start from: the checkpoint's (same settings and data required) or a fresh one.
    fn initial_state(&self, resume_from: Option<&Path>) -> Result<TrainerState> {
        let config = self.config_json()?;
        let Some(dir) = resume_from else {
            return Ok(TrainerState {
                kwx_version: env!("CARGO_PKG_VERSION").into(),
                step: 0,
                epoch: 0,
                cursor: 0,
                seed: self.config.seed,
                best_value: None,
                best_step: None,
                bad_evals: 0,
                train_examples: self.data.train.len(),
                config,
                steps: Vec::new(),
                evals: Vec::new(),
                loss_scaler: (self.config.precision == Precision::F16).then(|| {
                    LossScaler::new(
                        self.config.initial_loss_scale,
                        self.config.loss_scale_growth_interval,
                    )
                }),
            });
        };
        let state = checkpoint::read_state(dir)?;
        check_same_config(dir, &state.config, &config)?;
        if state.train_examples != self.data.train.len() {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: format!(
                    "made with {} training examples, this run has {}",
                    state.train_examples,
                    self.data.train.len()
                ),
            });
        }
        Ok(state)
    }

    /// The trainable model and its optimizer, from scratch or from a checkpoint.
    fn setup(
        &self,
        base: Gemma,
        resume_from: Option<&Path>,
    ) -> Result<(Gemma, ModuleOptimizer, crate::LoraConfig)> {
        let mut lora = self.config.lora.clone();
        if lora.task_type.is_none() {
            lora.task_type = Some("CAUSAL_LM".into());
        }
        let (mode, seed) = (self.config.mode, self.config.seed);
        let base = base.with_precision(self.config.precision)?;
        let model = match (resume_from, mode) {
            (Some(dir), Mode::Lora) => {
                let adapter = Adapter::load(dir.join(ADAPTER_DIR), &base)?;
                trainable_model(base, mode, &lora, seed, Some(&adapter))?
            }
            (Some(dir), Mode::Full) => trainable_model(base, mode, &lora, seed, None)
                .and_then(|m| load_full_checkpoint(m, &dir.join(MODEL_FILE)))?,
            (None, _) => trainable_model(base, mode, &lora, seed, self.initial.as_ref())?,
        };
        let mut optim = optimizer(&self.config, &model);
        if let Some(dir) = resume_from {
            let path = dir.join(OPTIMIZER_FILE);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            optim = optim
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| Error::Checkpoint {
                    path: path.clone(),
                    message: format!("optimizer state: {e:?}"),
                })?;
        }
        Ok((model, optim, lora))
    }

    /// The next step's micro-batches, advancing the data position (and the epoch).
    fn next_batches(
        &self,
        state: &mut TrainerState,
        order: &mut Vec<usize>,
    ) -> Result<Vec<MicroBatch>> {
        let per_epoch = self.micro_batches_per_epoch();
        let mbs = self.config.micro_batch_size;
        let mut batches = Vec::with_capacity(self.config.gradient_accumulation_steps);
        for _ in 0..self.config.gradient_accumulation_steps {
            if state.cursor == per_epoch {
                state.epoch += 1;
                state.cursor = 0;
                *order = self.epoch_order(state.epoch);
            }
            let idx = &order[state.cursor * mbs..((state.cursor + 1) * mbs).min(order.len())];
            let rows: Vec<&TrainingExample> = idx.iter().map(|&i| &self.data.train[i]).collect();
            batches.push(MicroBatch::from_examples(&rows, self.data.pad_id)?);
            state.cursor += 1;
        }
        Ok(batches)
    }

    /// Records a validation; returns whether it beat the best so far.
    fn track_best(&self, state: &mut TrainerState, rec: EvalRecord) -> bool {
        let value = match self.config.best_metric {
            BestMetric::F1 => rec.scores.map(|s| s.f1),
            BestMetric::EvalLoss => rec.eval_loss.map(|l| -l),
        };
        state.evals.push(rec);
        let Some(v) = value else {
            return false;
        };
        if state.best_value.is_none_or(|b| v > b) {
            state.best_value = Some(v);
            state.best_step = Some(state.step);
            state.bad_evals = 0;
            true
        } else {
            state.bad_evals += 1;
            false
        }
    }

    /// Writes a checkpoint, points `best.json` at it when it is the best, prunes old ones.
    fn checkpoint(
        &self,
        model: &Gemma,
        optim: &ModuleOptimizer,
        state: &TrainerState,
        lora: &crate::LoraConfig,
        best: bool,
    ) -> Result<PathBuf> {
        let out = &self.output_dir;
        let dir = self.save_checkpoint(model, optim, state, lora)?;
        if best {
            let pointer = BestPointer {
                step: state.step,
                path: dir.clone(),
                value: state.best_value.unwrap_or(0.0),
            };
            let path = out.join(BEST_FILE);
            let text = serde_json::to_string_pretty(&pointer).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
            write_atomic(&path, text.as_bytes())?;
        }
        checkpoint::prune(out, self.config.keep_last, self.best_dir()?.as_deref())?;
        Ok(dir)
    }

    fn wants_generation(&self) -> bool {
        self.config.eval_generate > 0 && !self.data.generate.is_empty() && self.tokenizer.is_some()
    }

    fn best_dir(&self) -> Result<Option<PathBuf>> {
        let path = self.output_dir.join(BEST_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let p: BestPointer =
            serde_json::from_str(&text).map_err(|source| Error::Json { path, source })?;
        Ok(p.path.is_dir().then_some(p.path))
    }

    /// Validation loss and generation scores of `model` (run without autodiff).
    pub fn evaluate(&self, model: &Gemma, step: usize) -> Result<EvalRecord> {
        let started = Instant::now();
        let valid = model.valid();
        let eval_loss = if self.data.eval.is_empty() {
            None
        } else {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for chunk in self.data.eval.chunks(self.config.micro_batch_size) {
                let rows: Vec<&TrainingExample> = chunk.iter().collect();
                let batch = MicroBatch::from_examples(&rows, self.data.pad_id)?;
                let (s, k) = completion_loss_sum(&valid, &batch)?;
                sum += f64::from(s.into_scalar::<f32>());
                n += k;
            }
            (n > 0).then(|| sum / n as f64)
        };
        let scores = match self.tokenizer {
            Some(tok) if self.wants_generation() => {
                let mut gen_config = GenerationConfig::greedy(self.config.max_new_tokens);
                for &id in &self.data.stop_ids {
                    gen_config = gen_config.with_stop_token(id);
                }
                let generator = Generator::new(&valid).with_tokenizer(tok);
                let mut counts = KeywordCounts::default();
                let examples =
                    &self.data.generate[..self.config.eval_generate.min(self.data.generate.len())];
                for chunk in examples.chunks(self.config.micro_batch_size) {
                    let prompts: Vec<Vec<u32>> =
                        chunk.iter().map(|e| e.prompt_ids.clone()).collect();
                    let outs = generator.generate_batch(&prompts, &gen_config, |_| {})?;
                    for (e, o) in chunk.iter().zip(outs) {
                        let ids: Vec<u32> = o
                            .tokens
                            .iter()
                            .copied()
                            .filter(|t| !self.data.stop_ids.contains(t))
                            .collect();
                        counts.add(&tok.decode(&ids)?, &e.gold);
                    }
                }
                Some(counts.scores())
            }
            _ => None,
        };
        Ok(EvalRecord {
            step,
            eval_loss,
            scores,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn save_checkpoint(
        &self,
        model: &Gemma,
        optim: &ModuleOptimizer,
        state: &TrainerState,
        lora: &crate::LoraConfig,
    ) -> Result<PathBuf> {
        let dir = self
            .output_dir
            .join(format!("checkpoint-{:06}", state.step));
        checkpoint::write_dir_atomic(&dir, |tmp| {
            match self.config.mode {
                Mode::Lora => extract(model, lora)?.save(tmp.join(ADAPTER_DIR))?,
                Mode::Full => {
                    let bytes = model.clone().into_record().into_bytes().map_err(|e| {
                        Error::Checkpoint {
                            path: tmp.to_path_buf(),
                            message: format!("model record: {e:?}"),
                        }
                    })?;
                    write_atomic(&tmp.join(MODEL_FILE), &bytes)?;
                }
            }
            let bytes = optim.into_bytes().map_err(|e| Error::Checkpoint {
                path: tmp.to_path_buf(),
                message: format!("optimizer state: {e:?}"),
            })?;
            write_atomic(&tmp.join(OPTIMIZER_FILE), &bytes)?;
            let text = serde_json::to_string(state).map_err(|source| Error::Json {
                path: tmp.join(STATE_FILE),
                source,
            })?;
            write_atomic(&tmp.join(STATE_FILE), text.as_bytes())
        })?;
        Ok(dir)
    }
}

fn check_same_config(dir: &Path, saved: &serde_json::Value, now: &serde_json::Value) -> Result<()> {
    if saved == now {
        return Ok(());
    }
    let field = match (saved, now) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
            .iter()
            .find(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    Err(Error::Checkpoint {
        path: dir.to_path_buf(),
        message: format!(
            "made with different settings (`{field}` differs); resume with the same config or start a new output folder"
        ),
    })
}

#[derive(Serialize)]
struct Line<'a, T> {
    kind: &'a str,
    #[serde(flatten)]
    record: &'a T,
}

/// One `metrics.jsonl` line (with its newline).
fn json_line<T: Serialize>(path: &Path, kind: &str, record: &T) -> Result<String> {
    let mut text = serde_json::to_string(&Line { kind, record }).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    Ok(text)
}

fn append_line<T: Serialize>(
    file: &mut std::fs::File,
    path: &Path,
    kind: &str,
    record: &T,
) -> Result<()> {
    file.write_all(json_line(path, kind, record)?.as_bytes())
        .map_err(|e| Error::io(path, e))
}

/// Rewrites `metrics.jsonl` from the state's history (a resumed run drops lines written after
/// its checkpoint).
fn rewrite_metrics(path: &Path, state: &TrainerState) -> Result<()> {
    let mut text = String::new();
    let mut evals = state.evals.iter().peekable();
    for s in &state.steps {
        text += &json_line(path, "step", s)?;
        while let Some(e) = evals.next_if(|e| e.step == s.step) {
            text += &json_line(path, "eval", e)?;
        }
    }
    write_atomic(path, text.as_bytes())
}

/// Loads a full fine-tuning checkpoint (`model.bpk`, burn's burnpack record) over `model`.
pub fn load_full_checkpoint(model: Gemma, path: &Path) -> Result<Gemma> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("model record: {e:?}"),
        })?;
    model
        .try_load_record(record)
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("model record does not fit this model: {e:?}"),
        })
}
