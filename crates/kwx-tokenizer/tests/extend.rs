//! Extending the real Gemma 3 270M tokenizer with the dictionary's terms, both ways, and the
//! fragmentation report on hand-counted cases.

mod common;

use std::sync::OnceLock;

use kwx_tokenizer::{
    Error, ExtendMode, FragmentationReport, Tokenizer, extend, load_tokenizer, save_tokenizer,
};

fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load_tokenizer(common::gemma_tokenizer_path()).expect("gemma tokenizer"))
}

fn ids(t: &Tokenizer, text: &str) -> Vec<u32> {
    t.encode(text, false).expect("encode").get_ids().to_vec()
}

/// The dictionary's terms (and the issue's examples).
fn terms() -> Vec<String> {
    let mut t = common::terms();
    for x in ["파스", "연고", "주사제"] {
        if !t.iter().any(|y| y == x) {
            t.push(x.to_owned());
        }
    }
    t
}

#[test]
fn both_modes_make_every_term_one_token_and_leave_other_text_alone() {
    let before = gemma();
    let terms = terms();
    let corpus = common::korean_corpus(1500, 3);
    let hostile = common::hostile_lines(&corpus, 2000, 4);
    let old_size = before.get_vocab_size(true);
    for mode in [ExtendMode::AddTokens, ExtendMode::RepurposeUnused] {
        let ext = extend(before, &terms, mode).expect("extend");
        let after = &ext.tokenizer;
        assert_eq!(ext.old_vocab_size, old_size);
        assert_eq!(ext.added.len() + ext.already_single.len(), terms.len());
        assert!(ext.added.len() > terms.len() / 2, "{}", ext.added.len());
        for (term, id) in &ext.already_single {
            assert_eq!(ids(before, term), vec![*id], "{term}");
            assert_eq!(ids(after, term), vec![*id], "{term}");
        }
        for t in &ext.added {
            assert_eq!(ids(after, &t.term), vec![t.id], "{mode:?} {}", t.term);
            assert_eq!(ids(before, &t.term), t.pieces, "{}", t.term);
            assert!(t.pieces.len() >= 2, "{}: {:?}", t.term, t.pieces);
            // Inside a word, after a particle-bearing context, at the start.
            let text = format!("{}형 {}을 샀다", t.term, t.term);
            let got = ids(after, &text);
            assert_eq!(got.iter().filter(|&&i| i == t.id).count(), 2, "{text}");
            assert_eq!(after.decode(&got, false).expect("decode"), text);
        }
        let fresh: Vec<u32> = ext.rows_to_initialise().map(|t| t.id).collect();
        match mode {
            ExtendMode::AddTokens => {
                assert_eq!(ext.new_vocab_size, old_size + fresh.len());
                let mut sorted = fresh.clone();
                sorted.sort_unstable();
                assert_eq!(
                    sorted,
                    (old_size as u32..(old_size + fresh.len()) as u32).collect::<Vec<_>>()
                );
            }
            ExtendMode::RepurposeUnused => {
                assert_eq!(ext.new_vocab_size, old_size);
                for t in ext.rows_to_initialise() {
                    let old = before.id_to_token(t.id).expect("old token");
                    assert!(old.starts_with("<unused"), "{} took {old}", t.term);
                    assert_eq!(t.replaced.as_deref(), Some(old.as_str()));
                }
                // The lowest unused ids, in order.
                let unused0 = before.token_to_id("<unused0>").expect("<unused0>");
                assert_eq!(fresh[0], unused0);
            }
        }
        // Text without any term encodes exactly as before; all text round-trips.
        let mut untouched = 0;
        for line in corpus.iter().chain(&hostile) {
            let got = ids(after, line);
            if !terms.iter().any(|t| line.contains(t.as_str())) {
                assert_eq!(got, ids(before, line), "{mode:?}: {line:?}");
                untouched += 1;
            }
            assert_eq!(
                &after.decode(&got, false).expect("decode"),
                line,
                "{mode:?}"
            );
        }
        assert!(untouched > 100, "{untouched}");
        // Saved and reloaded, it encodes the same.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        save_tokenizer(after, &path).expect("save");
        let reloaded = load_tokenizer(&path).expect("load");
        for line in corpus.iter().take(300) {
            assert_eq!(ids(&reloaded, line), ids(after, line));
        }
    }
}

