//! `lora_dropout`: dropout on the adapter's input only (PEFT's `lora_B(lora_A(dropout(x)))`),
//! drawn from seeds so a step is reproducible. The kill-and-resume test (`resume.rs`) trains
//! its LoRA run with dropout, so a resumed run redraws the masks of an unbroken one.
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::tensor::{Distribution, Tensor};
use kwx_core::{AdapterDropout, KvCache};
use kwx_data::training::TrainingExample;
use kwx_peft::train::{
    MicroBatch, Mode, TrainConfig, TrainData, Trainer, optimizer, train_step, trainable_model,
};
use kwx_peft::{Adapter, LoraConfig, attach};

use common::{base, max_diff, values};

fn rows() -> Vec<Vec<u32>> {
    (0..3)
        .map(|i| {
            (0..14)
                .map(|t| ((t * 37 + i * 11) % 400 + 3) as u32)
                .collect()
        })
        .collect()
}

/// Labels of `row`: its first 5 positions are the prompt.
fn labels(row: &[u32]) -> Vec<i64> {
    row.iter()
        .enumerate()
        .map(|(t, &x)| if t < 5 { -100 } else { i64::from(x) })
        .collect()
}

/// Losses of a run without and with dropout from a fresh adapter (B = 0): equal at step 1
/// (the masks cannot reach the output yet), apart from step 2 (B's gradient saw them).
fn assert_dropout_enters_at_step_two(plain: &[f64], dropped: &[f64]) {
    assert!(
        (plain[0] - dropped[0]).abs() < 1e-6,
        "{plain:?} vs {dropped:?}"
    );
    assert!(
        (plain[1] - dropped[1]).abs() > 1e-5,
        "{plain:?} vs {dropped:?}"
    );
}

/// An adapter on every linear layer with random, non-zero `A` and `B`.
fn random_adapter() -> Adapter {
    let model = base();
    let mut adapter = Adapter::init(&model, &LoraConfig::new(4, 8.0), 3).unwrap();
    for pair in adapter.layers.values_mut() {
        pair.b = Tensor::random(
            pair.b.shape(),
            Distribution::Uniform(-0.2, 0.2),
            &pair.b.device(),
        );
    }
    adapter
}

#[test]
fn dropout_changes_the_adapter_path_reproducibly() {
    let model = attach(base(), &random_adapter()).unwrap();
    let mut cache = KvCache::disabled(model.layers.len());
    let plain = values(model.forward_hidden(&rows(), None, &mut cache).unwrap());
    let with = |p: f64, seed: u64| {
        values(
            model
                .forward_hidden_with_dropout(&rows(), None, AdapterDropout::new(p, seed).unwrap())
                .unwrap(),
        )
    };
    // No dropout: the plain forward.
    assert!(max_diff(&with(0.0, 1), &plain) < 1e-5);
    let dropped = with(0.4, 1);
    assert!(
        max_diff(&dropped, &plain) > 1e-3,
        "dropout left the output unchanged"
    );
    assert_eq!(dropped, with(0.4, 1), "same seed, same masks");
    assert!(max_diff(&dropped, &with(0.4, 2)) > 1e-3, "another seed");
}

#[test]
fn dropout_spares_the_frozen_weights() {
    // A fresh adapter has B = 0: whatever the masks, the output is the base model's.
    let fresh = Adapter::init(&base(), &LoraConfig::new(4, 8.0), 3).unwrap();
    let model = attach(base(), &fresh).unwrap();
    let mut cache = KvCache::disabled(model.layers.len());
    let plain = values(model.forward_hidden(&rows(), None, &mut cache).unwrap());
    let dropped = values(
        model
            .forward_hidden_with_dropout(&rows(), None, AdapterDropout::new(0.5, 9).unwrap())
            .unwrap(),
    );
    assert!(max_diff(&dropped, &plain) < 1e-5);
}

/// Training from a fresh adapter (B = 0): the first step's loss cannot see the masks (the
/// adapter adds nothing yet), its update can (B's gradient is `s·(drop(x)·A)ᵀ·dy`), so the
/// second step's loss differs from a run without dropout. Runs with one seed agree bit for bit.
#[test]
fn dropout_enters_the_gradient_not_the_frozen_path() {
    let batch = MicroBatch {
        labels: rows().iter().map(|r| labels(r)).collect(),
        input_ids: rows(),
    };
    let run = |p: f64| -> Vec<f64> {
        let lora = LoraConfig::new(4, 8.0).with_dropout(p);
        let mut model = trainable_model(base(), Mode::Lora, &lora, 7, None).unwrap();
        let mut optim = optimizer(&TrainConfig::default(), &model);
        let mut losses = Vec::new();
        for step in 1..=3u64 {
            let dropout = (p > 0.0).then(|| AdapterDropout::new(p, step).unwrap());
            let (m, stats) = train_step(
                model,
                &mut optim,
                std::slice::from_ref(&batch),
                1e-2,
                1.0,
                dropout,
            )
            .unwrap();
            model = m;
            losses.push(stats.loss);
        }
        losses
    };
    let dropped = run(0.3);
    assert_dropout_enters_at_step_two(&run(0.0), &dropped);
    assert_eq!(dropped, run(0.3));
}

/// The trainer passes `lora_dropout` to its steps: the same run with and without it agrees on
/// step 1 (B = 0) and parts from step 2; two runs with dropout and one seed agree bit for bit.
#[test]
fn the_trainer_applies_lora_dropout() {
    let train: Vec<TrainingExample> = rows()
        .into_iter()
        .enumerate()
        .map(|(i, input_ids)| TrainingExample {
            index: i,
            attention_mask: vec![1; input_ids.len()],
            labels: labels(&input_ids),
            input_ids,
        })
        .collect();
    let run = |p: f64| -> Vec<f64> {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            mode: Mode::Lora,
            lora: LoraConfig::new(4, 8.0).with_dropout(p),
            max_steps: 3,
            micro_batch_size: 3,
            learning_rate: 1e-2,
            warmup_steps: 0,
            eval_every: 0,
            save_every: 0,
            ..TrainConfig::default()
        };
        let data = TrainData {
            train: train.clone(),
            pad_id: 0,
            ..TrainData::default()
        };
        let outcome = Trainer::new(config, dir.path(), data)
            .unwrap()
            .run(base(), false, |_| {})
            .unwrap();
        outcome.steps.iter().map(|s| s.loss).collect()
    };
    let plain = run(0.0);
    let dropped = run(0.3);
    assert_eq!(plain.len(), 3);
    assert_dropout_enters_at_step_two(&plain, &dropped);
    assert_eq!(dropped, run(0.3));
}
