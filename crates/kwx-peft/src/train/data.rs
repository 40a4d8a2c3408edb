//! From kwx-data's JSONL files to [`TrainData`]: both record formats, chat rendering,
//! completion-only labels, generation prompts and gold keywords for validation.

use std::path::Path;

use kwx_core::GemmaTokenizer;
use kwx_data::jsonl::{InstructionRecord, JsonlReader, SftRecord};
use kwx_data::training::{ChatFormat, ExampleEncoder, Truncation};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::trainer::{EvalExample, TrainData};
use crate::error::{Error, Result};

/// One line of a training file, in either kwx-data format.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum AnyRecord {
    /// `{"instruction", "input", "output"}`.
    Instruction(InstructionRecord),
    /// `{"text", "labels"}`.
    Sft(SftRecord),
}

/// Reads a JSONL file of SFT records (`{"text","labels"}`, rendered under `instruction`) or
/// instruction records (`{"instruction","input","output"}`), or a mix; errors name the line.
pub fn read_records(path: impl AsRef<Path>, instruction: &str) -> Result<Vec<InstructionRecord>> {
    let path = path.as_ref();
    let reader = JsonlReader::<_, AnyRecord>::open(path).map_err(|e| Error::Data(e.to_string()))?;
    let mut out = Vec::new();
    for item in reader {
        let record = match item.map_err(|e| Error::Data(e.to_string()))? {
            AnyRecord::Instruction(r) => r,
            AnyRecord::Sft(r) => r.to_instruction(instruction),
        };
        record.labels().map_err(|e| {
            Error::Data(format!("{}: record {}: {e}", path.display(), out.len() + 1))
        })?;
        out.push(record);
    }
    if out.is_empty() {
        return Err(Error::Data(format!("{}: no records", path.display())));
    }
    Ok(out)
}

/// Splits off `fraction` of the records for validation, in a seeded random order.
pub fn split_eval(
    mut records: Vec<InstructionRecord>,
    fraction: f64,
    seed: u64,
) -> (Vec<InstructionRecord>, Vec<InstructionRecord>) {
    records.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_eval = ((records.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let n_eval = n_eval.min(records.len().saturating_sub(1));
    let train = records.split_off(n_eval);
    (train, records)
}

/// [`TrainData`] and what encoding left out.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The data, ready for [`super::Trainer`].
    pub data: TrainData,
    /// Training and validation examples longer than `max_len`, left out.
    pub dropped: usize,
}

/// Renders records in Gemma's chat format and tokenizes them: training and validation examples
/// with completion-only labels, and for each validation record its generation prompt and gold
/// keywords. Examples longer than `max_len` are left out and counted.
pub fn prepare(
    tokenizer: &GemmaTokenizer,
    train: &[InstructionRecord],
    eval: &[InstructionRecord],
    max_len: usize,
) -> Result<Prepared> {
    let data_err = |e: kwx_data::training::TrainingDataError| Error::Data(e.to_string());
    let encoder = ExampleEncoder::new(tokenizer.inner(), ChatFormat::Gemma)
        .map_err(data_err)?
        .max_len(max_len)
        .truncation(Truncation::Drop);
    let train_enc = encoder.encode_all(train).map_err(data_err)?;
    let eval_enc = encoder.encode_all(eval).map_err(data_err)?;
    let mut generate = Vec::with_capacity(eval.len());
    for r in eval {
        let prompt = ChatFormat::Gemma.render_prompt(&r.instruction, &r.input);
        generate.push(EvalExample {
            prompt_ids: tokenizer.encode(&prompt, false)?,
            gold: r.labels().map_err(|e| Error::Data(e.to_string()))?,
        });
    }
    let stop_ids = [ChatFormat::Gemma.end_of_turn(), "<eos>"]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    if train_enc.examples.is_empty() {
        return Err(Error::Data(format!(
            "all {} training examples are longer than max_len {max_len}",
            train.len()
        )));
    }
    Ok(Prepared {
        dropped: train_enc.dropped.len() + eval_enc.dropped.len(),
        data: TrainData {
            train: train_enc.examples,
            eval: eval_enc.examples,
            generate,
            pad_id: encoder.pad_id(),
            stop_ids,
        },
    })
}
