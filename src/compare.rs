//! The comparison harness: every strategy on the same model, dictionary and test set, scored the
//! same way. `examples/compare.rs` is its command line; tests drive [`run`] directly.
//!
//! Data: the bundled dictionary with a share of its terms held out (`HeldOutSplit`): training
//! examples, few-shot examples, the RAG index, the feedback scan and the dictionary baseline never
//! see them, so the held-out scores measure what a strategy does with terms outside the
//! dictionary. Training and validation examples are generated from the dictionary (kwx-data's
//! builder); the test set is a `{"text","labels"}` JSONL file or the generated test split.
//!
//! Strategies ([`Strategy`]): `dictionary` (Aho–Corasick baseline), `zero-shot` (instruction +
//! category definitions), `few-shot` (+ the most similar training examples), `feedback`
//! (+ "You missed …" retries), `rag` (few-shot + retrieved definitions), `lora` (LoRA instruction
//! tuning), `lora-tokenizer` (domain terms as single tokens + LoRA + their embedding rows), `sft`
//! (full fine-tuning on text → labels). Trained strategies train here unless an adapter or model
//! is given ([`CompareConfig::given`]).
//!
//! Out: `report.json` (`{"strategies":[{"name","precision","recall","f1","f1_lenient",
//! "seconds_per_text",…}]}`), `report.md`, `report.png` (bars), and per strategy
//! `predictions/<name>.jsonl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kwx_core::burn::tensor::Device;
use kwx_core::extract::{
    Constrain, DictionaryExtractor, Example as Shot, ExamplePool, KeywordExtractor, PromptConfig,
    PromptExtractor,
};
use kwx_core::{Gemma, GemmaTokenizer, ResizeOptions, RowInit};
use kwx_data::builder::{DEFAULT_INSTRUCTION, DatasetBuilder, Example};
use kwx_data::dictionary::{Dictionary, Entry};
use kwx_data::eval::{EvalExample, EvalReport, Evaluator, Scores};
use kwx_data::jsonl::{InstructionRecord, SftRecord};
use kwx_data::split::HeldOutSplit;
use kwx_peft::train::{self, Mode, StepRecord, TrainConfig, Trainer};
use kwx_peft::{LoraConfig, TokenIndices};
use kwx_rag::{Chunk, IndexBuilder, RagContext};
use serde::{Deserialize, Serialize};

use crate::plot::{Bars, bar_chart};

/// Why a comparison failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// The model layer (loading, generation, extraction).
    #[error(transparent)]
    Core(#[from] kwx_core::Error),
    /// Training or adapters.
    #[error(transparent)]
    Peft(#[from] kwx_peft::Error),
    /// The retrieval index.
    #[error(transparent)]
    Rag(#[from] kwx_rag::RagError),
    /// Extending the tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] kwx_tokenizer::Error),
    /// Reading the test set.
    #[error(transparent)]
    Jsonl(#[from] kwx_data::jsonl::JsonlError),
    /// Splitting the dictionary or generating data.
    #[error(transparent)]
    Split(#[from] kwx_data::split::SplitError),
    /// Drawing the chart.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// Writing a report file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting that cannot work.
    #[error("compare setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

type Result<T, E = CompareError> = std::result::Result<T, E>;

/// One strategy of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Aho–Corasick over the dictionary (no model).
    Dictionary,
    /// Instruction and category definitions.
    ZeroShot,
    /// Zero-shot plus the most similar training examples.
    FewShot,
    /// Few-shot plus "You missed …" retries.
    Feedback,
    /// Few-shot plus retrieved definitions.
    Rag,
    /// LoRA instruction tuning.
    Lora,
    /// Domain terms as single tokens, their rows and a LoRA trained together.
    LoraTokenizer,
    /// Full fine-tuning on text → labels.
    Sft,
}

impl Strategy {
    /// Every strategy, cheapest first.
    pub const ALL: [Strategy; 8] = [
        Strategy::Dictionary,
        Strategy::ZeroShot,
        Strategy::FewShot,
        Strategy::Feedback,
        Strategy::Rag,
        Strategy::Lora,
        Strategy::LoraTokenizer,
        Strategy::Sft,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Dictionary => "dictionary",
            Strategy::ZeroShot => "zero-shot",
            Strategy::FewShot => "few-shot",
            Strategy::Feedback => "feedback",
            Strategy::Rag => "rag",
            Strategy::Lora => "lora",
            Strategy::LoraTokenizer => "lora-tokenizer",
            Strategy::Sft => "sft",
        }
    }

    /// The strategy called `name`.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| CompareError::Config {
                field: "strategies",
                message: format!(
                    "unknown strategy {name:?}; choose from {}",
                    Self::ALL.map(Strategy::name).join(",")
                ),
            })
    }

    /// A comma-separated list of names.
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        let mut out: Vec<Strategy> = Vec::new();
        for name in list.split(',').filter(|s| !s.trim().is_empty()) {
            let s = Self::from_name(name)?;
            if !out.contains(&s) {
                out.push(s);
            }
        }
        if out.is_empty() {
            return Err(CompareError::Config {
                field: "strategies",
                message: "no strategy named".into(),
            });
        }
        Ok(out)
    }

    /// Whether it trains (or loads trained weights).
    pub fn trains(self) -> bool {
        matches!(
            self,
            Strategy::Lora | Strategy::LoraTokenizer | Strategy::Sft
        )
    }
}

