//! Fuzzes kwx-rag's document parsers and splitter: leaflet text and documents JSONL, then
//! chunks under a few option sets. Parse errors are expected; panics and broken piece
//! invariants are bugs.
//!
//! cargo +nightly fuzz run leaflet -- -max_total_time=60
#![no_main]

use std::path::Path;

use kwx_rag::document::documents_from_jsonl_str;
use kwx_rag::{ChunkOptions, Document};
use libfuzzer_sys::fuzz_target;

const OPTIONS: [ChunkOptions; 4] = [
    ChunkOptions {
        max_chars: 400,
        overlap_chars: 80,
        min_chars: 20,
    },
    ChunkOptions {
        max_chars: 1,
        overlap_chars: 0,
        min_chars: 0,
    },
    ChunkOptions {
        max_chars: 7,
        overlap_chars: 6,
        min_chars: 7,
    },
    ChunkOptions {
        max_chars: 40,
        overlap_chars: 0,
        min_chars: 10,
    },
];

/// Checks every chunk of `doc` against its field: exact text at its offsets, the length
/// bounds, pieces in order, only whitespace between pieces that do not overlap.
fn check(doc: &Document) {
    for opts in &OPTIONS {
        let chunks = doc.chunks(opts).expect("valid options, unique fields");
        for field in &doc.fields {
            let chars: Vec<char> = field.text.chars().collect();
            let pieces: Vec<_> = chunks
                .iter()
                .filter(|c| c.field.as_deref() == Some(&field.name))
                .collect();
            assert_eq!(pieces.is_empty(), field.text.trim().is_empty());
            let mut previous: Option<(usize, usize)> = None;
            for (i, chunk) in pieces.iter().enumerate() {
                let at = |k: &str| chunk.metadata[k].parse::<usize>().expect("a number");
                let (start, end) = (at("start_char"), at("end_char"));
                assert_eq!(at("piece"), i);
                assert_eq!(at("pieces"), pieces.len());
                assert!(start < end && end <= chars.len());
                assert_eq!(chunk.text, chars[start..end].iter().collect::<String>());
                let last = i + 1 == pieces.len();
                let bound = if last {
                    opts.max_chars + opts.min_chars
                } else {
                    opts.max_chars
                };
                assert!(
                    end - start <= bound,
                    "{} chars > {bound} ({opts:?})",
                    end - start
                );
                if let Some((p_start, p_end)) = previous {
                    assert!(p_start < start && p_end < end);
                    if start >= p_end {
                        assert!(chars[p_end..start].iter().all(|c| c.is_whitespace()));
                    }
                } else {
                    assert!(chars[..start].iter().all(|c| c.is_whitespace()));
                }
                if last {
                    assert!(chars[end..].iter().all(|c| c.is_whitespace()));
                }
                previous = Some((start, end));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(doc) = Document::parse_leaflet(&text, "fuzz", "fuzz.txt") {
        assert!(!doc.fields.is_empty());
        assert!(doc.fields.iter().all(|f| !f.text.is_empty() && f.line >= 1));
        check(&doc);
    }
    if let Ok(docs) = documents_from_jsonl_str(&text, Path::new("fuzz.jsonl")) {
        docs.iter().for_each(check);
    }
});
