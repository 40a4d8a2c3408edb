//! Micro-batches and the completion-only loss.

use burn::tensor::{Int, Tensor, TensorData};
use kwx_core::{AdapterDropout, Gemma, KvCache, LabelLoss};
use kwx_data::training::{IGNORE_INDEX, TrainingExample};

use crate::error::{Error, Result};

/// Right-padded rows and their labels (labels aligned with inputs, HF style: the logits at
/// position `t` predict `labels[t + 1]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Token ids, `[batch][seq]`, right-padded.
    pub input_ids: Vec<Vec<u32>>,
    /// Labels, `IGNORE_INDEX` on prompt and padding.
    pub labels: Vec<Vec<i64>>,
}

impl MicroBatch {
    /// Pads `examples` on the right with `pad_id` to a common length.
    pub fn from_examples(examples: &[&TrainingExample], pad_id: u32) -> Result<Self> {
        let seq = examples
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0);
        if seq < 2 {
            return Err(Error::Data(
                "a micro-batch needs rows of at least 2 tokens".into(),
            ));
        }
        let mut input_ids = Vec::with_capacity(examples.len());
        let mut labels = Vec::with_capacity(examples.len());
        for e in examples {
            if e.labels.len() != e.input_ids.len() {
                return Err(Error::Data(format!(
                    "example {}: {} labels for {} tokens",
                    e.index,
                    e.labels.len(),
                    e.input_ids.len()
                )));
            }
            let mut ids = e.input_ids.clone();
            let mut lab = e.labels.clone();
            ids.resize(seq, pad_id);
            lab.resize(seq, IGNORE_INDEX);
            input_ids.push(ids);
            labels.push(lab);
        }
        Ok(Self { input_ids, labels })
    }

    /// Label tokens that enter the loss (after the shift).
    pub fn label_tokens(&self) -> usize {
        self.labels
            .iter()
            .map(|l| l.iter().skip(1).filter(|&&x| x != IGNORE_INDEX).count())
            .sum()
    }

    /// All tokens, padding included.
    pub fn tokens(&self) -> usize {
        self.input_ids.iter().map(Vec::len).sum()
    }
}

/// The summed cross-entropy over the label positions of `batch`, and how many there are.
///
/// Only the hidden states at label positions are projected to the vocabulary: for a prompt of
/// `p` tokens and an answer of `a`, the `[seq × vocab]` logits become `[a × vocab]` (Gemma 3's
/// 262k-entry vocabulary makes that the largest tensor of a step otherwise), and those through
/// [`Gemma::label_nll`]: a block of rows at a time, the gradient computed with the loss, so
/// no `[a × vocab]` tensor waits for the backward pass.
///
/// # Shapes
/// `batch: [b][seq]` → scalar `[1]`
pub fn completion_loss_sum(model: &Gemma, batch: &MicroBatch) -> Result<(Tensor<1>, usize)> {
    completion_loss_sum_with(model, batch, None)
}

/// [`completion_loss_sum`] with `dropout` on the inputs of the LoRA factors (training).
pub fn completion_loss_sum_with(
    model: &Gemma,
    batch: &MicroBatch,
    dropout: Option<AdapterDropout>,
) -> Result<(Tensor<1>, usize)> {
    let device = model.device();
    match completion_inputs(model, batch, dropout)? {
        Some((picked, targets)) => {
            let n = targets.len();
            Ok((model.label_nll(picked, &targets)?, n))
        }
        None => Ok((Tensor::zeros([1], &device), 0)),
    }
}

/// [`completion_loss_sum_with`] for a caller that scales the sum before `backward` (the
/// trainer: 1 / label tokens, times the loss scale): the loss and a scalar whose gradient is
/// `grad_scale` times its gradient ([`Gemma::label_nll_scaled`]), and the label count.
pub(crate) fn completion_loss_sum_scaled(
    model: &Gemma,
    batch: &MicroBatch,
    dropout: Option<AdapterDropout>,
    grad_scale: f64,
) -> Result<(LabelLoss, usize)> {
    match completion_inputs(model, batch, dropout)? {
        Some((picked, targets)) => {
            let n = targets.len();
            Ok((model.label_nll_scaled(picked, &targets, grad_scale)?, n))
        }
        None => Ok((
            LabelLoss {
                sum: 0.0,
                scaled: None,
            },
            0,
        )),
    }
}

/// The final hidden states at `batch`'s label positions, `[n, hidden]`, and the labels there;
/// `None` when it has none.
fn completion_inputs(
    model: &Gemma,
    batch: &MicroBatch,
    dropout: Option<AdapterDropout>,
) -> Result<Option<(Tensor<2>, Vec<u32>)>> {
    let b = batch.input_ids.len();
    let seq = batch.input_ids.first().map_or(0, Vec::len);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (r, labels) in batch.labels.iter().enumerate() {
        for t in 0..seq.saturating_sub(1) {
            let y = labels[t + 1];
            if y != IGNORE_INDEX {
                if y < 0 || y as usize >= model.config().vocab_size {
                    return Err(Error::Data(format!(
                        "row {r}, position {}: label {y} is outside the vocabulary",
                        t + 1
                    )));
                }
                rows.push((r * seq + t) as i64);
                targets.push(y as u32);
            }
        }
    }
    let n = rows.len();
    let device = model.device();
    if n == 0 {
        return Ok(None);
    }
    let hidden = match dropout {
        Some(d) => model.forward_hidden_with_dropout(&batch.input_ids, None, d)?,
        None => {
            let mut cache = KvCache::disabled(model.layers.len());
            model.forward_hidden(&batch.input_ids, None, &mut cache)?
        }
    };
    let h = model.config().hidden_size;
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let picked = hidden.reshape([b * seq, h]).select(0, idx);
    Ok(Some((picked, targets)))
}
