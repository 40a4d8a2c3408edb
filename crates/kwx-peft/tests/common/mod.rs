//! Helpers shared by the tests that read the PEFT fixtures (`scripts/make_peft_fixtures.py`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test uses a part

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use kwx_core::{Gemma, SafetensorsSource, WeightSource};
use kwx_data::training::TrainingExample;
use kwx_peft::train::{Decay, MicroBatch, TrainConfig, TrainData};

/// `tests/fixtures/peft`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

/// The tiny random Gemma 3 every fixture adapter was made on.
pub fn base() -> Gemma {
    Gemma::from_pretrained(fixtures().join("base"), &Device::default()).unwrap()
}

/// `input_ids` of a fixture folder's `expected.json`.
pub fn ids(dir: &Path) -> Vec<u32> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Tensor `name` of a fixture folder's `expected.safetensors` (`[seq, vocab]` logits).
pub fn expected(dir: &Path, name: &str, vocab: usize) -> Vec<f32> {
    let mut src = SafetensorsSource::open(vec![dir.join("expected.safetensors")]).unwrap();
    let shape = src.shape(name).unwrap();
    assert_eq!(shape[1], vocab);
    src.read(name, &shape).unwrap()
}

/// A tensor's values as f32.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `train_5step/record.json`: the reference run's losses, gradient norms and learning rates.
pub fn record() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("train_5step/record.json")).unwrap(),
    )
    .unwrap()
}

/// A JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The reference run's two micro-batches (the same every step).
pub fn micro_batches() -> Vec<MicroBatch> {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("train_5step/batches.json")).unwrap(),
    )
    .unwrap();
    json["micro_batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mb| MicroBatch {
            input_ids: serde_json::from_value(mb["input_ids"].clone()).unwrap(),
            labels: serde_json::from_value(mb["labels"].clone()).unwrap(),
        })
        .collect()
}

/// The reference run's micro-batches as training data, in order (micro-batch size 2).
pub fn train_5step_data() -> TrainData {
    let rows: Vec<TrainingExample> = micro_batches()
        .into_iter()
        .flat_map(|mb| mb.input_ids.into_iter().zip(mb.labels))
        .enumerate()
        .map(|(index, (input_ids, labels))| TrainingExample {
            index,
            attention_mask: vec![1; input_ids.len()],
            input_ids,
            labels,
        })
        .collect();
    TrainData {
        train: rows,
        pad_id: 0,
        ..TrainData::default()
    }
}

/// The reference run's settings: AdamW (weight decay 0.1, ε 1e-8), linear warmup 2 then linear
/// decay over 5 steps, two micro-batches per step, clipping at 1.0.
pub fn train_5step_config() -> TrainConfig {
    TrainConfig {
        max_steps: 5,
        micro_batch_size: 2,
        gradient_accumulation_steps: 2,
        learning_rate: 1e-2,
        warmup_steps: 2,
        lr_scheduler: Decay::Linear,
        weight_decay: 0.1,
        adam_epsilon: 1e-8,
        max_grad_norm: 1.0,
        eval_every: 0,
        save_every: 0,
        keep_last: 1,
        ..TrainConfig::default()
    }
}
