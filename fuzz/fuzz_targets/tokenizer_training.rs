//! Fuzzes kwx-tokenizer's trainers on arbitrary corpora: raw bytes as a corpus file (invalid
//! UTF-8 must be a typed error naming the line) and as text lines, with the first line's words
//! as user-defined symbols. Errors are expected; panics are bugs. A tokenizer that trains must
//! decode every corpus line back exactly (identity normalization, byte fallback).
//!
//! cargo +nightly fuzz run tokenizer_training -- -max_total_time=60
#![no_main]

use std::io::Write;

use kwx_tokenizer::{Error, ModelKind, Normalization, SPACE_MARKER, Trainer, TrainerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().collect();
    let symbols: Vec<&str> = lines
        .first()
        .map(|l| l.split(' ').filter(|s| !s.is_empty()).take(4).collect())
        .unwrap_or_default();
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let config = TrainerConfig::new(model, 600, Normalization::Identity)
            .with_user_defined_symbols(symbols.iter().copied())
            .with_min_frequency(1);
        let Ok(trainer) = Trainer::new(config) else { continue };
        match trainer.train_files(&[file.path()], &mut |_| {}) {
            Err(Error::NotUtf8 { line, .. }) => assert!(std::str::from_utf8(data).is_err() && line >= 1),
            _ => {}
        }
        let Ok(trained) = trainer.train_iter(&lines, &mut |_| {}) else { continue };
        for line in &lines {
            if line.contains(SPACE_MARKER) {
                continue;
            }
            let enc = trained.tokenizer.encode(*line, false).expect("encode");
            let back = trained.tokenizer.decode(enc.get_ids(), false).expect("decode");
            assert_eq!(&back, line);
        }
    }
});