#[test]
fn bad_terms_and_too_few_unused_slots_are_typed_errors() {
    let err = extend(gemma(), &["파스", "연고", "파스"], ExtendMode::AddTokens).expect_err("dup");
    match &err {
        Error::Symbol { symbol, index, .. } => assert_eq!((symbol.as_str(), *index), ("파스", 2)),
        other => panic!("{other}"),
    }
    for bad in ["", " ", "\t", "a▁b", "<0x41>"] {
        let err = extend(gemma(), &[bad], ExtendMode::AddTokens).expect_err(bad);
        assert!(
            matches!(err, Error::Symbol { index: 0, .. }),
            "{bad:?}: {err}"
        );
    }
    // A tokenizer without <unused*> tokens: one trained here.
    let small = tiny_tokenizer();
    let err = extend(&small, &["abc"], ExtendMode::RepurposeUnused).expect_err("no slots");
    match err {
        Error::NotEnoughUnused {
            needed, available, ..
        } => assert_eq!((needed, available), (1, 0)),
        other => panic!("{other}"),
    }
}

/// BPE over {a, b, c, ab} with one merge (a b): "abc" → [ab, c], "ccc" → [c, c, c].
fn tiny_tokenizer() -> Tokenizer {
    r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,
        "decoder":null,
        "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
          "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
          "vocab":{"a":0,"b":1,"c":2,"ab":3},"merges":[["a","b"]]}}"#
        .parse()
        .expect("tiny tokenizer")
}

#[test]
fn fragmentation_report_counts_by_hand() {
    let before = tiny_tokenizer();
    // "abc" and "cab" become single tokens; "ab" already is one; "ccc" stays 3 pieces.
    let ext = extend(&before, &["abc", "ccc", "ab", "cab"], ExtendMode::AddTokens).expect("extend");
    assert_eq!(ext.already_single, vec![("ab".to_owned(), 3)]);
    assert_eq!(
        ext.added
            .iter()
            .map(|t| (t.term.as_str(), t.id, t.pieces.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("abc", 4, vec![3, 2]),
            ("ccc", 5, vec![2, 2, 2]),
            ("cab", 6, vec![2, 3])
        ]
    );
    let terms = ["abc", "ccc", "ab"];
    let corpus = ["abc ab", "ccc", "c abc abc"];
    let mut seen = Vec::new();
    let report = FragmentationReport::measure(&before, &ext.tokenizer, &terms, corpus, &mut |n| {
        seen.push(n)
    })
    .expect("report");
    // Terms: before [2, 3, 1], after [1, 1, 1].
    assert_eq!(
        report
            .terms
            .iter()
            .map(|r| (r.before, r.after))
            .collect::<Vec<_>>(),
        vec![(2, 1), (3, 1), (1, 1)]
    );
    assert!((report.mean_tokens_before - 2.0).abs() < 1e-12);
    assert!((report.mean_tokens_after - 1.0).abs() < 1e-12);
    assert!((report.split_3plus_before - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(report.split_3plus_after, 0.0);
    assert_eq!((report.single_before, report.single_after), (1, 3));
    // Corpus: "abc ab" 3 → 2, "ccc" 3 → 1, "c abc abc" 5 → 3.
    assert_eq!(
        (
            report.corpus_lines,
            report.corpus_tokens_before,
            report.corpus_tokens_after
        ),
        (3, 11, 6)
    );
    assert!((report.corpus_length_change - (6.0 / 11.0 - 1.0)).abs() < 1e-12);
    assert_eq!(seen, vec![3]);
    let table = report.table(2);
    assert!(
        table.contains("| tokens per term (mean) | 2.00 | 1.00 |"),
        "{table}"
    );
    assert!(
        table.contains("| corpus tokens | 11 | 6 (-45.5%) |"),
        "{table}"
    );
    assert!(table.contains("| ccc | 3 | 1 |"), "{table}");
    let json: serde_json::Value = serde_json::to_value(&report).expect("json");
    assert_eq!(json["corpus_tokens_after"], 6);
    assert_eq!(json["terms"][1]["term"], "ccc");
}
