//! Checkpoints that lose nothing: a run killed with SIGKILL mid-training resumes with exactly
//! the losses and final weights of an uninterrupted run; a non-finite loss stops the run with an
//! error naming the step and keeps the last good checkpoint.
//!
//! The killed run is a real child process (this test binary re-run with `KWX_RESUME_CHILD`),
//! killed by the parent once it has logged a few steps.
#![allow(clippy::unwrap_used)] // test helpers

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use kwx_core::{Gemma, Precision};
use kwx_data::training::TrainingExample;
use kwx_peft::train::{Event, Mode, TrainConfig, TrainData, Trainer};
use kwx_peft::{Error, LoraConfig};

const STEPS: usize = 16;

fn base() -> Gemma {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft/base");
    Gemma::from_pretrained(dir, &Device::default()).unwrap()
}

fn data() -> TrainData {
    let train = (0..24)
        .map(|i| {
            let len = 12 + i % 7;
            let input_ids: Vec<u32> = (0..len)
                .map(|t| ((t * 31 + i * 17) % 500 + 3) as u32)
                .collect();
            let labels = input_ids
                .iter()
                .enumerate()
                .map(|(t, &x)| if t < len / 2 { -100 } else { i64::from(x) })
                .collect();
            TrainingExample {
                index: i,
                attention_mask: vec![1; len],
                input_ids,
                labels,
            }
        })
        .collect::<Vec<_>>();
    TrainData {
        eval: train[..4].to_vec(),
        train,
        pad_id: 0,
        ..TrainData::default()
    }
}

fn config() -> TrainConfig {
    config_for(Mode::Lora)
}

fn config_for(mode: Mode) -> TrainConfig {
    let lora = mode == Mode::Lora;
    TrainConfig {
        mode,
        // LoRA trains in f16 with a scale that overflows at first and grows back into overflow
        // (growth every 3 finite steps): the resumed run must continue the scaler's state.
        precision: if lora { Precision::F16 } else { Precision::F32 },
        initial_loss_scale: 2f64.powi(22),
        loss_scale_growth_interval: 3,
        // Dropout on: a resumed run must redraw the masks of the unbroken one.
        lora: LoraConfig::new(4, 8.0).with_dropout(0.1),
        max_steps: STEPS,
        micro_batch_size: 4,
        gradient_accumulation_steps: 2,
        learning_rate: 5e-3,
        warmup_steps: 3,
        weight_decay: 0.01,
        eval_every: 5,
        best_metric: kwx_peft::train::BestMetric::EvalLoss,
        save_every: 1,
        keep_last: 2,
        ..TrainConfig::default()
    }
}

fn train(mode: Mode, dir: &Path, resume: bool, throttle: Duration) -> kwx_peft::train::Outcome {
    Trainer::new(config_for(mode), dir, data())
        .unwrap()
        .run(base(), resume, |e| {
            if let Event::Step(_) = e {
                std::thread::sleep(throttle);
            }
        })
        .unwrap()
}

fn logged_steps(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"kind\":\"step\""))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn killed_lora_run_resumes_with_identical_losses() {
    kill_and_resume(Mode::Lora, "killed_lora_run_resumes_with_identical_losses");
}

#[test]
fn killed_full_run_resumes_with_identical_losses() {
    kill_and_resume(Mode::Full, "killed_full_run_resumes_with_identical_losses");
}

