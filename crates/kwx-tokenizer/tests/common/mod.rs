//! Corpora for the tests: generated Korean pharmaceutical sentences (kwx-data, seeded), the
//! dictionary's definitions, and hostile lines for byte fallback.
#![allow(dead_code, unreachable_pub)]

use kwx_data::builder::DatasetBuilder;
use kwx_data::dictionary::Dictionary;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` generated sentences plus every dictionary definition.
pub fn korean_corpus(n: usize, seed: u64) -> Vec<String> {
    let dict = Dictionary::bundled();
    let mut lines: Vec<String> = DatasetBuilder::new(dict)
        .seed(seed)
        .n(n)
        .build()
        .expect("dataset")
        .into_iter()
        .map(|e| e.text)
        .collect();
    lines.extend(dict.entries().iter().map(|e| e.definition.clone()));
    lines
}

/// Dictionary terms (the bundled dictionary's, in its order).
pub fn terms() -> Vec<String> {
    Dictionary::bundled()
        .entries()
        .iter()
        .map(|e| e.term.clone())
        .collect()
}

const EXTRAS: &[&str] = &[
    "🙂",
    "💊",
    "👩\u{200D}⚕\u{FE0F}",
    "🇰🇷", // emoji, ZWJ sequence, flag
    "龘",
    "䨻",
    "𠀀",
    "𪚥",
    "鬱", // rare Hanja, CJK extension B
    "\t",
    "\u{1}",
    "\u{7}",
    "\u{7F}",
    "\r",
    "\u{1B}",
    "\u{0}", // control characters
    "  ",
    "   ", // runs of spaces
    "e\u{301}",
    "\u{1100}\u{1161}", // combining accent, conjoining jamo
    "ｆｕｌｌ",
    "㎎",
    "Ⅻ",
    "ﬁ", // compatibility forms
    "mg/kg",
    "Ibuprofen 200mg",
    "COVID-19",
    "pH 7.4",
    "<0x41>",
    "<pad>",
];

/// `n` lines: corpus lines with emoji, rare Hanja, control characters, odd whitespace and
/// English spliced in at random places (including the start and the end).
pub fn hostile_lines(base: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut line: Vec<char> = base[rng.random_range(0..base.len())].chars().collect();
            for _ in 0..rng.random_range(0..4) {
                let at = rng.random_range(0..=line.len());
                let extra = EXTRAS[rng.random_range(0..EXTRAS.len())];
                line.splice(at..at, extra.chars());
            }
            if rng.random_bool(0.05) {
                line.insert(0, ' ');
            }
            line.into_iter().collect()
        })
        .collect()
}

/// The real Gemma 3 270M `tokenizer.json` that `scripts/fetch_model.sh` puts in the kwx cache
/// (`$KWX_HOME`, else `~/.cache/kwx`); CI fetches it before the tests.
pub fn gemma_tokenizer_path() -> std::path::PathBuf {
    let home = std::env::var_os("KWX_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/kwx"))
        })
        .expect("HOME or KWX_HOME");
    let path = home.join("gemma-3-270m/tokenizer.json");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch_model.sh",
        path.display()
    );
    path
}
