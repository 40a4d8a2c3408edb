//! The trainers on a generated Korean corpus: reserved pieces where they belong, user-defined
//! symbols whole in every context, exact round trips through byte fallback, reproducible runs,
//! and typed errors for bad input.

mod common;

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use kwx_tokenizer::{
    Error, ModelKind, Normalization, Progress, Tokenizer, Trained, Trainer, TrainerConfig,
    byte_pieces, load_tokenizer, save_tokenizer,
};

/// Symbols: the dictionary's first 60 terms plus the examples.
fn symbols() -> Vec<String> {
    let mut s: Vec<String> = common::terms().into_iter().take(60).collect();
    for t in ["파스", "연고", "주사제"] {
        if !s.iter().any(|x| x == t) {
            s.push(t.to_owned());
        }
    }
    s
}

fn corpus() -> &'static [String] {
    static C: OnceLock<Vec<String>> = OnceLock::new();
    C.get_or_init(|| common::korean_corpus(4000, 7))
}

fn config(model: ModelKind, normalization: Normalization) -> TrainerConfig {
    TrainerConfig::new(model, 3000, normalization).with_user_defined_symbols(symbols())
}

fn train(config: TrainerConfig) -> Trained {
    Trainer::new(config)
        .expect("config")
        .train_iter(corpus(), &mut |_| {})
        .expect("train")
}

fn trained(model: ModelKind) -> &'static Trained {
    static BPE: OnceLock<Trained> = OnceLock::new();
    static UNI: OnceLock<Trained> = OnceLock::new();
    let cell = match model {
        ModelKind::Bpe => &BPE,
        ModelKind::Unigram => &UNI,
    };
    cell.get_or_init(|| train(config(model, Normalization::Identity)))
}

fn ids(t: &Tokenizer, text: &str) -> Vec<u32> {
    t.encode(text, false).expect("encode").get_ids().to_vec()
}

#[test]
fn reserved_pieces_come_first_in_sentencepiece_order() {
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let t = &trained(model).tokenizer;
        for (id, s) in ["<pad>", "<eos>", "<bos>", "<unk>"].iter().enumerate() {
            assert_eq!(t.token_to_id(s), Some(id as u32), "{model:?} {s}");
        }
        for (b, piece) in byte_pieces().iter().enumerate() {
            assert_eq!(
                t.token_to_id(piece),
                Some(4 + b as u32),
                "{model:?} {piece}"
            );
        }
        for (i, s) in symbols().iter().enumerate() {
            assert_eq!(t.token_to_id(s), Some(260 + i as u32), "{model:?} {s}");
        }
        let size = t.get_vocab_size(true);
        match model {
            ModelKind::Bpe => assert_eq!(size, 3000),
            // Unigram stops where its EM prunes to; it must come close.
            ModelKind::Unigram => assert!((2400..=3000).contains(&size), "{size}"),
        }
        assert_eq!(trained(model).stats.vocab_size, size);
    }
}

/// Every occurrence of a symbol (leftmost-longest, as the added vocabulary matches) is exactly
/// one token with exactly its span, in every line of the corpus and in made-up contexts.
#[test]
fn user_defined_symbols_are_one_token_in_every_context() {
    let syms = symbols();
    let matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&syms)
        .expect("matcher");
    let mut lines: Vec<String> = corpus().to_vec();
    for s in &syms {
        for ctx in [
            "{}형", "{}를", "가{}", "{}{}", " {} ", "({})", "x{}y", "{}\n{}",
        ] {
            lines.push(ctx.replace("{}", s));
        }
    }
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let t = &trained(model).tokenizer;
        let mut checked = 0usize;
        for line in &lines {
            let enc = t.encode(line.as_str(), false).expect("encode");
            let expected: Vec<(u32, (usize, usize))> = matcher
                .find_iter(line.as_str())
                .map(|m| (260 + m.pattern().as_u32(), (m.start(), m.end())))
                .collect();
            let got: Vec<(u32, (usize, usize))> = enc
                .get_ids()
                .iter()
                .zip(enc.get_offsets())
                .filter(|(id, _)| (260..260 + syms.len() as u32).contains(*id))
                .map(|(id, off)| (*id, *off))
                .collect();
            assert_eq!(got, expected, "{model:?}: {line:?}");
            checked += expected.len();
        }
        assert!(checked > 2000, "{model:?}: only {checked} occurrences");
        // 파스형 → 파스 + 형
        let ids = ids(t, "파스형");
        assert_eq!(ids[0], t.token_to_id("파스").expect("파스"), "{model:?}");
        assert_eq!(t.decode(&ids[1..], false).expect("decode"), "형");
    }
}

