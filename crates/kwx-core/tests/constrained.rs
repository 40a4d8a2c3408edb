//! Constrained decoding (`kwx_core::constrain`): the token table against the real Gemma 3
//! tokenizer, the grammar on a handmade vocabulary, Hangul arriving as byte-fallback tokens,
//! random generation with a tiny random-weight Gemma 3 over the real 262k vocabulary (every
//! output parses; extractive strings occur in the input), and batches equal to single rows.
//! Needs the Gemma 3 tokenizer fetched by `scripts/fetch_model.sh`.
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use std::sync::{Arc, OnceLock};

use burn::tensor::Device;
use kwx_core::config::gemma3_layer_types;
use kwx_core::tokenizers::{AddedToken, Tokenizer};
use kwx_core::{
    ChatMessage, Family, Gemma, GemmaConfig, GemmaTokenizer, GenerationConfig, Generator,
    JsonArrayConstraint, OutputMode, Rope, StopReason, TokenBytes, TokenConstraint,
};

const EOS: u32 = 1;
const END_OF_TURN: u32 = 106;
const ENDS: [u32; 2] = [EOS, END_OF_TURN];

const TEXTS: &[&str] = &[
    "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.",
    "아세트아미노펜 500mg 정제는 두통, 치통 및 생리통의 완화에 사용한다.",
    "당뇨병 환자는 \"인슐린\" 주사 전후로 혈당을 확인해야 한다.",
    "이부프로펜/나프록센 계열 소염진통제는 위장 장애를 일으킬 수 있음",
];

fn tokenizer() -> &'static GemmaTokenizer {
    static TOK: OnceLock<GemmaTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = kwx_core::home::gemma3_270m_tokenizer()
            .unwrap_or_else(|e| panic!("{e}: run scripts/fetch_model.sh"));
        GemmaTokenizer::from_file(path).unwrap()
    })
}

fn table() -> Arc<TokenBytes> {
    static TABLE: OnceLock<Arc<TokenBytes>> = OnceLock::new();
    TABLE
        .get_or_init(|| Arc::new(TokenBytes::new(tokenizer()).unwrap()))
        .clone()
}

/// A 2-layer Gemma 3 (hidden 64) over the real vocabulary, norms randomised.
fn model() -> &'static Gemma {
    static MODEL: OnceLock<Gemma> = OnceLock::new();
    MODEL.get_or_init(|| {
        let config = GemmaConfig::new(
            Family::Gemma3,
            tokenizer().vocab_size(),
            64,
            128,
            2,
            2,
            1,
            32,
            32.0,
            gemma3_layer_types(2, 2),
            Rope::new(1_000_000.0),
            Rope::new(10_000.0),
        )
        .with_sliding_window(Some(8))
        .with_eos_token_ids(vec![EOS]);
        let device = Device::default();
        device.seed(11);
        let mut model = config.init(&device).unwrap();
        common::randomise_norms(&mut model, &device);
        model
    })
}

fn id(piece: &str) -> u32 {
    tokenizer()
        .token_to_id(piece)
        .unwrap_or_else(|| panic!("{piece:?} is not a Gemma token"))
}

fn byte(b: u8) -> u32 {
    id(&format!("<0x{b:02X}>"))
}

fn prompt(text: &str) -> Vec<u32> {
    tokenizer()
        .encode_chat(
            &[ChatMessage::user(format!(
                "다음 문장의 키워드를 JSON 배열로 추출하세요.\n{text}"
            ))],
            true,
        )
        .unwrap()
}

/// The ids of `logits` left finite.
fn allowed(c: &mut JsonArrayConstraint, vocab: usize) -> Vec<u32> {
    let mut logits = vec![0.0f32; vocab];
    c.mask(&mut logits).unwrap();
    (0..vocab as u32)
        .filter(|&t| logits[t as usize].is_finite())
        .collect()
}

fn parses(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json:?} is not a string array: {e}"))
}

/// What every constrained output must satisfy, however it ended.
fn check_output(c: &JsonArrayConstraint, source: Option<&str>, max_chars: usize) {
    let items = parses(&c.json());
    assert_eq!(items, c.strings(), "{c:?}");
    for s in &items {
        assert!(
            !s.is_empty() && s.chars().count() <= max_chars,
            "{s:?} in {c:?}"
        );
        if let Some(src) = source {
            assert!(src.contains(s.as_str()), "{s:?} is not in {src:?}");
        }
    }
    if c.is_complete() {
        assert_eq!(
            c.json().as_bytes(),
            c.bytes(),
            "a closed array is returned as written"
        );
    }
}

