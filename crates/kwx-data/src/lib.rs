//! # kwx-data
//!
//! The Korean pharmaceutical domain dictionary (term, category, definition, aliases) and the
//! seeded dataset builder that turns it into prompt, instruction-tuning and SFT examples in JSONL;
//! the Korean particle stripper ([`korean`]) and the metrics every strategy is scored with
//! ([`eval`]). It depends on no model or training code.

pub mod builder;
pub mod dictionary;
pub mod eval;
pub mod jsonl;
pub mod korean;
pub mod split;
pub mod training;

pub use dictionary::{Category, Entry};