#[test]
fn decode_inverts_encode_on_10000_hostile_lines() {
    let lines = common::hostile_lines(corpus(), 10_000, 11);
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let t = &trained(model).tokenizer;
        let mut byte_tokens = 0usize;
        for line in &lines {
            let ids = ids(t, line);
            byte_tokens += ids.iter().filter(|&&i| (4..260).contains(&i)).count();
            assert!(
                !ids.contains(&3),
                "{model:?}: <unk> produced for {line:?} despite byte fallback"
            );
            assert_eq!(&t.decode(&ids, false).expect("decode"), line, "{model:?}");
        }
        // The rare characters really went through byte fallback.
        assert!(byte_tokens > 1000, "{model:?}: {byte_tokens} byte tokens");
    }
}

#[test]
fn nfkc_folds_compatibility_forms_and_round_trips_normalized_text() {
    let trained = train(config(ModelKind::Bpe, Normalization::Nfkc));
    let t = &trained.tokenizer;
    assert_eq!(ids(t, "ｆｕｌｌ"), ids(t, "full"));
    assert_eq!(ids(t, "5㎎"), ids(t, "5mg"));
    for line in common::hostile_lines(corpus(), 2000, 5) {
        let ids = ids(t, &line);
        assert_eq!(
            t.decode(&ids, false).expect("decode"),
            Normalization::Nfkc.apply(&line)
        );
    }
}

#[test]
fn saved_file_reloads_and_runs_are_reproducible() {
    let dir = tempfile::tempdir().expect("tempdir");
    for model in [ModelKind::Bpe, ModelKind::Unigram] {
        let first = &trained(model).tokenizer;
        let path = dir.path().join(format!("{}.json", model.name()));
        save_tokenizer(first, &path).expect("save");
        let reloaded = load_tokenizer(&path).expect("load");
        for line in corpus().iter().take(500) {
            assert_eq!(ids(first, line), ids(&reloaded, line));
        }
        let again = train(config(model, Normalization::Identity)).tokenizer;
        match model {
            ModelKind::Bpe => assert_eq!(
                first.to_string(false).expect("json"),
                again.to_string(false).expect("json"),
                "BPE: a second run learned a different vocabulary"
            ),
            // tokenizers' Unigram trainer re-adds pruned characters in the order of a randomly
            // seeded hash set, so their ids (and tiny score offsets) vary between runs; the
            // pieces and every segmentation must not.
            ModelKind::Unigram => {
                let pieces = |t: &Tokenizer| {
                    let mut v: Vec<String> = t.get_vocab(true).into_keys().collect();
                    v.sort();
                    v
                };
                assert_eq!(pieces(first), pieces(&again));
                for line in common::hostile_lines(corpus(), 3000, 3) {
                    let a = first.encode(line.as_str(), false).expect("encode");
                    let b = again.encode(line.as_str(), false).expect("encode");
                    assert_eq!(a.get_tokens(), b.get_tokens(), "{line:?}");
                }
            }
        }
    }
}