#[test]
fn token_bytes_equal_what_the_tokenizer_decodes() {
    let tok = tokenizer();
    let table = table();
    assert_eq!(table.len(), tok.vocab_size());
    let added = tok.inner().get_added_tokens_decoder();
    let (mut bytes, mut text, mut never) = (0, 0, 0);
    for id in 0..table.len() as u32 {
        let piece = tok.inner().id_to_token(id).unwrap();
        match table.get(id) {
            Some(b) if piece.len() == 6 && piece.starts_with("<0x") => {
                bytes += 1;
                assert_eq!(
                    b,
                    [u8::from_str_radix(&piece[3..5], 16).unwrap()],
                    "{piece}"
                );
            }
            Some(b) => {
                text += 1;
                assert_eq!(
                    b,
                    tok.decode_raw(&[id]).unwrap().as_bytes(),
                    "id {id} {piece:?}"
                );
            }
            None => {
                never += 1;
                let a = added
                    .get(&id)
                    .unwrap_or_else(|| panic!("model piece {piece:?}"));
                assert!(
                    a.special || a.content.starts_with('<') || a.content.starts_with('['),
                    "{a:?}"
                );
            }
        }
    }
    assert_eq!(bytes, 256);
    assert_eq!(bytes + text + never, 262_145);
    for never in [
        0, 1, 2, 3, 4, 5, 6, 105, 106, 168, 255_999, 256_000, 262_144,
    ] {
        assert_eq!(table.get(never), None, "id {never}");
    }
    assert_eq!(table.get(107), Some(&b"\n"[..]));
    assert_eq!(table.get(138), Some(&b"  "[..]));
    assert_eq!(table.get(255_968), Some(&b"\t"[..]));
    assert_eq!(table.get(id("▁해")), Some(" 해".as_bytes()));

    // In context: the bytes of encoded texts (byte fallback included) concatenate to the
    // decoded text.
    for text in TEXTS
        .iter()
        .copied()
        .chain(["[\"한\", \"𝔘\u{E000}\"]\n", "\u{10FFFF}"])
    {
        let ids = tok.encode(text, false).unwrap();
        let joined: Vec<u8> = ids
            .iter()
            .flat_map(|&i| table.get(i).unwrap().to_vec())
            .collect();
        assert_eq!(joined, text.as_bytes(), "{ids:?}");
    }
    let han = [byte(0xED), byte(0x95), byte(0x9C)];
    let joined: Vec<u8> = han
        .iter()
        .flat_map(|&i| table.get(i).unwrap().to_vec())
        .collect();
    assert_eq!(tok.decode(&han).unwrap().as_bytes(), joined);
    assert_eq!(tok.decode(&han).unwrap(), "한");
}

#[test]
fn added_domain_tokens_have_their_decoded_bytes() {
    // A renamed <unused5> (what kwx-tokenizer's `extend` does to reuse ids), and tokens added
    // through the API, one of them normalized (kept as `소염▁진통`, a space once decoded).
    let path = kwx_core::home::gemma3_270m_tokenizer().unwrap();
    let json = std::fs::read_to_string(path).unwrap();
    assert_eq!(json.matches("\"<unused5>\"").count(), 2);
    let mut inner = Tokenizer::from_bytes(json.replace("\"<unused5>\"", "\"파스\"")).unwrap();
    inner
        .add_tokens([
            AddedToken::from("해열진통제", false),
            AddedToken::from("소염 진통", false),
            AddedToken::from("<extra_tag>", true),
        ])
        .unwrap();
    let extended = GemmaTokenizer::from_tokenizer(inner);
    let table = TokenBytes::new(&extended).unwrap();
    assert_eq!(table.len(), 262_148);
    assert_eq!(table.get(11), Some("파스".as_bytes()));
    for (id, text) in [(262_145, "해열진통제"), (262_146, "소염 진통")] {
        assert_eq!(table.get(id), Some(text.as_bytes()));
        assert_eq!(extended.decode_raw(&[id]).unwrap(), text);
    }
    assert_eq!(table.get(262_147), None, "special");
    let ids = extended.encode("파스형 해열진통제", false).unwrap();
    assert!(ids.contains(&11) && ids.contains(&262_145), "{ids:?}");
    let joined: Vec<u8> = ids
        .iter()
        .flat_map(|&i| table.get(i).unwrap().to_vec())
        .collect();
    assert_eq!(joined, extended.decode(&ids).unwrap().as_bytes());
}

