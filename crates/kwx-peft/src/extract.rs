//! The fine-tuned strategies' extractors: a base model with a PEFT adapter folded in (LoRA
//! instruction tuning, tokenizer-extended LoRA) or a fully fine-tuned model, asked exactly as
//! it was trained (`ChatFormat::render_prompt(instruction, text)`).

use std::path::Path;

use kwx_core::extract::{Constrain, PromptConfig, PromptExtractor};
use kwx_core::{Gemma, GemmaTokenizer};

use crate::adapter::Adapter;
use crate::error::Result;
use crate::inject::{attach, merge};

/// A [`PromptExtractor`] named `name` over `base` with the adapter in `adapter_dir` merged into
/// its weights (no per-token adapter cost), prompted with the training `instruction`.
/// `tokenizer` is the one the adapter was trained with (an extended tokenizer for
/// tokenizer-customised runs, whose model `base` must already have been resized to).
///
/// # Errors
/// The adapter folder cannot be read or does not fit `base` (names, shapes, vocabulary).
pub fn fine_tuned(
    name: &str,
    base: Gemma,
    adapter_dir: impl AsRef<Path>,
    tokenizer: GemmaTokenizer,
    instruction: &str,
    constrain: Constrain,
) -> Result<PromptExtractor> {
    let adapter = Adapter::load(adapter_dir, &base)?;
    let model = merge(attach(base, &adapter)?);
    fully_tuned(name, model, tokenizer, instruction, constrain)
}

/// A [`PromptExtractor`] over an already fine-tuned (or merged) `model`, prompted with the
/// training `instruction`.
///
/// # Errors
/// A tokenizer without Gemma's chat tokens.
pub fn fully_tuned(
    name: &str,
    model: Gemma,
    tokenizer: GemmaTokenizer,
    instruction: &str,
    constrain: Constrain,
) -> Result<PromptExtractor> {
    let config = PromptConfig::fine_tuned(instruction)
        .named(name)
        .constrained(constrain);
    Ok(PromptExtractor::new(model, tokenizer, config)?)
}
