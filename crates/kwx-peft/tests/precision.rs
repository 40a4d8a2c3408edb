//! Training with the matrix products in bf16 or f16 ([`Precision`]) on PEFT's reference run
//! (`train_5step/`: the base, initial adapter — random non-zero A and B — micro-batches and
//! settings of `train_parity.rs`), and f16's dynamic loss scaling.
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::module::Param;
use burn::tensor::{DType, Tensor};
use common::{
    base, fixtures, floats, micro_batches, record, train_5step_config, train_5step_data, values,
};
use kwx_core::{Gemma, Precision};
use kwx_peft::train::{
    LossScaler, Mode, Outcome, TrainConfig, Trainer, optimizer, train_step, train_step_scaled,
    trainable_model,
};
use kwx_peft::{Adapter, Error};

fn initial(base: &Gemma) -> Adapter {
    Adapter::load(fixtures().join("train_5step/initial_adapter"), base).unwrap()
}

/// The reference run under `config`, with the folder holding its checkpoints.
fn run(base: Gemma, config: TrainConfig) -> kwx_peft::Result<(Outcome, tempfile::TempDir)> {
    let adapter = initial(&base);
    let out = tempfile::tempdir().unwrap();
    let outcome = Trainer::new(config, out.path(), train_5step_data())?
        .with_adapter(adapter)?
        .run(base, false, |_| {})?;
    Ok((outcome, out))
}

fn dtype<const D: usize>(p: &Param<Tensor<D>>) -> DType {
    p.base().dtype()
}

/// LoRA over a half base: the frozen matrices are stored in the half type, the factors and the
/// norms stay f32, and a step moves the f32 factors.
#[test]
fn half_precision_lora_trains_f32_factors_over_a_half_base() {
    let b = base();
    let adapter = initial(&b);
    for precision in [Precision::Bf16, Precision::F16] {
        let half = precision.dtype().into();
        let model = b.clone().with_precision(precision).unwrap();
        let model = trainable_model(model, Mode::Lora, &adapter.config, 0, Some(&adapter)).unwrap();
        assert_eq!(model.precision(), precision);
        let layer = &model.layers[0];
        assert_eq!(dtype(&model.embed_tokens.weight), half);
        assert_eq!(dtype(&layer.mlp.down_proj.weight), half);
        assert_eq!(dtype(&layer.input_layernorm.weight), DType::F32);
        let lora = layer.self_attn.q_proj.weight.adapter().unwrap();
        assert_eq!((dtype(&lora.a), dtype(&lora.b)), (DType::F32, DType::F32));
        let before: Vec<f32> = lora.b.val().into_data().try_to_vec().unwrap();

        let mut optim = optimizer(&train_5step_config(), &model);
        let (model, stats) = match precision {
            Precision::F16 => train_step_scaled(
                model,
                &mut optim,
                &micro_batches(),
                1e-2,
                1.0,
                None,
                &mut LossScaler::new(65536.0, 2000),
            ),
            _ => train_step(model, &mut optim, &micro_batches(), 1e-2, 1.0, None),
        }
        .unwrap();
        assert!(!stats.skipped);
        let lora = model.layers[0].self_attn.q_proj.weight.adapter().unwrap();
        assert_eq!(
            dtype(&lora.b),
            DType::F32,
            "{precision}: the update keeps f32"
        );
        let after: Vec<f32> = lora.b.val().into_data().try_to_vec().unwrap();
        assert_ne!(before, after, "{precision}: the step moved the factors");
    }
}

/// The five AdamW steps in bf16 and f16 follow PEFT's f32 run: losses and gradient norms within
/// the half type's error, final factors close; and they are not f32's run (which matches to 1e-6).
#[test]
fn half_precision_training_follows_peft_f32_run() {
    let rec = record();
    let (losses, norms) = (floats(&rec["losses"]), floats(&rec["grad_norms"]));
    let want = Adapter::load(fixtures().join("train_5step/final_adapter"), &base()).unwrap();
    // (precision, loss bound, norm bound, least cosine of the factor updates)
    for (precision, loss_tol, norm_tol, min_cosine) in [
        (Precision::Bf16, 1e-2, 5e-2, 0.99),
        (Precision::F16, 5e-4, 2e-2, 0.999),
    ] {
        let config = TrainConfig {
            precision,
            ..train_5step_config()
        };
        let (outcome, _dir) = run(base(), config).unwrap();
        let mut worst_loss: f64 = 0.0;
        for (i, s) in outcome.steps.iter().enumerate() {
            let (dl, dn) = ((s.loss - losses[i]).abs(), (s.grad_norm - norms[i]).abs());
            eprintln!(
                "{precision} step {}: Δloss {dl:.2e}, Δnorm {dn:.2e}",
                s.step
            );
            assert!(
                dl < loss_tol,
                "{precision} step {}: loss {} vs {}",
                s.step,
                s.loss,
                losses[i]
            );
            assert!(
                dn < norm_tol,
                "{precision} step {}: norm {} vs {}",
                s.step,
                s.grad_norm,
                norms[i]
            );
            assert!(!s.skipped);
            assert_eq!(
                s.loss_scale,
                (precision == Precision::F16).then_some(65536.0)
            );
            worst_loss = worst_loss.max(dl);
        }
        assert!(
            worst_loss > 1e-5,
            "{precision}: {worst_loss} is f32's agreement"
        );
        // Adam's sign-like steps amplify rounding where a gradient is near zero, so compare
        // the updates as a whole: the cosine between kwx's and PEFT's (final − initial).
        let got = Adapter::load(&outcome.best_weights, &base()).unwrap();
        let start = initial(&base());
        let (mut dot, mut nx, mut ny) = (0f64, 0f64, 0f64);
        for (name, p) in &want.layers {
            let (q, s0) = (&got.layers[name], &start.layers[name]);
            for (x, y, x0) in [(&q.a, &p.a, &s0.a), (&q.b, &p.b, &s0.b)] {
                let (x, y, x0) = (values(x.clone()), values(y.clone()), values(x0.clone()));
                for ((x, y), x0) in x.iter().zip(&y).zip(&x0) {
                    let (u, v) = (f64::from(x - x0), f64::from(y - x0));
                    dot += u * v;
                    nx += u * u;
                    ny += v * v;
                }
            }
        }
        let cosine = dot / (nx.sqrt() * ny.sqrt());
        eprintln!("{precision}: cosine of the updates {cosine:.5}");
        assert!(
            cosine > min_cosine,
            "{precision}: updates agree only to cosine {cosine}"
        );
    }
}