#[test]
fn hangul_byte_fallback_is_never_cut() {
    let vocab = tokenizer().vocab_size();
    let closers = [id("\""), id("\"]"), id("\",")];
    let masked = |c: &mut JsonArrayConstraint, t: u32| !allowed(c, vocab).contains(&t);
    let mut c = JsonArrayConstraint::new(table(), OutputMode::Json, &ENDS);
    c.advance(id("[\"")).unwrap();
    for t in closers {
        assert!(masked(&mut c, t), "an empty string cannot close");
    }
    let after = |bytes: &[u8]| {
        let mut c = JsonArrayConstraint::new(table(), OutputMode::Json, &ENDS);
        c.advance(id("[\"")).unwrap();
        for &b in bytes {
            c.advance(byte(b)).unwrap();
        }
        c
    };
    // 한 = ED 95 9C: the quote waits for the third byte.
    for n in 1..=2 {
        let mut c = after(&[0xED, 0x95, 0x9C][..n]);
        let ids = allowed(&mut c, vocab);
        for t in closers {
            assert!(!ids.contains(&t), "closed after {n} of 3 bytes");
        }
        assert!(!ids.contains(&id("한")) && !ids.contains(&id("a")));
        assert_eq!(c.json(), "[]");
        assert!(c.strings().is_empty());
    }
    let mut c = after(&[0xED, 0x95, 0x9C]);
    let ids = allowed(&mut c, vocab);
    for t in closers {
        assert!(ids.contains(&t));
    }
    assert_eq!(c.json(), "[\"한\"]");
    assert_eq!(c.strings(), ["한"]);
    c.advance(id("\"]")).unwrap();
    assert!(c.is_complete());
    assert_eq!(allowed(&mut c, vocab), ENDS);

    // Broken UTF-8 is masked: a continuation without a lead, overlong leads (C0, C1, E0 80),
    // surrogates (ED A0), past U+10FFFF (F4 90, F5).
    let mut c = after(&[]);
    let ids = allowed(&mut c, vocab);
    for b in [0x80, 0x95, 0xBF, 0xC0, 0xC1, 0xF5, 0xFF] {
        assert!(!ids.contains(&byte(b)), "{b:02X} at a boundary");
    }
    for b in [0x41, 0xC2, 0xE0, 0xED, 0xF0, 0xF4] {
        assert!(ids.contains(&byte(b)), "{b:02X} at a boundary");
    }
    for (lead, bad, good) in [
        (0xE0, 0x9F, 0xA0),
        (0xED, 0xA0, 0x9F),
        (0xF0, 0x8F, 0x90),
        (0xF4, 0x90, 0x8F),
        (0xC2, 0xC0, 0xBF),
    ] {
        let mut c = after(&[lead]);
        let ids = allowed(&mut c, vocab);
        assert!(!ids.contains(&byte(bad)), "{lead:02X} {bad:02X}");
        assert!(ids.contains(&byte(good)), "{lead:02X} {good:02X}");
        assert!(c.advance(byte(bad)).is_err());
    }

    // Extractive: only bytes that continue a syllable of the source.
    let source = "진통과 해열";
    let mut c = JsonArrayConstraint::new(
        table(),
        OutputMode::Extractive {
            source: source.into(),
        },
        &ENDS,
    );
    c.advance(id("[\"")).unwrap();
    c.advance(byte(0xED)).unwrap();
    let bytes: Vec<u8> = (0..=255u8)
        .filter(|&b| allowed(&mut c, vocab).contains(&byte(b)))
        .collect();
    assert_eq!(bytes, [0x86, 0x95], "통 = ED 86 B5, 해 = ED 95 B4");
    c.advance(byte(0x95)).unwrap();
    let ids = allowed(&mut c, vocab);
    assert!(
        ids.contains(&byte(0xB4)) && !ids.contains(&byte(0x9C)),
        "해 but not 한"
    );
}

/// A handmade vocabulary: id → bytes.
const PIECES: &[&str] = &[
    "[", "]", "\"", ",", " ", "\n", "\"]", "\",", "[\"", "a", "bc", "\\", "n", "u", "\\\"", "\t",
    "x\"]", "  ", "", "[]", "\",\"", "/", "\u{1}", "é", " \"", "ca",
];
const END: u32 = 18;