#[test]
fn files_stream_with_progress_and_match_the_iterator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    let half = corpus().len() / 2;
    std::fs::write(&a, corpus()[..half].join("\n") + "\n").expect("write");
    // CRLF line ends and no final newline in the second file.
    std::fs::write(&b, corpus()[half..].join("\r\n")).expect("write");
    let mut events = Vec::new();
    let trainer = Trainer::new(config(ModelKind::Bpe, Normalization::Identity)).expect("cfg");
    let from_files = trainer
        .train_files(&[&a, &b], &mut |p| events.push(p.clone()))
        .expect("train");
    assert_eq!(
        from_files.tokenizer.to_string(false).expect("json"),
        trained(ModelKind::Bpe)
            .tokenizer
            .to_string(false)
            .expect("json")
    );
    assert_eq!(from_files.stats.lines, corpus().len() as u64);
    let total = std::fs::metadata(&a).expect("a").len() + std::fs::metadata(&b).expect("b").len();
    let reads: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Reading {
                bytes, total_bytes, ..
            } => {
                assert_eq!(*total_bytes, Some(total));
                Some(*bytes)
            }
            _ => None,
        })
        .collect();
    assert!(reads.windows(2).all(|w| w[0] <= w[1]), "{reads:?}");
    assert_eq!(reads.last(), Some(&total));
    assert!(matches!(
        events[events.len() - 2],
        Progress::Training { .. }
    ));
    assert_eq!(
        events.last(),
        Some(&Progress::Finished { vocab_size: 3000 })
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    let base = || TrainerConfig::new(ModelKind::Bpe, 3000, Normalization::Identity);
    let run = |cfg: TrainerConfig, lines: &[&str]| {
        Trainer::new(cfg).and_then(|t| t.train_iter(lines, &mut |_| {}))
    };
    let lines: Vec<&str> = corpus().iter().map(String::as_str).collect();

    let err = run(base(), &["", "  ", ""]).expect_err("empty corpus");
    assert!(matches!(err, Error::EmptyCorpus { .. }), "{err}");
    let err = run(base(), &[]).expect_err("no lines");
    assert!(matches!(err, Error::EmptyCorpus { .. }), "{err}");

    let err = run(
        TrainerConfig::new(ModelKind::Bpe, 300, Normalization::Identity),
        &lines,
    )
    .expect_err("vocab too small");
    match &err {
        Error::VocabTooSmall {
            vocab_size,
            reserved,
            alphabet,
            needed,
            ..
        } => {
            assert_eq!((*vocab_size, *reserved), (300, 260));
            assert_eq!(*needed, reserved + alphabet);
            assert!(*alphabet > 300, "{alphabet}");
        }
        other => panic!("{other}"),
    }
    let err = run(
        TrainerConfig::new(ModelKind::Unigram, 300, Normalization::Identity),
        &lines,
    )
    .expect_err("vocab too small");
    assert!(matches!(err, Error::VocabTooSmall { .. }), "{err}");

    let err = run(
        base().with_user_defined_symbols(["파스", "연고", "파스"]),
        &lines,
    )
    .expect_err("duplicate");
    match &err {
        Error::Symbol { symbol, index, .. } => assert_eq!((symbol.as_str(), *index), ("파스", 2)),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("duplicate of user-defined symbol #0"),
        "{err}"
    );
    // Duplicates after NFKC.
    let err = Trainer::new(
        TrainerConfig::new(ModelKind::Bpe, 3000, Normalization::Nfkc)
            .with_user_defined_symbols(["mg", "㎎"]),
    )
    .expect_err("nfkc duplicate");
    assert!(err.to_string().contains("after normalization"), "{err}");

    for bad in [" ", "\t\n", "", "a▁b", "<0x41>"] {
        let err = Trainer::new(base().with_user_defined_symbols([bad])).expect_err(bad);
        assert!(matches!(err, Error::Symbol { .. }), "{bad:?}: {err}");
    }
    let err = Trainer::new(base().with_user_defined_symbols(["<eos>"])).expect_err("control");
    assert!(err.to_string().contains("control symbol #1"), "{err}");
    let err = Trainer::new(base().with_control_symbols(["<pad>"])).expect_err("no unk");
    assert!(
        matches!(
            err,
            Error::Config {
                field: "unk_token",
                ..
            }
        ),
        "{err}"
    );
    let err = Trainer::new(base().with_character_coverage(0.0)).expect_err("coverage");
    assert!(
        matches!(
            err,
            Error::Config {
                field: "character_coverage",
                ..
            }
        ),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"line one\nline two\ncaf\xe9\n").expect("write");
    let err = Trainer::new(base())
        .expect("cfg")
        .train_files(&[&latin1], &mut |_| {})
        .expect_err("not utf-8");
    match &err {
        Error::NotUtf8 { path, line, .. } => assert_eq!((path, *line), (&latin1, 3)),
        other => panic!("{other}"),
    }
    let missing = dir.path().join("missing.txt");
    let err = Trainer::new(base())
        .expect("cfg")
        .train_files(&[&missing], &mut |_| {})
        .expect_err("missing");
    assert!(err.to_string().contains("missing.txt"), "{err}");
}