/// f16's loss scaling: steps whose scaled gradients overflow change nothing and halve the
/// scale; finite ones count towards doubling it; the first finite step's gradient norm is the
/// unscaled one.
#[test]
fn f16_loss_scaling_skips_overflowing_steps_and_grows_back() {
    let b = base();
    let adapter = initial(&b);
    let batches = micro_batches();
    let trainable = |precision| {
        let m = b.clone().with_precision(precision).unwrap();
        trainable_model(m, Mode::Lora, &adapter.config, 0, Some(&adapter)).unwrap()
    };
    // The f32 gradient norm of the first step, for the unscaled comparison.
    let reference = {
        let m = trainable(Precision::F32);
        let mut optim = optimizer(&train_5step_config(), &m);
        train_step(m, &mut optim, &batches, 0.0, 1.0, None)
            .unwrap()
            .1
    };
    let mut model = trainable(Precision::F16);
    let mut optim = optimizer(&train_5step_config(), &model);
    let mut scaler = LossScaler::new(2f64.powi(30), 2);
    let factor = |m: &Gemma| -> Vec<f32> {
        let lora = m.layers[1].mlp.up_proj.weight.adapter().unwrap();
        lora.b.val().into_data().try_to_vec().unwrap()
    };
    let (mut skips, mut growths, mut first_good) = (0, 0, None);
    let mut last_loss = None;
    for step in 1..=24 {
        let before = (scaler, factor(&model));
        let (m, stats) =
            train_step_scaled(model, &mut optim, &batches, 1e-3, 1.0, None, &mut scaler).unwrap();
        model = m;
        if stats.skipped {
            skips += 1;
            assert_eq!(scaler.scale, before.0.scale / 2.0, "step {step}");
            assert_eq!(scaler.good_steps, 0);
            assert_eq!(
                factor(&model),
                before.1,
                "step {step}: a skipped step changed the factors"
            );
            if let Some(prev) = last_loss.filter(|_| first_good.is_none()) {
                // Nothing changed since: the same batches give the same loss, bit for bit.
                assert_eq!(f64::to_bits(prev), stats.loss.to_bits(), "step {step}");
            }
        } else {
            first_good.get_or_insert((step, stats.grad_norm));
            assert_ne!(factor(&model), before.1, "step {step}");
            if before.0.good_steps + 1 == 2 {
                growths += 1;
                assert_eq!(scaler.scale, before.0.scale * 2.0, "step {step}");
                assert_eq!(scaler.good_steps, 0);
            } else {
                assert_eq!(scaler.scale, before.0.scale, "step {step}");
                assert_eq!(scaler.good_steps, before.0.good_steps + 1);
            }
        }
        last_loss = Some(stats.loss);
    }
    let (step, norm) = first_good.expect("some step had finite gradients");
    eprintln!(
        "skips {skips}, growths {growths}, first finite step {step}, scale now {}",
        scaler.scale
    );
    assert!(step > 1 && skips >= step, "2^30 overflows f16 gradients");
    assert!(
        growths >= 2 && skips > step,
        "the scale grew back into overflow"
    );
    let rel = (norm - reference.grad_norm).abs() / reference.grad_norm;
    assert!(
        rel < 2e-2,
        "unscaled norm {norm} vs f32 {}",
        reference.grad_norm
    );
}

/// A loss that overflows in the forward pass is no gradient problem: the scale halves to f16's
/// smallest subnormal, and then the run stops with an error naming the step.
#[test]
fn f16_forward_overflow_stops_at_the_smallest_scale() {
    let mut b = base();
    // A final norm scale of 10⁶ sends the head's input past f16's range (65,504).
    let [d] = b.norm.weight.val().dims();
    b.norm.weight = Param::from_tensor(Tensor::full([d], 1e6, &b.device()));
    let config = TrainConfig {
        precision: Precision::F16,
        initial_loss_scale: LossScaler::MIN_SCALE * 4.0,
        ..train_5step_config()
    };
    match run(b, config) {
        Err(Error::NonFiniteLoss { step, what, .. }) => {
            assert_eq!(step, 3, "2^-22 → 2^-23 → 2^-24 → below: the third step");
            assert!(what.contains("smallest loss scale"), "{what}");
        }
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
}
