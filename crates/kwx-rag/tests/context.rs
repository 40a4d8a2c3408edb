//! Prompt context: budgets measured with the real Gemma tokenizer, de-duplication by term.

mod common;

use std::sync::OnceLock;

use kwx_data::dictionary::Dictionary;
use kwx_rag::{Chunk, ChunkKind, ContextBuilder, IndexBuilder, RagIndex, TokenCounter};

const SENTENCE: &str = "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.";

fn tokenizer() -> &'static tokenizers::Tokenizer {
    static T: OnceLock<tokenizers::Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        tokenizers::Tokenizer::from_file(common::gemma_tokenizer_path()).expect("tokenizer")
    })
}

struct Fixture {
    _dir: tempfile::TempDir,
    index: RagIndex,
}

/// The dictionary plus two overlapping pieces of one leaflet field about 파스.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut chunks = Chunk::from_dictionary(Dictionary::bundled(), "bundled");
        for (piece, text) in [
            "파스형 진통 소염제: 관절통, 근육통, 어깨결림의 진통과 소염에 붙여 사용한다.",
            "어깨결림의 진통과 소염에 붙여 사용한다. 파스는 하루 1~2회 붙인다.",
        ]
        .into_iter()
        .enumerate()
        {
            chunks.push(Chunk {
                key: format!("doc:ketoprofen:효능효과:{piece}"),
                kind: ChunkKind::Document,
                source: "leaflet".into(),
                term: Some("파스".into()),
                aliases: Vec::new(),
                category: Some("dosage_form".into()),
                field: Some("효능효과".into()),
                text: text.into(),
                metadata: Default::default(),
            });
        }
        let index = IndexBuilder::new(dir.path().join("idx"))
            .build(&chunks)
            .expect("index");
        Fixture { _dir: dir, index }
    })
}

#[test]
fn context_fits_the_budget_measured_on_the_whole_text() {
    let f = fixture();
    let tok = tokenizer();
    let unlimited = ContextBuilder::new(&f.index, tok, 100_000)
        .candidates(10)
        .build(SENTENCE)
        .expect("context");
    assert!(unlimited.dropped.is_empty());
    assert_eq!(
        unlimited.tokens,
        tok.count_tokens(&unlimited.text).expect("count")
    );
    for term in ["진통", "해열", "파스", "임산부", "노인"] {
        assert!(
            unlimited.terms.contains(&term.to_owned()),
            "{term} missing: {:?}",
            unlimited.terms
        );
    }
    // Every budget from "nothing fits" up to "everything fits".
    for budget in (0..=unlimited.tokens + 5).step_by(7) {
        let ctx = ContextBuilder::new(&f.index, tok, budget)
            .candidates(10)
            .build(SENTENCE)
            .expect("context");
        assert!(
            ctx.tokens <= budget,
            "budget {budget}: {} tokens",
            ctx.tokens
        );
        assert_eq!(ctx.tokens, tok.count_tokens(&ctx.text).expect("count"));
        assert_eq!(
            ctx.entries.len() + ctx.dropped.len(),
            unlimited.entries.len()
        );
        // What is kept is kept in relevance order.
        let kept: Vec<&str> = ctx.entries.iter().map(|e| e.key.as_str()).collect();
        let order: Vec<&str> = unlimited
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .filter(|k| kept.contains(k))
            .collect();
        assert_eq!(kept, order);
        for e in &ctx.entries {
            assert!(ctx.text.contains(&e.line));
        }
        if ctx.entries.is_empty() {
            assert_eq!(ctx.text, "");
        }
    }
}

#[test]
fn one_entry_per_term_and_terms_match_entries() {
    let f = fixture();
    let ctx = ContextBuilder::new(&f.index, tokenizer(), 10_000)
        .candidates(20)
        .build("파스형 진통 소염제를 붙이는 파스")
        .expect("context");
    // One definition of 파스, and one piece of the leaflet field about it.
    let pas: Vec<Option<&str>> = ctx
        .entries
        .iter()
        .filter(|e| e.term.as_deref() == Some("파스"))
        .map(|e| e.key.strip_prefix("dict:").map_or(Some("doc"), |_| None))
        .collect();
    assert_eq!(pas.len(), 2, "{:?}", ctx.entries);
    assert!(
        pas.contains(&None) && pas.contains(&Some("doc")),
        "{:?}",
        ctx.entries
    );
    let mut terms: Vec<String> = Vec::new();
    for t in ctx.entries.iter().filter_map(|e| e.term.clone()) {
        if !terms.contains(&t) {
            terms.push(t);
        }
    }
    assert_eq!(terms, ctx.terms);
    assert!(ctx.text.starts_with("참고 정의:\n- "));
}

#[test]
fn header_and_category_filter() {
    let f = fixture();
    let ctx = ContextBuilder::new(&f.index, tokenizer(), 10_000)
        .header("")
        .categories(["population"])
        .build(SENTENCE)
        .expect("context");
    assert!(ctx.text.starts_with("- "));
    let mut first_two = ctx.terms[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, ["노인", "임산부"]);
    assert!(
        ctx.entries
            .iter()
            .all(|e| e.category.as_deref() == Some("population"))
    );
}

/// `RagContext`, the RAG strategy's `ContextProvider`: the same packed text a `ContextBuilder`
/// with the Gemma tokenizer, no header and the same budget gives, and typed errors through it.
#[test]
fn rag_context_provides_the_builders_text() {
    use kwx_core::extract::ContextProvider;
    let dir = tempfile::tempdir().expect("tempdir");
    let index = IndexBuilder::new(dir.path().join("idx"))
        .build(&Chunk::from_dictionary(Dictionary::bundled(), "bundled"))
        .expect("index");
    let gemma = kwx_core::GemmaTokenizer::from_tokenizer(tokenizer().clone());
    let expected = ContextBuilder::new(&index, &gemma, 120)
        .header("")
        .build(SENTENCE)
        .expect("context");
    let provider = kwx_rag::RagContext::new(std::sync::Arc::new(index), gemma.clone(), 120);
    let text = provider.context(SENTENCE).expect("provider");
    assert_eq!(text, expected.text);
    assert!(gemma.count_tokens(&text).expect("count") <= 120);
    assert!(text.contains("임산부"), "{text}");
    let err = provider.candidates(0).context(SENTENCE).unwrap_err();
    assert!(matches!(err, kwx_core::Error::Context(_)), "{err}");
}
