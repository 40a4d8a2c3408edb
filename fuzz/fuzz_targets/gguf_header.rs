//! Fuzzes the GGUF reader: header, metadata and tensor table parsing, then dequantization of
//! every tensor the parser accepted. Any panic, overflow or allocation failure is a bug.
//!
//! cargo +nightly fuzz run gguf_header -- -max_total_time=60 -rss_limit_mb=512
#![no_main]

use kwx_core::gguf::{GgufFile, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = parse_header(data);
    let file = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf");
    assert_eq!(header.is_ok(), file.is_ok());
    if let Ok(file) = file {
        for t in file.tensors() {
            let _ = file.dequantize(&t.name);
        }
        let _ = kwx_core::gguf::config_from_gguf(&file);
        if let Ok(vocab) = kwx_core::gguf::GgufVocab::from_gguf(&file) {
            let _ = vocab.to_tokenizer();
        }
    }
});
