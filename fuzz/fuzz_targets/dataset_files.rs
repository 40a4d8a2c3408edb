//! Fuzzes kwx-data's parsers of user files: dictionaries in JSONL, TOML and TSV, and SFT /
//! instruction JSONL through the streaming reader and the validator. Errors are expected;
//! panics are bugs.
//!
//! cargo +nightly fuzz run dataset_files -- -max_total_time=60
#![no_main]

use std::io::Cursor;
use std::path::Path;

use kwx_data::dictionary::Dictionary;
use kwx_data::jsonl::{InstructionRecord, JsonlReader, SftRecord, ValidationConfig, validate_sft};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for parse in [Dictionary::from_jsonl_str, Dictionary::from_toml_str, Dictionary::from_tsv_str] {
            if let Ok(d) = parse(text, Path::new("fuzz")) {
                // A dictionary that loads must round-trip through every format.
                let again = Dictionary::from_jsonl_str(&d.to_jsonl(), Path::new("fuzz.jsonl"));
                assert_eq!(again.map(|a| a.entries().to_vec()).ok(), Some(d.entries().to_vec()));
            }
        }
    }
    let records: Vec<SftRecord> = JsonlReader::<_, SftRecord>::new(Cursor::new(data), "fuzz.jsonl")
        .skip_invalid(true)
        .filter_map(Result::ok)
        .collect();
    let _ = validate_sft(records.into_iter(), &ValidationConfig::default());
    for r in JsonlReader::<_, InstructionRecord>::new(Cursor::new(data), "fuzz.jsonl")
        .skip_invalid(true)
        .filter_map(Result::ok)
    {
        let _ = r.labels();
    }
});