fn small(mode: OutputMode) -> JsonArrayConstraint {
    let pieces = PIECES
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32 != END).then(|| p.as_bytes().to_vec()))
        .collect();
    JsonArrayConstraint::new(Arc::new(TokenBytes::from_pieces(pieces)), mode, &[END])
}

fn names(c: &mut JsonArrayConstraint) -> Vec<&'static str> {
    allowed(c, PIECES.len())
        .into_iter()
        .map(|t| if t == END { "END" } else { PIECES[t as usize] })
        .collect()
}

fn feed(c: &mut JsonArrayConstraint, pieces: &[&str]) {
    for p in pieces {
        let t = PIECES.iter().position(|q| q == p).unwrap() as u32;
        c.advance(t).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    }
}

#[test]
fn grammar_on_a_handmade_vocabulary() {
    // Only `[` (or one whitespace character) first; end ids only after `]`.
    let mut c = small(OutputMode::Json);
    assert_eq!(names(&mut c), ["[", " ", "\n", "[\"", "[]"]);
    assert_eq!(c.json(), "[]");
    feed(&mut c, &[" "]);
    assert_eq!(names(&mut c), ["[", "[\"", "[]"]);
    feed(&mut c, &["[]"]);
    assert!(c.is_complete());
    assert_eq!(names(&mut c), ["END"]);
    assert_eq!(c.json(), " []");
    c.advance(END).unwrap();
    assert!(
        c.mask(&mut [0.0; PIECES.len()]).is_err(),
        "nothing after the end token"
    );

    // After `[`: `]`, a string (which may start with `]` or `,`: `["]` is a string) or one
    // whitespace character.
    let mut c = small(OutputMode::Json);
    assert!(c.advance(END).is_err(), "no end before `]`");
    feed(&mut c, &["["]);
    let strings = ["\"]", "\",", "\",\""];
    assert_eq!(
        names(&mut c),
        [&["]", "\"", " ", "\n"][..], &strings, &[" \""]].concat()
    );
    feed(&mut c, &["\n"]);
    assert_eq!(
        names(&mut c),
        [&["]", "\""][..], &strings].concat(),
        "runs of one"
    );
    // An empty string cannot close; raw control characters never appear in one.
    feed(&mut c, &["\""]);
    let inside = names(&mut c);
    for no in ["\"", "\"]", "\",", "\",\"", "\n", "\t", "\u{1}", "END"] {
        assert!(!inside.contains(&no), "{no:?} in {inside:?}");
    }
    for yes in ["a", "]", ",", " ", "  ", "\\\"", "é", "x\"]", " \"", "[\""] {
        assert!(inside.contains(&yes), "{yes:?} not in {inside:?}");
    }
    assert!(c.advance(6).is_err(), "`\"]` on an empty string");
    assert!(c.advance(999).is_err(), "an id outside the table");

    // Escapes: only \" \\ \/ \n \t \r (no \u).
    feed(&mut c, &["a", "\\"]);
    assert_eq!(
        names(&mut c),
        ["\"", "\"]", "\",", "\\", "n", "\\\"", "\",\"", "/"]
    );
    feed(&mut c, &["n", "\\\"", "\\", "/"]);
    assert_eq!(c.strings(), ["a\n\"/"]);
    assert_eq!(c.json(), "[\n\"a\\n\\\"\\/\"]");
    // Multi-state tokens: close and separate, close and open, close and end.
    feed(&mut c, &["\",\"", "bc", "\",", " \"", "é", "x\"]"]);
    assert!(c.is_complete());
    assert_eq!(c.strings(), ["a\n\"/", "bc", "éx"]);
    assert_eq!(parses(&c.json()), c.strings());
    assert_eq!(c.json().as_bytes(), c.bytes());

    // max_item_chars: a full string can only close (an escape counts as one character).
    let closers = ["\"", "\"]", "\",", "\",\""];
    let mut c = small(OutputMode::Json).max_item_chars(3);
    feed(&mut c, &["[\"", "a", "bc"]);
    assert_eq!(names(&mut c), closers);
    let mut c = small(OutputMode::Json).max_item_chars(2);
    feed(&mut c, &["[\"", "a"]);
    let n = names(&mut c);
    assert!(!n.contains(&"bc") && !n.contains(&"ca") && n.contains(&"\\\""));
    feed(&mut c, &["\\", "n"]);
    assert_eq!(names(&mut c), closers);
    assert_eq!(c.strings(), ["a\n"]);

    // max_items, and other whitespace limits.
    let mut c = small(OutputMode::Json).max_items(0);
    feed(&mut c, &["["]);
    assert_eq!(names(&mut c), ["]", " ", "\n"]);
    let mut c = small(OutputMode::Json).max_items(1).max_whitespace(2);
    assert!(names(&mut c).contains(&"  "));
    feed(&mut c, &["[\"", "a", "\"", " ", "\n"]);
    assert_eq!(names(&mut c), ["]"]);
    let mut c = small(OutputMode::Json).max_whitespace(0);
    assert_eq!(names(&mut c), ["[", "[\"", "[]"]);
}

