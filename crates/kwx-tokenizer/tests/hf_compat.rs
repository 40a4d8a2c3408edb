//! kwx-trained `tokenizer.json`s load in Hugging Face `tokenizers` (Python) and encode exactly
//! as kwx does. The committed fixtures were made by this test and the Python check script:
//!
//! ```text
//! KWX_BLESS=1 cargo test -p kwx-tokenizer --test hf_compat
//! for m in bpe unigram; do python scripts/check_tokenizer_hf.py \
//!     crates/kwx-tokenizer/tests/fixtures/hf/$m.json crates/kwx-tokenizer/tests/fixtures/hf/lines.txt \
//!     crates/kwx-tokenizer/tests/fixtures/hf/$m.ids.json --write; done
//! ```
//! `lines.txt` is the first 500 lines of kwx-core's hostile Korean/English corpus (emoji, rare
//! Hanja, control characters, the literal ▁, special-token spellings).

mod common;

use std::path::{Path, PathBuf};

use kwx_tokenizer::{
    ModelKind, Normalization, Tokenizer, Trainer, TrainerConfig, load_tokenizer, save_tokenizer,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn config(model: ModelKind) -> TrainerConfig {
    let norm = match model {
        ModelKind::Bpe => Normalization::Identity,
        ModelKind::Unigram => Normalization::Nfkc,
    };
    TrainerConfig::new(model, 1200, norm).with_user_defined_symbols(["파스", "연고", "주사제"])
}

fn train(model: ModelKind) -> Tokenizer {
    Trainer::new(config(model))
        .expect("config")
        .train_iter(common::korean_corpus(1500, 21), &mut |_| {})
        .expect("train")
        .tokenizer
}

fn lines() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("lines.txt")).expect("lines.txt");
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n').map(str::to_owned).collect()
}

#[derive(serde::Deserialize)]
struct PythonIds {
    tokenizers_version: String,
    lines: usize,
    decoded_equal: usize,
    ids: Vec<Vec<u32>>,
}

#[test]
fn python_tokenizers_encodes_kwx_tokenizers_identically() {
    let regen = std::env::var_os("KWX_BLESS").is_some();
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let path = fixtures().join(format!("{}.json", model.name()));
        if regen {
            save_tokenizer(&train(model), &path).expect("save");
            continue;
        }
        let committed = load_tokenizer(&path).expect("fixture");
        let python: PythonIds = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{}.ids.json", model.name())))
                .expect("ids fixture: run scripts/check_tokenizer_hf.py --write"),
        )
        .expect("ids json");
        let lines = lines();
        assert_eq!(python.lines, lines.len());
        let mut decoded_equal = 0;
        for (i, (line, want)) in lines.iter().zip(&python.ids).enumerate() {
            let enc = committed.encode(line.as_str(), false).expect("encode");
            assert_eq!(
                enc.get_ids(),
                want.as_slice(),
                "{model:?} line {}: {line:?} (Python tokenizers {})",
                i + 1,
                python.tokenizers_version
            );
            decoded_equal +=
                usize::from(committed.decode(enc.get_ids(), false).expect("decode") == *line);
        }
        assert_eq!(decoded_equal, python.decoded_equal, "{model:?}");

        // The fixture is what today's trainer makes: byte for byte for BPE; for Unigram the same
        // pieces (tokenizers' Unigram trainer orders re-added characters by a seeded hash set).
        let fresh = train(model);
        match model {
            ModelKind::Bpe => assert_eq!(
                fresh.to_string(true).expect("json"),
                std::fs::read_to_string(&path).expect("fixture"),
                "the BPE trainer changed: regenerate the fixtures (see the file's doc)"
            ),
            ModelKind::Unigram => {
                let pieces = |t: &Tokenizer| {
                    let mut v: Vec<String> = t.get_vocab(true).into_keys().collect();
                    v.sort();
                    v
                };
                assert_eq!(
                    pieces(&fresh),
                    pieces(&committed),
                    "regenerate the fixtures"
                );
            }
        }
    }
    assert!(
        !regen,
        "fixtures regenerated; now run scripts/check_tokenizer_hf.py --write"
    );
}