/// Everything a comparison needs.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// A Hugging Face folder or `.gguf`.
    pub model: PathBuf,
    /// A `tokenizer.json` instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// Test records (`{"text","labels"}` JSONL); `None`: the generated test split.
    pub test: Option<PathBuf>,
    /// The dictionary (default: the bundled one).
    pub dictionary: Option<PathBuf>,
    /// Strategies to run, in this order.
    pub strategies: Vec<Strategy>,
    /// Output folder.
    pub out: PathBuf,
    /// Test texts used (the first N; 0 = all).
    pub limit: usize,
    /// Seed of the held-out split, the generated data and training.
    pub seed: u64,
    /// Share of dictionary terms held out of everything the strategies see.
    pub held_out_fraction: f32,
    /// Generated (train, validation, test) examples.
    pub sizes: (usize, usize, usize),
    /// Few-shot examples per text.
    pub few_shot: usize,
    /// Feedback rounds.
    pub retries: usize,
    /// Output constraint of every model strategy.
    pub constrain: Constrain,
    /// Texts per generation batch.
    pub batch_size: usize,
    /// Longest answer in tokens.
    pub max_new_tokens: usize,
    /// Token budget of the RAG context.
    pub rag_budget: usize,
    /// Training of `lora` and `lora-tokenizer`.
    pub lora: TrainConfig,
    /// Training of `sft`.
    pub sft: TrainConfig,
    /// Trained weights to load instead of training: an adapter folder for `lora` /
    /// `lora-tokenizer` (the latter also needs `tokenizer.json` in it), a model (folder or
    /// `.gguf`) for `sft`.
    pub given: BTreeMap<Strategy, PathBuf>,
}

impl CompareConfig {
    /// Settings for a run that fits a CPU in under 10 minutes: 10 test texts, 10 LoRA steps,
    /// 6 full fine-tuning steps (the trained strategies are barely trained: this checks the
    /// pipeline, [`Self::full`] measures).
    pub fn quick(model: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        let lora = TrainConfig {
            max_steps: 10,
            micro_batch_size: 4,
            learning_rate: 1e-3,
            warmup_steps: 2,
            max_len: 160,
            eval_every: 0,
            eval_generate: 0,
            save_every: 0,
            keep_last: 1,
            ..TrainConfig::default()
        };
        let sft = TrainConfig {
            mode: Mode::Full,
            max_steps: 6,
            learning_rate: 5e-5,
            ..lora.clone()
        };
        Self {
            model: model.into(),
            tokenizer: None,
            test: None,
            dictionary: None,
            strategies: Strategy::ALL.to_vec(),
            out: out.into(),
            limit: 10,
            seed: 0,
            held_out_fraction: 0.1,
            sizes: (400, 4, 200),
            few_shot: 3,
            retries: 1,
            constrain: Constrain::Json,
            batch_size: 8,
            max_new_tokens: 48,
            rag_budget: 160,
            lora,
            sft,
            given: BTreeMap::new(),
        }
    }

    /// The documented run (about an hour on two CPU cores): 48 test texts, 64 LoRA steps of 4
    /// rows on 2,000 generated examples, 32 full fine-tuning steps.
    pub fn full(model: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        let quick = Self::quick(model, out);
        Self {
            limit: 48,
            sizes: (2000, 8, 200),
            lora: TrainConfig {
                max_steps: 64,
                warmup_steps: 6,
                ..quick.lora.clone()
            },
            sft: TrainConfig {
                max_steps: 32,
                warmup_steps: 3,
                ..quick.sft.clone()
            },
            ..quick
        }
    }
}

