//! The trainer against a reference PEFT + PyTorch run (`scripts/make_peft_fixtures.py`,
//! `train_5step/`): the same base, initial adapter (random non-zero A and B) and micro-batches;
//! AdamW (weight decay 0.1, ε 1e-8), linear warmup 2 then linear decay over 5 steps, two
//! micro-batches per step normalised by the step's 26 label tokens (9 + 17), global-norm
//! clipping at 1.0 (biting on steps 1 and 2).
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use common::{
    base, fixtures, floats, micro_batches, record, train_5step_config, train_5step_data, values,
};
use kwx_core::{Gemma, SafetensorsSource, WeightSource};
use kwx_peft::train::{MicroBatch, Trainer, completion_loss_sum};
use kwx_peft::{Adapter, attach};

const TOL: f64 = 1e-4;

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn first_step_gradients_equal_peft() {
    let base = base().train().freeze();
    let adapter = Adapter::load(fixtures().join("train_5step/initial_adapter"), &base).unwrap();
    let model = attach(base, &adapter).unwrap();
    let batches = micro_batches();
    let total: usize = batches.iter().map(MicroBatch::label_tokens).sum();
    assert_eq!(total, 26);
    let mut acc = GradientsAccumulator::<Gemma>::new();
    let mut loss = 0.0;
    for mb in &batches {
        let (sum, _) = completion_loss_sum(&model, mb).unwrap();
        loss += f64::from(sum.clone().into_scalar::<f32>());
        let grads = sum.div_scalar(total as f64).backward();
        acc.accumulate(&model, GradientsParams::from_grads(grads, &model));
    }
    let rec = record();
    let want_loss = floats(&rec["losses"])[0];
    assert!(
        (loss / total as f64 - want_loss).abs() < TOL,
        "{loss} vs {want_loss}"
    );
    let grads = acc.grads();
    let mut src =
        SafetensorsSource::open(vec![fixtures().join("train_5step/grads_step1.safetensors")])
            .unwrap();
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for (name, lin) in kwx_peft::inject::linears(&model) {
        let lora = lin.weight.adapter().unwrap();
        for (factor, id) in [("A", lora.a.id), ("B", lora.b.id)] {
            let key = format!("base_model.model.{name}.lora_{factor}.weight");
            let shape = src.shape(&key).unwrap();
            let want = src.read(&key, &shape).unwrap();
            let got = values(grads.get::<2>(id).unwrap().transpose());
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 1e-6, "{key}: reference gradient is zero");
            let d = max_diff(&got, &want);
            worst = worst.max(d);
            assert!(d < TOL, "{key}: gradient differs by {d} (max |g| {scale})");
            checked += 1;
        }
    }
    assert_eq!(checked, 42, "3 layers x 7 modules x 2 factors");
    assert!(src.unused().is_empty(), "{:?}", src.unused());
    eprintln!("worst gradient difference {worst:e}");
}

#[test]
fn five_adamw_steps_equal_peft() {
    let base = base();
    let initial = Adapter::load(fixtures().join("train_5step/initial_adapter"), &base).unwrap();
    let config = train_5step_config();
    let out = tempfile::tempdir().unwrap();
    let data = train_5step_data();
    let trainer = Trainer::new(config, out.path(), data)
        .unwrap()
        .with_adapter(initial)
        .unwrap();
    let outcome = trainer.run(base.clone(), false, |_| {}).unwrap();
    let rec = record();
    let (losses, norms, lrs) = (
        floats(&rec["losses"]),
        floats(&rec["grad_norms"]),
        floats(&rec["lrs"]),
    );
    assert_eq!(outcome.steps.len(), 5);
    for (i, s) in outcome.steps.iter().enumerate() {
        assert!(
            (s.loss - losses[i]).abs() < TOL,
            "step {}: loss {} vs {}",
            i + 1,
            s.loss,
            losses[i]
        );
        assert!(
            (s.grad_norm - norms[i]).abs() < TOL,
            "step {}: norm {} vs {}",
            i + 1,
            s.grad_norm,
            norms[i]
        );
        assert!(
            (s.lr - lrs[i]).abs() < 1e-12,
            "step {}: lr {} vs {}",
            i + 1,
            s.lr,
            lrs[i]
        );
        assert_eq!(s.label_tokens, 26);
    }
    let fin = Adapter::load(&outcome.best_weights, &base).unwrap();
    let want = Adapter::load(fixtures().join("train_5step/final_adapter"), &base).unwrap();
    let mut worst: f64 = 0.0;
    for (name, p) in &want.layers {
        let q = &fin.layers[name];
        let d = max_diff(&values(q.a.clone()), &values(p.a.clone()))
            .max(max_diff(&values(q.b.clone()), &values(p.b.clone())));
        worst = worst.max(d);
        assert!(d < TOL, "{name}: final factors differ by {d}");
    }
    eprintln!("worst final-factor difference {worst:e}");
}
