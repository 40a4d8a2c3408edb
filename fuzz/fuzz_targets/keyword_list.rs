//! Arbitrary model output through the tolerant keyword-list parser: no panic, and every keyword
//! trimmed, non-empty and unique.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = kwx_core::extract::parse_keyword_list(&text);
    for (i, k) in parsed.keywords.iter().enumerate() {
        assert!(!k.is_empty());
        assert_eq!(k.trim(), k);
        assert!(!parsed.keywords[..i].contains(k));
    }
    if parsed.strict_json {
        assert!(!parsed.truncated);
    }
});