#[test]
fn extractive_strings_and_early_stops() {
    let mut c = small(OutputMode::Extractive {
        source: "abca \"x\"".into(),
    });
    feed(&mut c, &["[\""]);
    assert_eq!(
        names(&mut c),
        [" ", "a", "bc", "\\", "\\\"", "x\"]", " \"", "ca"]
    );
    feed(&mut c, &["bc"]);
    // "bca" occurs, "bcca" and "bc " do not.
    assert_eq!(names(&mut c), ["\"", "\"]", "\",", "a", "\",\""]);
    feed(&mut c, &["a", " ", "\\"]);
    assert_eq!(names(&mut c), ["\""], "only \\\" continues `bca \\`");
    feed(&mut c, &["\"", "x\"]"]);
    assert_eq!(c.strings(), ["bca \"x"]);
    assert_eq!(c.json(), r#"["bca \"x"]"#);

    // A source with nothing writable allows only `[]`.
    let mut c = small(OutputMode::Extractive {
        source: "\u{1}".into(),
    });
    feed(&mut c, &["["]);
    assert_eq!(names(&mut c), ["]", " ", "\n"]);

    // json() completes what an early stop left.
    for (fed, json) in [
        (&["[\"", "a", "\",", " "][..], "[\"a\"]"),
        (&["[\"", "a", "\",\""], "[\"a\"]"),
        (&["[\"", "a", "\",\"", "bc"], "[\"a\",\"bc\"]"),
        (&["[\"", "a", "\\"], "[\"a\"]"),
        (&["[\"", "\\"], "[]"),
        (&["[\"", "a", "\""], "[\"a\"]"),
        (&["["], "[]"),
        (&[" "], " []"),
    ] {
        let mut c = small(OutputMode::Json);
        feed(&mut c, fed);
        assert_eq!(c.json(), json, "{fed:?}");
        assert_eq!(parses(&c.json()), c.strings());
        assert!(!c.is_complete());
    }
}

#[test]
fn random_walks_over_the_real_vocabulary_stay_valid() {
    // Uniform choices among the allowed tokens explore what a model rarely would: byte
    // fallback, escapes, long strings, whitespace. The mask equals `allows` token by token.
    let vocab = tokenizer().vocab_size();
    let mut lcg = 7u64;
    let mut next = |n: usize| {
        lcg = lcg
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (lcg >> 33) as usize % n
    };
    let closers = [id("\"]"), id("]")];
    let byte_ids: Vec<u32> = (0..=255).map(byte).collect();
    let (mut completed, mut checked, mut bytes_written) = (0, 0, 0);
    for walk in 0..24 {
        let source = TEXTS[walk % TEXTS.len()];
        let extractive = walk % 2 == 1;
        let mode = if extractive {
            OutputMode::Extractive {
                source: source.into(),
            }
        } else {
            OutputMode::Json
        };
        let max_chars = 6 + walk % 5;
        let mut c = JsonArrayConstraint::new(table(), mode, &ENDS).max_item_chars(max_chars);
        for step in 0..40 {
            let mut logits = vec![0.0f32; vocab];
            c.mask(&mut logits).unwrap();
            let ids: Vec<u32> = (0..vocab as u32)
                .filter(|&t| logits[t as usize].is_finite())
                .collect();
            assert!(!ids.is_empty());
            if (walk % 6 == 0 && step % 7 == 3) || (extractive && step == 2) {
                checked += 1;
                for t in 0..vocab as u32 {
                    assert_eq!(logits[t as usize].is_finite(), c.allows(t), "{t} {c:?}");
                }
            }
            // Close now and then, and write byte-fallback tokens often: among 262k tokens
            // a uniform draw rarely picks `]` or one of the 256 byte pieces.
            let open = |t: &&u32| logits[**t as usize].is_finite();
            let bytes: Vec<u32> = byte_ids.iter().filter(open).copied().collect();
            let t = match closers.iter().find(open) {
                Some(&t) if step >= 8 && next(4) == 0 => t,
                _ if !bytes.is_empty() && next(3) == 0 => {
                    bytes_written += 1;
                    bytes[next(bytes.len())]
                }
                _ => ids[next(ids.len())],
            };
            c.advance(t).unwrap();
            check_output(&c, extractive.then_some(source), max_chars);
            if ENDS.contains(&t) {
                completed += 1;
                break;
            }
        }
    }
    assert!(completed >= 12, "{completed} walks closed their array");
    assert!(
        checked >= 8 && bytes_written >= 40,
        "{checked} {bytes_written}"
    );
}

#[test]
fn random_generation_always_parses() {
    // Sampling at temperature 1 from a random model: outputs wander over the vocabulary. Short
    // budgets stop mid-array (mid-string, mid-character); long ones, with few short items,
    // close it. Each run costs a full sort of 262k logits per token in the test profile, so
    // the count is kept small; the random walks above explore far more.
    let model = model();
    let tok = tokenizer();
    let generator = Generator::new(model).with_tokenizer(tok);
    let (mut complete, mut items) = (0, 0);
    for (k, text) in TEXTS.iter().enumerate() {
        let prompt = prompt(text);
        for (run, (budget, extractive)) in [(3, false), (5, true), (14, k % 2 == 1)]
            .into_iter()
            .enumerate()
        {
            let mode = if extractive {
                OutputMode::Extractive {
                    source: text.to_string(),
                }
            } else {
                OutputMode::Json
            };
            let (max_items, max_chars) = if budget > 8 { (2, 5) } else { (4, 12) };
            let mut c = JsonArrayConstraint::new(table(), mode, &ENDS)
                .max_items(max_items)
                .max_item_chars(max_chars);
            let config = GenerationConfig::greedy(budget)
                .with_temperature(1.0)
                .with_seed((10 * k + run) as u64)
                .with_stop_token(END_OF_TURN);
            let out = generator
                .generate_batch_constrained(
                    std::slice::from_ref(&prompt),
                    &config,
                    &mut [&mut c as &mut dyn TokenConstraint],
                    |_| {},
                )
                .unwrap()
                .pop()
                .unwrap();
            check_output(&c, extractive.then_some(*text), max_chars);
            assert!(c.strings().len() <= max_items);
            let decoded = tok.decode_raw(&out.tokens).unwrap();
            if !decoded.ends_with('\u{FFFD}') {
                assert_eq!(decoded.as_bytes(), c.bytes(), "the constraint saw the text");
            }
            if c.is_complete() {
                complete += 1;
                assert_eq!(parses(out.text.as_deref().unwrap()), c.strings());
                assert!(
                    matches!(out.stop, StopReason::Token(t) if ENDS.contains(&t))
                        || out.tokens.len() == budget,
                    "{out:?}"
                );
            }
            items += c.strings().len();
        }
    }
    assert!(complete >= 2, "{complete} generations closed their array");
    assert!(items >= 6, "{items} strings in all");
}

#[test]
fn batched_rows_equal_single_rows() {
    let model = model();
    let generator = Generator::new(model).with_tokenizer(tokenizer());
    let prompts: Vec<Vec<u32>> = TEXTS[..3].iter().map(|t| prompt(t)).collect();
    assert!(prompts[0].len() != prompts[1].len() && prompts[1].len() != prompts[2].len());
    let make = |i: usize| {
        let mode = if i == 1 {
            OutputMode::Json
        } else {
            OutputMode::Extractive {
                source: TEXTS[i].into(),
            }
        };
        JsonArrayConstraint::new(table(), mode, &ENDS).max_item_chars(10)
    };
    let config = GenerationConfig::greedy(16).with_stop_token(END_OF_TURN);
    let mut batch: Vec<JsonArrayConstraint> = (0..3).map(make).collect();
    let mut dyns: Vec<&mut dyn TokenConstraint> = batch
        .iter_mut()
        .map(|c| c as &mut dyn TokenConstraint)
        .collect();
    let batched = generator
        .generate_batch_constrained(&prompts, &config, &mut dyns, |_| {})
        .unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let mut alone = make(i);
        let out = generator
            .generate_batch_constrained(
                std::slice::from_ref(p),
                &config,
                &mut [&mut alone as &mut dyn TokenConstraint],
                |_| {},
            )
            .unwrap();
        assert_eq!(out[0], batched[i], "row {i}");
        assert_eq!(alone.json(), batch[i].json());
        assert!(!alone.bytes().is_empty());
    }
}
