//! Fine-tunes Gemma on a keyword dataset: LoRA (strategy 3, instruction tuning) or full SFT
//! (strategy 4), with PEFT-compatible adapters, checkpoints that resume exactly, validation
//! F1 of generated answers, a progress bar, `metrics.jsonl` and a loss/F1 chart.
//!
//! ```text
//! # the real Gemma 3 270M (scripts/fetch_model.sh), a kwx-data training file, LoRA defaults:
//! cargo run --release --example finetune -- --train data/train.jsonl --out runs/lora
//! # any folder or GGUF, a TOML config, flags override it; --resume continues a killed run:
//! cargo run --release --example finetune -- --model models/gemma-3-270m \
//!     --train train.jsonl --eval val.jsonl --config lora.toml --max-steps 300 --resume
//! ```
//! The training file holds kwx-data records, `{"text","labels"}` (rendered under
//! `--instruction`) or `{"instruction","input","output"}`. The last line printed on stdout is
//! the path of the best adapter folder (LoRA) or GGUF model (full).
#![allow(clippy::print_stdout)]

#[path = "common/alloc.rs"]
mod alloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kwx::core::burn::tensor::Device;
use kwx::core::gguf::{GgufVocab, WriteOptions, write_gemma};
use kwx::core::{Gemma, home};
use kwx::peft::train::{self, Event, Mode, Outcome, TrainConfig, Trainer};
use kwx::plot::{Panel, Series, line_charts};

#[derive(Parser, Debug)]
#[command(about = "Fine-tune Gemma (LoRA or full) on a keyword JSONL dataset")]
struct Args {
    /// Hugging Face model folder or `.gguf` file; default: the Gemma 3 270M that
    /// scripts/fetch_model.sh fetched.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A `tokenizer.json` to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Training records (JSONL).
    #[arg(long)]
    train: PathBuf,
    /// Validation records (JSONL); default: `--eval-fraction` of the training file.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Share of the training file held out for validation when `--eval` is absent.
    #[arg(long, default_value_t = 0.05)]
    eval_fraction: f64,
    /// Training settings (TOML, see `kwx_peft::train::TrainConfig`); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `lora` or `full`.
    #[arg(long)]
    mode: Option<String>,
    /// Optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Epochs (when `--max-steps` is not given).
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Rows per micro-batch.
    #[arg(long)]
    batch: Option<usize>,
    /// Longest example in tokens.
    #[arg(long)]
    max_len: Option<usize>,
    /// Validate every N steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Matrix products in `f32`, `bf16` or `f16` (trainable weights stay f32).
    #[arg(long)]
    precision: Option<kwx::core::Precision>,
    /// Validation examples scored by generation.
    #[arg(long)]
    eval_generate: Option<usize>,
    /// Validation examples used (loss and generation), the first N of the validation set.
    #[arg(long, default_value_t = 64)]
    eval_limit: usize,
    /// Instruction for `{"text","labels"}` records.
    #[arg(long, default_value = kwx::data::builder::DEFAULT_INSTRUCTION)]
    instruction: String,
    /// Output folder: checkpoints, metrics.jsonl, curves.png.
    #[arg(long, default_value = "runs/finetune")]
    out: PathBuf,
    /// Continue from the newest checkpoint in `--out`.
    #[arg(long)]
    resume: bool,
}