/// Progress of a comparison.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A stage of a strategy starts: `total` units (texts, or training steps).
    Stage {
        /// The strategy.
        strategy: Strategy,
        /// `training`, `extracting`, `indexing`, …
        stage: &'static str,
        /// Units of work.
        total: usize,
    },
    /// `done` units of the current stage are finished.
    Progress {
        /// Units done.
        done: usize,
    },
    /// A training step.
    TrainStep(&'a StepRecord),
    /// A strategy's scores.
    Finished(&'a StrategyResult),
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyResult {
    /// The strategy.
    pub name: String,
    /// Strict micro precision.
    pub precision: f64,
    /// Strict micro recall.
    pub recall: f64,
    /// Strict micro F1.
    pub f1: f64,
    /// Micro F1 after stripping particles and mapping aliases.
    pub f1_lenient: f64,
    /// Macro F1 (strict).
    pub f1_macro: f64,
    /// Recall of gold keywords held out of the dictionary (strict), when the test set has any.
    pub held_out_recall: Option<f64>,
    /// F1 on the other gold keywords (strict).
    pub seen_f1: Option<f64>,
    /// Extraction wall time per text (batched).
    pub seconds_per_text: f64,
    /// Training wall time (0 when nothing was trained).
    pub train_seconds: f64,
    /// Texts scored.
    pub texts: usize,
    /// The whole evaluation (strict and lenient breakdowns).
    pub detail: EvalReport,
}

/// What a comparison measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The model file or folder.
    pub model: String,
    /// The test file, or `generated test split`.
    pub test: String,
    /// Test texts.
    pub texts: usize,
    /// Dictionary terms held out of every strategy.
    pub held_out_terms: usize,
    /// One row per strategy, in run order.
    pub strategies: Vec<StrategyResult>,
}

impl Report {
    /// The table of `report.md`.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "Model `{}`, test set {} ({} texts), {} dictionary terms held out of every strategy.\n\n\
             | strategy | P | R | F1 | F1 lenient | F1 macro | held-out R | seen F1 | s/text | train s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.model, self.test, self.texts, self.held_out_terms
        );
        let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
        for r in &self.strategies {
            s.push_str(&format!(
                "| {} | {:.3} | {:.3} | **{:.3}** | {:.3} | {:.3} | {} | {} | {:.2} | {:.0} |\n",
                r.name,
                r.precision,
                r.recall,
                r.f1,
                r.f1_lenient,
                r.f1_macro,
                opt(r.held_out_recall),
                opt(r.seen_f1),
                r.seconds_per_text,
                r.train_seconds
            ));
        }
        s
    }

    /// Writes `report.json`, `report.md` and `report.png` into `dir` (each atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| CompareError::Io {
            path: dir.join("report.json"),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&dir.join("report.json"), format!("{json}\n").as_bytes())?;
        write_atomic(&dir.join("report.md"), self.to_markdown().as_bytes())?;
        let names: Vec<String> = self.strategies.iter().map(|r| r.name.clone()).collect();
        let series = |name: &str, f: &dyn Fn(&StrategyResult) -> f64| Bars {
            name: name.into(),
            values: self.strategies.iter().map(f).collect(),
        };
        bar_chart(
            dir.join("report.png"),
            &format!("Keyword extraction, {} test texts", self.texts),
            &names,
            &[
                series("F1", &|r| r.f1),
                series("F1 lenient", &|r| r.f1_lenient),
                series("held-out recall", &|r| r.held_out_recall.unwrap_or(0.0)),
            ],
        )?;
        Ok(())
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| CompareError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_file_name(format!(
        ".kwx-tmp-{}-{}",
        std::process::id(),
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The data every strategy shares.
struct Shared {
    dictionary: Dictionary,
    held: HeldOutSplit,
    /// The dictionary without the held-out entries: what strategies may know.
    known: Dictionary,
    train: Vec<Example>,
    val: Vec<Example>,
    test: Vec<SftRecord>,
}

/// Runs the comparison and writes its report; see the [module docs](self).
pub fn run(
    config: &CompareConfig,
    device: &Device,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Report> {
    if config.strategies.is_empty() {
        return Err(CompareError::Config {
            field: "strategies",
            message: "no strategy to run".into(),
        });
    }
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| CompareError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    mkdir(&config.out)?;
    mkdir(&config.out.join("predictions"))?;
    let shared = shared_data(config)?;
    let needs_model = config.strategies.iter().any(|s| *s != Strategy::Dictionary);
    let loaded = if needs_model {
        Some(Gemma::load_with_tokenizer(
            &config.model,
            config.tokenizer.as_deref(),
            device,
        )?)
    } else {
        None
    };
    let texts: Vec<&str> = shared.test.iter().map(|r| r.text.as_str()).collect();
    let mut rows = Vec::new();
    for &strategy in &config.strategies {
        let t0 = Instant::now();
        let extractor: Box<dyn KeywordExtractor> = match &loaded {
            Some((model, tokenizer)) => build(
                config, &shared, strategy, model, tokenizer, device, on_event,
            )?,
            // No model is loaded only when every strategy is the dictionary.
            None => Box::new(DictionaryExtractor::new(&shared.known)?),
        };
        let train_seconds = if strategy.trains() {
            t0.elapsed().as_secs_f64()
        } else {
            0.0
        };
        on_event(Event::Stage {
            strategy,
            stage: "extracting",
            total: texts.len(),
        });
        let t1 = Instant::now();
        let mut predicted: Vec<Vec<String>> = Vec::with_capacity(texts.len());
        let mut keywords = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(config.batch_size.max(1)) {
            for ks in extractor.extract_batch(chunk)? {
                predicted.push(ks.iter().map(|k| k.text.clone()).collect());
                keywords.push(ks);
            }
            on_event(Event::Progress {
                done: predicted.len(),
            });
        }
        let seconds = t1.elapsed().as_secs_f64();
        let detail = Evaluator::new()
            .dictionary(&shared.dictionary)
            .held_out(&shared.held)
            .evaluate(
                shared
                    .test
                    .iter()
                    .zip(&predicted)
                    .map(|(r, p)| EvalExample::new(&r.text, &r.labels, p)),
            );
        let lines: Vec<serde_json::Value> = shared
            .test
            .iter()
            .zip(&keywords)
            .map(|(r, k)| serde_json::json!({"text": r.text, "labels": r.labels, "predicted": k}))
            .collect();
        let path = config
            .out
            .join("predictions")
            .join(format!("{}.jsonl", strategy.name()));
        kwx_data::jsonl::write_jsonl_atomic(&path, lines)?;
        let s = &detail.strict;
        let row = StrategyResult {
            name: strategy.name().into(),
            precision: s.micro.precision,
            recall: s.micro.recall,
            f1: s.micro.f1,
            f1_lenient: detail.lenient.micro.f1,
            f1_macro: s.macro_.f1,
            held_out_recall: s
                .held_out
                .as_ref()
                .filter(|h| h.tp + h.fn_ > 0)
                .map(|h| h.recall),
            seen_f1: s.seen.as_ref().map(|h: &Scores| h.f1),
            seconds_per_text: seconds / texts.len().max(1) as f64,
            train_seconds,
            texts: texts.len(),
            detail,
        };
        on_event(Event::Finished(&row));
        rows.push(row);
        // Each finished strategy is on disk at once: a long run interrupted keeps its rows.
        report(config, &shared, rows.clone()).write(&config.out)?;
    }
    let report = report(config, &shared, rows);
    report.write(&config.out)?;
    Ok(report)
}

fn report(config: &CompareConfig, shared: &Shared, strategies: Vec<StrategyResult>) -> Report {
    Report {
        model: config.model.display().to_string(),
        test: config
            .test
            .as_ref()
            .map_or("generated test split".into(), |p| p.display().to_string()),
        texts: shared.test.len(),
        held_out_terms: shared.held.terms().len(),
        strategies,
    }
}

fn shared_data(config: &CompareConfig) -> Result<Shared> {
    let dictionary = match &config.dictionary {
        Some(p) => Dictionary::from_path(p).map_err(|e| CompareError::Config {
            field: "dictionary",
            message: e.to_string(),
        })?,
        None => Dictionary::bundled().clone(),
    };
    let held = HeldOutSplit::new(&dictionary, config.held_out_fraction, config.seed)?;
    let known_entries: Vec<Entry> = dictionary
        .entries()
        .iter()
        .filter(|e| !held.contains(&e.term))
        .cloned()
        .collect();
    let known = Dictionary::new(known_entries).map_err(|e| CompareError::Config {
        field: "held_out_fraction",
        message: e.to_string(),
    })?;
    let splits = held.build(
        &DatasetBuilder::new(&dictionary).seed(config.seed),
        config.sizes,
        0.5,
    )?;
    let mut test: Vec<SftRecord> = match &config.test {
        Some(p) => kwx_data::jsonl::read_jsonl(p)?,
        None => splits.test.iter().map(Example::to_sft).collect(),
    };
    if config.limit > 0 {
        test.truncate(config.limit);
    }
    if test.is_empty() {
        return Err(CompareError::Config {
            field: "test",
            message: "the test set is empty".into(),
        });
    }
    Ok(Shared {
        dictionary,
        held,
        known,
        train: splits.train,
        val: splits.val,
        test,
    })
}

fn pool(shared: &Shared) -> ExamplePool {
    ExamplePool::new(
        shared
            .train
            .iter()
            .map(|e| Shot {
                text: e.text.clone(),
                labels: e.labels.clone(),
            })
            .collect(),
    )
}

fn prompt_config(config: &CompareConfig, base: PromptConfig) -> PromptConfig {
    PromptConfig {
        constrain: config.constrain,
        batch_size: config.batch_size,
        max_new_tokens: config.max_new_tokens,
        ..base
    }
}

/// The extractor of a model strategy, training it first when needed.
fn build(
    config: &CompareConfig,
    shared: &Shared,
    strategy: Strategy,
    model: &Gemma,
    tokenizer: &GemmaTokenizer,
    device: &Device,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Box<dyn KeywordExtractor>> {
    let held: Vec<&str> = shared.held.terms().iter().map(String::as_str).collect();
    let prompted = |base: PromptConfig| -> Result<PromptExtractor> {
        Ok(PromptExtractor::new(
            model.clone(),
            tokenizer.clone(),
            prompt_config(config, base),
        )?
        .with_dictionary(&shared.dictionary, held.iter().copied())?)
    };
    let name = strategy.name();
    Ok(match strategy {
        Strategy::Dictionary => Box::new(DictionaryExtractor::new(&shared.known)?),
        Strategy::ZeroShot => Box::new(prompted(PromptConfig::zero_shot())?),
        Strategy::FewShot => {
            Box::new(prompted(PromptConfig::few_shot(config.few_shot))?.with_examples(pool(shared)))
        }
        Strategy::Feedback => Box::new(
            prompted(PromptConfig::feedback(config.few_shot, config.retries))?
                .with_examples(pool(shared)),
        ),
        Strategy::Rag => {
            on_event(Event::Stage {
                strategy,
                stage: "indexing",
                total: shared.known.len(),
            });
            let dir = config.out.join("rag-index");
            let chunks = Chunk::from_dictionary(&shared.known, "dictionary");
            let index = Arc::new(IndexBuilder::new(&dir).overwrite(true).build(&chunks)?);
            on_event(Event::Progress {
                done: shared.known.len(),
            });
            let context = RagContext::new(index, tokenizer.clone(), config.rag_budget);
            Box::new(
                prompted(PromptConfig::few_shot(config.few_shot).named(name))?
                    .with_examples(pool(shared))
                    .with_context(Arc::new(context)),
            )
        }
        Strategy::Lora => {
            let adapter = match config.given.get(&strategy) {
                Some(dir) => dir.clone(),
                None => {
                    let records = instruction_records(&shared.train, DEFAULT_INSTRUCTION);
                    let val = instruction_records(&shared.val, DEFAULT_INSTRUCTION);
                    train_run(
                        config,
                        strategy,
                        &config.lora,
                        model,
                        tokenizer,
                        &records,
                        &val,
                        on_event,
                    )?
                }
            };
            Box::new(kwx_peft::extract::fine_tuned(
                name,
                model.clone(),
                adapter,
                tokenizer.clone(),
                DEFAULT_INSTRUCTION,
                config.constrain,
            )?)
        }
        Strategy::LoraTokenizer => {
            let (resized, extended, ids) = match config.given.get(&strategy) {
                Some(dir) => {
                    let extended = GemmaTokenizer::from_file(dir.join("tokenizer.json"))?;
                    let resized = resize_for(model, tokenizer, &extended, &shared.known)?.0;
                    (resized, extended, Vec::new())
                }
                None => {
                    let ext = kwx_tokenizer::extend(
                        tokenizer.inner(),
                        &shared
                            .known
                            .entries()
                            .iter()
                            .map(|e| e.term.clone())
                            .collect::<Vec<_>>(),
                        kwx_tokenizer::ExtendMode::RepurposeUnused,
                    )?;
                    let extended = GemmaTokenizer::from_tokenizer(ext.tokenizer.clone());
                    let rows = crate::token_rows(&ext);
                    let ids = rows.iter().map(|r| r.0).collect::<Vec<_>>();
                    let resized = model
                        .clone()
                        .init_token_rows(&rows, &ResizeOptions::default())?;
                    (resized, extended, ids)
                }
            };
            let adapter = match config.given.get(&strategy) {
                Some(dir) => dir.clone(),
                None => {
                    let mut lora: LoraConfig = config.lora.lora.clone();
                    lora.trainable_token_indices = Some(TokenIndices::List(ids));
                    let settings = TrainConfig {
                        lora,
                        ..config.lora.clone()
                    };
                    let records = instruction_records(&shared.train, DEFAULT_INSTRUCTION);
                    let val = instruction_records(&shared.val, DEFAULT_INSTRUCTION);
                    let dir = train_run(
                        config, strategy, &settings, &resized, &extended, &records, &val, on_event,
                    )?;
                    let tok_path = dir.join("tokenizer.json");
                    extended
                        .inner()
                        .save(&tok_path, false)
                        .map_err(|e| CompareError::Io {
                            path: tok_path.clone(),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                    dir
                }
            };
            Box::new(kwx_peft::extract::fine_tuned(
                name,
                resized,
                adapter,
                extended,
                DEFAULT_INSTRUCTION,
                config.constrain,
            )?)
        }
        Strategy::Sft => {
            let tuned = match config.given.get(&strategy) {
                Some(path) => Gemma::load(path, device)?,
                None => {
                    let records = instruction_records(&shared.train, "");
                    let val = instruction_records(&shared.val, "");
                    let weights = train_run(
                        config,
                        strategy,
                        &config.sft,
                        model,
                        tokenizer,
                        &records,
                        &val,
                        on_event,
                    )?;
                    train::load_full_checkpoint(model.clone(), &weights)?
                }
            };
            Box::new(kwx_peft::extract::fully_tuned(
                name,
                tuned,
                tokenizer.clone(),
                "",
                config.constrain,
            )?)
        }
    })
}

/// The model with rows for an extended tokenizer's domain tokens, initialised from the pieces
/// the base tokenizer splits each term into (used when a given adapter brings its tokenizer).
fn resize_for(
    model: &Gemma,
    base: &GemmaTokenizer,
    extended: &GemmaTokenizer,
    known: &Dictionary,
) -> Result<(Gemma, Vec<u32>)> {
    let mut rows = Vec::new();
    for e in known.entries() {
        let Some(id) = extended.token_to_id(&e.term) else {
            continue;
        };
        if base.token_to_id(&e.term) == Some(id) {
            continue;
        }
        let pieces = base.encode(&e.term, false)?;
        rows.push((id, RowInit::MeanOf(pieces)));
    }
    let ids = rows.iter().map(|r| r.0).collect();
    let model = if extended.vocab_size() > model.config().vocab_size {
        model.clone().resize_token_embeddings(
            extended.vocab_size(),
            &rows,
            &ResizeOptions::default(),
        )?
    } else {
        model
            .clone()
            .init_token_rows(&rows, &ResizeOptions::default())?
    };
    Ok((model, ids))
}

fn instruction_records(examples: &[Example], instruction: &str) -> Vec<InstructionRecord> {
    examples
        .iter()
        .map(|e| e.to_instruction(instruction))
        .collect()
}

/// Trains one strategy in `out/train/<name>` (a fresh run each time) and returns the best
/// weights (adapter folder or model record).
#[allow(clippy::too_many_arguments)]
fn train_run(
    config: &CompareConfig,
    strategy: Strategy,
    settings: &TrainConfig,
    model: &Gemma,
    tokenizer: &GemmaTokenizer,
    records: &[InstructionRecord],
    val: &[InstructionRecord],
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf> {
    let dir = config.out.join("train").join(strategy.name());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| CompareError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let prepared = train::prepare(tokenizer, records, val, settings.max_len)?;
    let trainer = Trainer::new(settings.clone(), &dir, prepared.data)?.with_tokenizer(tokenizer);
    on_event(Event::Stage {
        strategy,
        stage: "training",
        total: trainer.total_steps(),
    });
    let outcome = trainer.run(model.clone(), false, |event| {
        if let train::Event::Step(s) = event {
            on_event(Event::TrainStep(s));
            on_event(Event::Progress { done: s.step });
        }
    })?;
    Ok(outcome.best_weights)
}