fn kill_and_resume(mode: Mode, test_name: &str) {
    if let Some(dir) = std::env::var_os("KWX_RESUME_CHILD") {
        // The child: train slowly until killed.
        train(mode, Path::new(&dir), false, Duration::from_millis(150));
        return;
    }
    let whole = tempfile::tempdir().unwrap();
    let reference = train(mode, whole.path(), false, Duration::ZERO);
    assert_eq!(reference.steps.len(), STEPS);

    let killed = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture"])
        .env("KWX_RESUME_CHILD", killed.path())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while logged_steps(killed.path()) < 7 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "child too slow"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no clean-up
    let status = child.wait().unwrap();
    assert!(!status.success());
    let logged = logged_steps(killed.path());
    assert!(logged < STEPS, "killed after {logged} steps");

    let resumed = train(mode, killed.path(), true, Duration::ZERO);
    assert_eq!(resumed.steps.len(), STEPS);
    for (a, b) in reference.steps.iter().zip(&resumed.steps) {
        assert_eq!(
            a.loss.to_bits(),
            b.loss.to_bits(),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        assert_eq!(
            a.grad_norm.to_bits(),
            b.grad_norm.to_bits(),
            "step {}",
            a.step
        );
        assert_eq!(a.lr.to_bits(), b.lr.to_bits(), "step {}", a.step);
        assert_eq!(
            (a.loss_scale, a.skipped),
            (b.loss_scale, b.skipped),
            "step {}",
            a.step
        );
    }
    if mode == Mode::Lora {
        let scales: Vec<(f64, bool)> = reference
            .steps
            .iter()
            .map(|s| (s.loss_scale.unwrap(), s.skipped))
            .collect();
        eprintln!("loss scales and skips: {scales:?}");
        let skipped = scales.iter().filter(|s| s.1).count();
        let grew = scales.windows(2).any(|w| w[1].0 > w[0].0);
        assert!(skipped > 0 && grew, "the scaler must move: {scales:?}");
        // A skipped step changes no weight and does not advance the schedule: the next step
        // runs at its learning rate; an applied step does advance it (warmup, then decay).
        for w in reference.steps.windows(2) {
            if w[0].skipped {
                assert_eq!(w[1].lr, w[0].lr, "step {} after a skip", w[1].step);
            } else {
                assert_ne!(w[1].lr, w[0].lr, "step {} after an update", w[1].step);
            }
        }
    }
    let evals = |o: &kwx_peft::train::Outcome| -> Vec<(usize, u64)> {
        o.evals
            .iter()
            .map(|e| (e.step, e.eval_loss.unwrap().to_bits()))
            .collect()
    };
    assert_eq!(evals(&reference), evals(&resumed));
    let files: &[&str] = match mode {
        Mode::Lora => &[
            "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json",
        ],
        Mode::Full => &["model.bpk"],
    };
    for file in files {
        assert_eq!(
            std::fs::read(reference.last.join(file)).unwrap(),
            std::fs::read(resumed.last.join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(
        resumed.best_weights,
        resumed
            .best
            .clone()
            .unwrap()
            .join(files[0].split('/').next().unwrap())
    );
    // metrics.jsonl holds each step once, in order.
    assert_eq!(logged_steps(killed.path()), STEPS);
    // Only the last `keep_last` checkpoints (plus the best) remain, and no temporary folders.
    let names: Vec<String> = std::fs::read_dir(killed.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let checkpoints = names
        .iter()
        .filter(|n| n.starts_with("checkpoint-"))
        .count();
    assert!((2..=3).contains(&checkpoints), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with(".kwx-tmp")),
        "{names:?}"
    );
}

#[test]
fn non_finite_loss_names_the_step_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        learning_rate: 1e30,
        warmup_steps: 0,
        // Without loss scaling, whose overflow handling tests/precision.rs checks.
        precision: Precision::F32,
        max_grad_norm: 0.0,
        eval_every: 0,
        ..config()
    };
    let err = Trainer::new(config, dir.path(), data())
        .unwrap()
        .run(base(), false, |_| {})
        .unwrap_err();
    let Error::NonFiniteLoss {
        step,
        last_checkpoint: Some(kept),
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert!(*step >= 2, "{err}");
    assert!(
        kept.join("adapter/adapter_model.safetensors").is_file(),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("step {step}")), "{err}");
    assert!(
        kept.ends_with(format!("checkpoint-{:06}", step - 1)),
        "{err}"
    );
}

#[test]
fn resuming_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = TrainConfig {
        max_steps: 2,
        ..config()
    };
    Trainer::new(short.clone(), dir.path(), data())
        .unwrap()
        .run(base(), false, |_| {})
        .unwrap();
    let other = TrainConfig {
        learning_rate: 1e-3,
        ..short
    };
    let err = Trainer::new(other, dir.path(), data())
        .unwrap()
        .run(base(), true, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("learning_rate") && err.contains("checkpoint-000002"),
        "{err}"
    );
}

/// A fresh run on a folder that holds another run's checkpoints is refused before it writes
/// anything (its checkpoints and best pointer would mix with the old run's); resuming is not.
#[test]
fn a_fresh_run_on_a_folder_with_checkpoints_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = TrainConfig {
        max_steps: 2,
        eval_every: 0,
        ..config()
    };
    let trainer = Trainer::new(short, dir.path(), data()).unwrap();
    trainer.check_output(false).unwrap();
    let first = trainer.run(base(), false, |_| {}).unwrap();
    let metrics = std::fs::read(dir.path().join("metrics.jsonl")).unwrap();
    let err = trainer.run(base(), false, |_| {}).unwrap_err();
    let Error::OutputHasRun { path, checkpoint } = &err else {
        panic!("{err}");
    };
    assert_eq!(path, dir.path());
    assert_eq!(checkpoint, &first.last);
    let message = err.to_string();
    assert!(
        message.contains("--resume") && message.contains("checkpoint-000002"),
        "{message}"
    );
    assert!(matches!(
        trainer.check_output(false),
        Err(Error::OutputHasRun { .. })
    ));
    assert_eq!(
        std::fs::read(dir.path().join("metrics.jsonl")).unwrap(),
        metrics,
        "the refused run wrote nothing"
    );
    trainer.check_output(true).unwrap();
    let resumed = trainer.run(base(), true, |_| {}).unwrap();
    assert_eq!(resumed.last, first.last);
}

/// A second run on the folder a run is writing to is refused with an error naming the holder;
/// the first run finishes untouched, and once it has, the folder is free again.
#[test]
fn a_second_run_on_a_held_output_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        max_steps: 4,
        eval_every: 0,
        ..config()
    };
    let first = {
        let (config, path) = (config.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            Trainer::new(config, &path, data())
                .unwrap()
                .run(base(), false, |e| {
                    if let Event::Step(_) = e {
                        std::thread::sleep(Duration::from_millis(400));
                    }
                })
        })
    };
    let started = Instant::now();
    while logged_steps(dir.path()) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no step logged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = Trainer::new(config.clone(), dir.path(), data())
        .unwrap()
        .run(base(), true, |_| {})
        .unwrap_err();
    let Error::OutputInUse { path, holder } = &err else {
        panic!("{err}");
    };
    assert_eq!(path, &dir.path().join(kwx_peft::train::LOCK_FILE));
    assert_eq!(
        holder.as_deref(),
        Some(format!("process {}", std::process::id()).as_str())
    );
    assert!(err.to_string().contains("another training run"), "{err}");

    let outcome = first.join().unwrap().unwrap();
    assert_eq!(outcome.steps.len(), 4);
    assert!(
        outcome.last.ends_with("checkpoint-000004"),
        "{:?}",
        outcome.last
    );
    assert_eq!(logged_steps(dir.path()), 4);
    // Free again: resuming the finished run finds its last checkpoint and has nothing to do.
    let resumed = Trainer::new(config, dir.path(), data())
        .unwrap()
        .run(base(), true, |_| {})
        .unwrap();
    assert_eq!(resumed.steps.len(), 4);
    assert_eq!(resumed.last, outcome.last);
}