fn main() -> anyhow::Result<()> {
    alloc::setup();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::default(),
    };
    if let Some(m) = &args.mode {
        config.mode = match m.as_str() {
            "lora" => Mode::Lora,
            "full" => Mode::Full,
            other => anyhow::bail!("--mode {other}: use lora or full"),
        };
    }
    macro_rules! set {
        ($($flag:ident => $field:ident),*) => {$(
            if let Some(v) = args.$flag { config.$field = v; }
        )*};
    }
    set!(max_steps => max_steps, epochs => epochs, lr => learning_rate, batch => micro_batch_size,
         max_len => max_len, eval_every => eval_every, eval_generate => eval_generate,
         precision => precision);
    config.validate("command line")?;

    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => home::gemma3_270m_gguf()?,
    };
    let device = Device::default();
    let (model, tokenizer) =
        Gemma::load_with_tokenizer(&model_path, args.tokenizer.as_deref(), &device)
            .with_context(|| format!("loading {}", model_path.display()))?;

    let records = train::read_records(&args.train, &args.instruction)?;
    let (train_records, eval_records) = match &args.eval {
        Some(p) => (records, train::read_records(p, &args.instruction)?),
        None => train::split_eval(records, args.eval_fraction, config.seed),
    };
    let eval_records = &eval_records[..args.eval_limit.min(eval_records.len())];
    let prepared = train::prepare(&tokenizer, &train_records, eval_records, config.max_len)?;
    eprintln!(
        "{} training / {} validation examples ({} longer than {} tokens left out)",
        prepared.data.train.len(),
        prepared.data.eval.len(),
        prepared.dropped,
        config.max_len
    );

    let trainer =
        Trainer::new(config.clone(), &args.out, prepared.data)?.with_tokenizer(&tokenizer);
    let bar = ProgressBar::new(trainer.total_steps() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{bar:30}] {msg} ({elapsed} elapsed, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    // Without a terminal the bar is hidden (and so are its lines): log plain lines instead.
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    // Before the base model's evaluation: a fresh run on a folder with checkpoints is refused.
    trainer.check_output(args.resume)?;
    let before = if args.resume {
        None
    } else {
        let e = trainer.evaluate(&model, 0)?;
        say(format!("before training: {}", describe(&e)));
        Some(e)
    };
    let mut outcome = trainer.run(model.clone(), args.resume, |event| match event {
        Event::Start {
            step,
            total,
            trainable,
        } => {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            say(format!("training {trainable} values for {total} steps"));
        }
        Event::Step(s) => {
            bar.set_position(s.step as u64);
            let mut line = format!(
                "loss {:.4} lr {:.2e} {:.0} tok/s",
                s.loss, s.lr, s.tokens_per_s
            );
            if let Some(scale) = s.loss_scale {
                line += &format!(" scale {scale}");
            }
            if s.skipped {
                // f16: the scaled gradients overflowed; the scale halves, no weight changed.
                line += " (step skipped: gradients overflowed)";
            }
            if bar.is_hidden() && s.step % 10 == 0 {
                eprintln!("step {}/{}: {line}", s.step, bar.length().unwrap_or(0));
            }
            bar.set_message(line);
        }
        Event::Eval(e) => say(format!("step {}: {}", e.step, describe(e))),
        Event::Checkpoint(p) => bar.set_message(format!("saved {}", p.display())),
        _ => {}
    })?;
    bar.finish_and_clear();
    if let Some(e) = before {
        outcome.evals.insert(0, e);
    }
    let steps = outcome.steps.len().max(1);
    let tokens: usize = outcome.steps.iter().map(|s| s.tokens).sum();
    let mean_rate = outcome.steps.iter().map(|s| s.tokens_per_s).sum::<f64>() / steps as f64;
    eprintln!(
        "{} steps, {tokens} tokens, mean {mean_rate:.0} tokens/s{}",
        outcome.steps.len(),
        if outcome.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );

    plot(&outcome, &args.out.join("curves.png"))?;
    eprintln!(
        "metrics: {}  chart: {}",
        args.out.join("metrics.jsonl").display(),
        args.out.join("curves.png").display()
    );
    let best = match config.mode {
        Mode::Lora => outcome.best_weights.clone(),
        Mode::Full => {
            // The checkpoint is burn's record; hand users a GGUF kwx and llama.cpp both load.
            let trained = train::load_full_checkpoint(model, &outcome.best_weights)?;
            let vocab =
                GgufVocab::from_hf_tokenizer(tokenizer.inner(), trained.config().vocab_size)?;
            let path = args.out.join("best-model.gguf");
            let options = WriteOptions {
                name: "kwx fine-tune".into(),
                llama_cpp_compatible: false,
                ..WriteOptions::default()
            };
            write_gemma(&trained, &vocab, &path, &options)?;
            path
        }
    };
    println!("{}", best.display());
    Ok(())
}

fn describe(e: &train::EvalRecord) -> String {
    format!(
        "eval loss {} F1 {} ({:.0} s)",
        e.eval_loss.map_or("-".into(), |l| format!("{l:.4}")),
        e.scores.map_or("-".into(), |s| format!(
            "{:.3} (P {:.3} R {:.3}, valid JSON {:.2})",
            s.f1, s.precision, s.recall, s.valid_json
        )),
        e.seconds
    )
}

fn plot(outcome: &Outcome, path: &std::path::Path) -> anyhow::Result<()> {
    // Steps f16 loss scaling skipped are left out: their loss may have overflowed (logged as 0).
    let steps = |f: &dyn Fn(&train::StepRecord) -> f64| -> Vec<(f64, f64)> {
        outcome
            .steps
            .iter()
            .filter(|s| !s.skipped)
            .map(|s| (s.step as f64, f(s)))
            .collect()
    };
    let evals = |f: &dyn Fn(&train::EvalRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        outcome
            .evals
            .iter()
            .filter_map(|e| f(e).map(|v| (e.step as f64, v)))
            .collect()
    };
    let mut panels = vec![Panel {
        title: "Loss".into(),
        x_label: "step".into(),
        y_label: "loss per label token".into(),
        series: vec![
            Series {
                name: "train".into(),
                points: steps(&|s| s.loss),
            },
            Series {
                name: "validation".into(),
                points: evals(&|e| e.eval_loss),
            },
        ],
        y_range: None,
    }];
    let f1 = evals(&|e| e.scores.map(|s| s.f1));
    if !f1.is_empty() {
        panels.push(Panel {
            title: "Validation keywords".into(),
            x_label: "step".into(),
            y_label: "score".into(),
            series: vec![
                Series {
                    name: "F1".into(),
                    points: f1,
                },
                Series {
                    name: "precision".into(),
                    points: evals(&|e| e.scores.map(|s| s.precision)),
                },
                Series {
                    name: "recall".into(),
                    points: evals(&|e| e.scores.map(|s| s.recall)),
                },
            ],
            y_range: Some((0.0, 1.0)),
        });
    }
    line_charts(path, &panels)?;
    Ok(())
}
