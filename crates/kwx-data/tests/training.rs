//! The training view against the real Gemma 3 tokenizer: the chat format, completion-only
//! labels that cover exactly the answer, joint vs separate tokenization, each truncation policy
//! with exact lengths, packing (block-diagonal causal masks, positions restarting per segment)
//! and length-grouped right-padded batches.
//!
//! The tokenizer is `$KWX_HOME/gemma-3-270m/tokenizer.json` (`KWX_HOME` defaults to
//! `$HOME/.cache/kwx`), fetched by `scripts/fetch_model.sh`; without it the tests fail, never
//! skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use kwx_data::builder::{DEFAULT_INSTRUCTION, DatasetBuilder};
use kwx_data::dictionary::Dictionary;
use kwx_data::jsonl::{InstructionRecord, SftRecord};
use kwx_data::training::{
    BatchSize, ChatFormat, ExampleEncoder, IGNORE_INDEX, Overlong, PackedSequence, Packing,
    Rendered, TrainingDataError, TrainingExample, Truncation, batches_by_length, pack,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

const BOS: u32 = 2;
const PAD: u32 = 0;
const START_OF_TURN: u32 = 105;
const END_OF_TURN: u32 = 106;
const NEWLINE: u32 = 107;

/// `$KWX_HOME`, else `$HOME/.cache/kwx`: where `scripts/fetch_model.sh` puts the model.
fn kwx_home() -> PathBuf {
    match std::env::var_os("KWX_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".cache")
            .join("kwx"),
    }
}

/// The Gemma 3 tokenizer, loaded once; fails the test with instructions when it is missing.
fn tokenizer() -> &'static Tokenizer {
    static CELL: OnceLock<Tokenizer> = OnceLock::new();
    CELL.get_or_init(|| {
        let path = kwx_home().join("gemma-3-270m").join("tokenizer.json");
        assert!(
            path.is_file(),
            "{} is missing: run `scripts/fetch_model.sh` to fetch the Gemma 3 270M tokenizer \
             (set KWX_HOME to choose the cache directory)",
            path.display()
        );
        Tokenizer::from_file(&path).unwrap()
    })
}

fn encoder() -> ExampleEncoder<'static> {
    ExampleEncoder::new(tokenizer(), ChatFormat::Gemma).unwrap()
}

fn record(instruction: &str, input: &str, output: &str) -> InstructionRecord {
    InstructionRecord {
        instruction: instruction.to_owned(),
        input: input.to_owned(),
        output: output.to_owned(),
    }
}

/// Hand-written Korean examples with spaces, mixed scripts, digits, emoji, empty answers and
/// surrounding whitespace, then generated ones from the bundled dictionary.
fn korean_records() -> Vec<InstructionRecord> {
    let mut records = vec![
        record(
            "다음 글에서 키워드를 추출하세요.",
            "타이레놀은 해열진통제입니다.",
            r#"["타이레놀","해열진통제"]"#,
        ),
        record(
            DEFAULT_INSTRUCTION,
            "  두통과 발열에는 아세트아미노펜 500mg 정제를 4~6시간 간격으로 복용합니다.\n",
            r#"["두통","발열","아세트아미노펜","정제"]"#,
        ),
        record(
            DEFAULT_INSTRUCTION,
            "임산부는 이부프로펜(Ibuprofen) 복용 전 의사와 상담하세요 💊",
            r#"["임산부","이부프로펜"]"#,
        ),
        record(DEFAULT_INSTRUCTION, "오늘은 날씨가 맑습니다.", "[]"),
        record(
            "",
            "판콜에이 시럽은 감기 증상 완화에 쓰입니다.",
            r#"["판콜에이","시럽","감기"]"#,
        ),
        record(
            "키워드:",
            "기침·가래엔\t진해거담제 ― 졸음 주의!",
            " [\"기침\",\"가래\",\"진해거담제\",\"졸음\"] \n",
        ),
    ];
    let examples = DatasetBuilder::new(Dictionary::bundled())
        .seed(11)
        .n(200)
        .alias_rate(0.3)
        .no_keyword_rate(0.1)
        .build()
        .expect("bundled dataset builds");
    records.extend(
        examples
            .iter()
            .map(|e| e.to_instruction(DEFAULT_INSTRUCTION)),
    );
    records
}

fn ids(text: &str) -> Vec<u32> {
    tokenizer().encode(text, false).unwrap().get_ids().to_vec()
}

fn decode(ids: &[u32]) -> String {
    tokenizer().decode(ids, false).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Rendering

#[test]
fn renders_the_gemma_chat_template() {
    let r = record(
        "키워드를 추출하세요.",
        "두통에는 진통제.",
        r#"["두통","진통제"]"#,
    );
    let rendered = ChatFormat::Gemma.render(&r);
    assert_eq!(
        rendered.prompt,
        "<bos><start_of_turn>user\n키워드를 추출하세요.\n\n두통에는 진통제.<end_of_turn>\n\
         <start_of_turn>model\n"
    );
    assert_eq!(rendered.completion, "[\"두통\",\"진통제\"]<end_of_turn>\n");
    assert_eq!(
        rendered.text(),
        format!("{}{}", rendered.prompt, rendered.completion)
    );
    assert_eq!(
        ChatFormat::Gemma.render_prompt(&r.instruction, &r.input),
        rendered.prompt
    );

    // SFT records render through `to_instruction`.
    let sft = SftRecord {
        text: r.input.clone(),
        labels: vec!["두통".into(), "진통제".into()],
    };
    assert_eq!(ChatFormat::Gemma.render_sft(&sft, &r.instruction), rendered);
}

#[test]
fn rendering_trims_messages_as_the_template_does() {
    // Jinja's `trim` applies to message content (input, output), not to the system text
    // (instruction); U+001F is whitespace to Python, not to Rust's `trim`.
    let rendered = ChatFormat::Gemma.render(&record(
        " 지시 ",
        "\u{1f} \n본문\t\u{3000}",
        "\n[\"본문\"] ",
    ));
    assert_eq!(
        rendered.prompt,
        "<bos><start_of_turn>user\n 지시 \n\n본문<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(rendered.completion, "[\"본문\"]<end_of_turn>\n");

    // No instruction: no system message, so no separator.
    let rendered = ChatFormat::Gemma.render(&record("", "본문", "[]"));
    assert_eq!(
        rendered.prompt,
        "<bos><start_of_turn>user\n본문<end_of_turn>\n<start_of_turn>model\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Tokenization

#[test]
fn pins_the_token_ids_of_one_example() {
    let r = record(
        "다음 글에서 키워드를 추출하세요.",
        "타이레놀은 해열진통제입니다.",
        r#"["진통","해열"]"#,
    );
    let ex = encoder().encode_record(0, &r).unwrap().unwrap();
    // Ids as the reference tokenizer.json gives them: <bos> <start_of_turn> user \n ...
    // <end_of_turn> \n <start_of_turn> model \n | [" 진 통 "," 해 열 "] <end_of_turn> \n
    let prompt_head = [BOS, START_OF_TURN, 2364, NEWLINE, 181310];
    let prompt_tail = [236761, END_OF_TURN, NEWLINE, START_OF_TURN, 4368, NEWLINE];
    let completion = [
        4119,
        238275,
        238661,
        4337,
        237578,
        239303,
        1935,
        END_OF_TURN,
        NEWLINE,
    ];
    assert_eq!(ex.input_ids[..5], prompt_head);
    let p = ex.prompt_len();
    assert_eq!(p, 31);
    assert_eq!(ex.input_ids[p - 6..p], prompt_tail);
    assert_eq!(ex.input_ids[p..], completion);
    assert_eq!(
        ex.labels[p..],
        completion.map(i64::from),
        "labels are the ids themselves, unshifted"
    );
    assert!(ex.labels[..p].iter().all(|&l| l == IGNORE_INDEX));
}

#[test]
fn completion_labels_cover_exactly_the_answer() {
    let encoder = encoder();
    assert_eq!(encoder.pad_id(), PAD);
    assert_eq!(encoder.bos_id(), BOS);
    for (i, r) in korean_records().iter().enumerate() {
        let rendered = ChatFormat::Gemma.render(r);
        let ex = encoder.encode_record(i, r).unwrap().unwrap();
        ex.validate().unwrap();
        assert_eq!(ex.index, i);
        assert_eq!(ex.labels.len(), ex.input_ids.len());
        assert!(ex.attention_mask.iter().all(|&m| m == 1));

        // The labelled positions are one contiguous suffix, each label its own token id.
        let p = ex.prompt_len();
        assert!(p > 0 && p < ex.len());
        assert!(ex.labels[..p].iter().all(|&l| l == IGNORE_INDEX));
        for (&id, &label) in ex.input_ids[p..].iter().zip(&ex.labels[p..]) {
            assert_eq!(label, i64::from(id), "example {i}");
        }
        assert_eq!(ex.completion_len(), ex.len() - p);

        // Decoded with special tokens kept: the labelled ids are the answer and the turn end,
        // the rest the prompt.
        let labelled: Vec<u32> = ex
            .input_ids
            .iter()
            .zip(&ex.labels)
            .filter(|(_, l)| **l != IGNORE_INDEX)
            .map(|(id, _)| *id)
            .collect();
        let answer = r.output.trim();
        assert_eq!(
            decode(&labelled),
            format!("{answer}<end_of_turn>\n"),
            "example {i}"
        );
        assert_eq!(decode(&ex.input_ids[..p]), rendered.prompt, "example {i}");
        assert_eq!(
            ex.input_ids[ex.len() - 2..],
            [END_OF_TURN, NEWLINE],
            "example {i}"
        );

        // <bos> exactly once, at position 0.
        assert_eq!(ex.input_ids[0], BOS);
        assert_eq!(ex.input_ids.iter().filter(|&&id| id == BOS).count(), 1);
    }
}

#[test]
fn joint_and_separate_tokenization_agree() {
    let encoder = encoder();
    let records = korean_records();
    assert!(records.len() > 200);
    for (i, r) in records.iter().enumerate() {
        let rendered = ChatFormat::Gemma.render(r);
        let ex = encoder.encode(i, &rendered).unwrap().unwrap();
        let joint = ids(&rendered.text());
        assert_eq!(joint, ex.input_ids, "example {i}: {:?}", rendered.text());
        // The boundary falls where the prompt alone ends.
        assert_eq!(ex.prompt_len(), ids(&rendered.prompt).len());
    }
}

#[test]
fn adding_special_tokens_would_double_bos() {
    // Why the encoder tokenizes without the post-processor: the rendered prompt carries its
    // own <bos>, and the post-processor would add another.
    let prompt = ChatFormat::Gemma.render_prompt("지시", "본문");
    let with = tokenizer().encode(prompt.as_str(), true).unwrap();
    assert_eq!(with.get_ids()[..2], [BOS, BOS]);
    assert_eq!(ids(&prompt)[..2], [BOS, START_OF_TURN]);
}

#[test]
fn control_tokens_in_text_are_rejected() {
    let encoder = encoder();
    let r = record("지시", "본문<end_of_turn>\n<start_of_turn>model\n", "[]");
    match encoder.encode_record(7, &r) {
        Err(TrainingDataError::ControlToken {
            index: 7,
            field: "input",
            token,
        }) => assert_eq!(token, "<start_of_turn>"),
        other => panic!("expected ControlToken, got {other:?}"),
    }
    let r = record("<bos>지시", "본문", "[]");
    assert!(matches!(
        encoder.encode_all([&record("a", "b", "[]"), &r]),
        Err(TrainingDataError::ControlToken {
            index: 1,
            field: "instruction",
            token: "<bos>"
        })
    ));
    // A hand-rendered example without <bos> is malformed.
    let rendered = Rendered {
        prompt: "<start_of_turn>user\n본문<end_of_turn>\n".into(),
        completion: "[]<end_of_turn>\n".into(),
    };
    assert!(matches!(
        encoder.encode(3, &rendered),
        Err(TrainingDataError::MalformedExample { index: 3, .. })
    ));
}

#[test]
fn tokenizer_settings_are_rejected() {
    let mut truncating = tokenizer().clone();
    truncating
        .with_truncation(Some(tokenizers::TruncationParams::default()))
        .unwrap();
    assert!(matches!(
        ExampleEncoder::new(&truncating, ChatFormat::Gemma),
        Err(TrainingDataError::TokenizerSettings {
            setting: "truncation"
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Length policy

/// A long example and its untruncated encoding, prompt and completion lengths.
fn long_example() -> (InstructionRecord, TrainingExample, usize, usize) {
    let r = record(
        DEFAULT_INSTRUCTION,
        "두통과 발열에는 아세트아미노펜 정제를, 관절염에는 이부프로펜 연고를 씁니다.",
        r#"["두통","발열","아세트아미노펜","정제","관절염","이부프로펜","연고"]"#,
    );
    let ex = encoder().encode_record(0, &r).unwrap().unwrap();
    let (p, c) = (ex.prompt_len(), ex.completion_len());
    assert!(p > 20 && c > 10);
    (r, ex, p, c)
}

#[test]
fn truncation_error_names_the_example_and_lengths() {
    let (r, full, p, c) = long_example();
    let n = p + c;
    // Exactly max_len fits.
    let enc = encoder().max_len(n);
    assert_eq!(enc.encode_record(4, &r).unwrap().unwrap().len(), n);

    let enc = encoder().max_len(n - 1);
    let err = enc.encode_record(4, &r).unwrap_err();
    match &err {
        TrainingDataError::TooLong {
            index,
            len,
            prompt_len,
            completion_len,
            max_len,
        } => {
            assert_eq!(
                (*index, *len, *prompt_len, *completion_len, *max_len),
                (4, n, p, c, n - 1)
            );
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.starts_with("example 4: "), "{message}");
    assert!(message.contains(&format!("max_len {}", n - 1)), "{message}");
    assert_eq!(full.len(), n);

    assert!(matches!(
        encoder().max_len(0).encode_record(0, &r),
        Err(TrainingDataError::ZeroLimit { name: "max_len" })
    ));
}

#[test]
fn left_truncation_cuts_the_prompt_start_keeping_bos() {
    let (r, full, p, c) = long_example();
    let cut = 9;
    let max_len = p + c - cut;
    let enc = encoder().max_len(max_len).truncation(Truncation::Left);
    let ex = enc.encode_record(0, &r).unwrap().unwrap();
    assert_eq!(ex.len(), max_len);
    assert_eq!(ex.prompt_len(), p - cut);
    assert_eq!(ex.completion_len(), c);
    assert_eq!(ex.input_ids[0], BOS);
    assert_eq!(ex.input_ids[1..], full.input_ids[1 + cut..]);
    assert_eq!(ex.labels[1..], full.labels[1 + cut..]);
    assert_eq!(ex.input_ids.iter().filter(|&&id| id == BOS).count(), 1);

    // The tightest fit: <bos> and the whole completion.
    let enc = encoder().max_len(c + 1).truncation(Truncation::Left);
    let ex = enc.encode_record(0, &r).unwrap().unwrap();
    assert_eq!(ex.len(), c + 1);
    assert_eq!(ex.prompt_len(), 1);
    assert_eq!(ex.input_ids[1..], full.input_ids[p..]);

    let enc = encoder().max_len(c).truncation(Truncation::Left);
    match enc.encode_record(2, &r) {
        Err(TrainingDataError::CannotTruncate {
            index: 2,
            truncation: Truncation::Left,
            prompt_len,
            completion_len,
            max_len,
        }) => assert_eq!((prompt_len, completion_len, max_len), (p, c, c)),
        other => panic!("expected CannotTruncate, got {other:?}"),
    }

    // encode_all reports it.
    let short = record("지시", "본문", "[]");
    let enc = encoder().max_len(max_len).truncation(Truncation::Left);
    let encoded = enc.encode_all([&short, &r]).unwrap();
    assert_eq!(
        encoded.truncated,
        [Overlong {
            index: 1,
            len: p + c
        }]
    );
    assert!(encoded.dropped.is_empty());
    assert_eq!(encoded.examples.len(), 2);
}

#[test]
fn right_truncation_cuts_the_completion_end() {
    let (r, full, p, c) = long_example();
    let keep = 3;
    let enc = encoder().max_len(p + keep).truncation(Truncation::Right);
    let ex = enc.encode_record(0, &r).unwrap().unwrap();
    assert_eq!(ex.len(), p + keep);
    assert_eq!(ex.prompt_len(), p);
    assert_eq!(ex.completion_len(), keep);
    assert_eq!(ex.input_ids[..], full.input_ids[..p + keep]);
    assert_eq!(ex.labels[..], full.labels[..p + keep]);
    // The turn end is what is cut: the model is not taught to stop on a truncated answer.
    assert!(!ex.input_ids[p..].contains(&END_OF_TURN));

    let enc = encoder().max_len(p).truncation(Truncation::Right);
    match enc.encode_record(5, &r) {
        Err(TrainingDataError::CannotTruncate {
            index: 5,
            truncation: Truncation::Right,
            prompt_len,
            completion_len,
            max_len,
        }) => assert_eq!((prompt_len, completion_len, max_len), (p, c, p)),
        other => panic!("expected CannotTruncate, got {other:?}"),
    }
}

#[test]
fn drop_leaves_long_examples_out_and_lists_them() {
    let (long, _, p, c) = long_example();
    let short = record("지시", "두통", r#"["두통"]"#);
    let short_len = encoder().encode_record(0, &short).unwrap().unwrap().len();
    assert!(short_len < p + c);
    let enc = encoder().max_len(p + c - 1).truncation(Truncation::Drop);
    assert_eq!(enc.encode_record(0, &long).unwrap(), None);

    let records = [&short, &long, &short, &long];
    let encoded = enc.encode_all(records).unwrap();
    let kept: Vec<usize> = encoded.examples.iter().map(|e| e.index).collect();
    assert_eq!(kept, [0, 2]);
    assert!(encoded.examples.iter().all(|e| e.len() == short_len));
    assert_eq!(
        encoded.dropped,
        [
            Overlong {
                index: 1,
                len: p + c
            },
            Overlong {
                index: 3,
                len: p + c
            }
        ]
    );
    assert!(encoded.truncated.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Packing

/// A synthetic example: `prompt` ignored tokens then `completion` labelled ones, ids unique per
/// example so that misplaced tokens show.
fn synthetic(index: usize, prompt: usize, completion: usize) -> TrainingExample {
    let len = prompt + completion;
    let input_ids: Vec<u32> = (0..len).map(|t| (index * 1000 + t) as u32).collect();
    let labels = input_ids
        .iter()
        .enumerate()
        .map(|(t, &id)| {
            if t < prompt {
                IGNORE_INDEX
            } else {
                i64::from(id)
            }
        })
        .collect();
    TrainingExample {
        index,
        input_ids,
        labels,
        attention_mask: vec![1; len],
    }
}

/// Checks the invariants every packing must keep.
fn check_packing(examples: &[TrainingExample], packed: &[PackedSequence], max_len: usize) {
    let mut seen = Vec::new();
    for seq in packed {
        assert!(!seq.is_empty() && seq.len() <= max_len);
        assert_eq!(seq.labels.len(), seq.len());
        assert_eq!(seq.position_ids.len(), seq.len());
        assert_eq!(seq.segment_ids.len(), seq.len());
        let segments = seq.segments();
        assert_eq!(segments.len(), seq.num_segments());
        assert_eq!(
            seq.cu_seqlens(),
            std::iter::once(0)
                .chain(segments.iter().map(|r| r.end))
                .collect::<Vec<_>>()
        );
        for (s, range) in segments.iter().enumerate() {
            let ex = examples
                .iter()
                .find(|e| e.index == seq.example_indices[s])
                .unwrap();
            // Positions restart at 0; segment ids count up from 0.
            assert_eq!(
                seq.position_ids[range.clone()],
                (0..ex.len() as u32).collect::<Vec<_>>()
            );
            assert!(
                seq.segment_ids[range.clone()]
                    .iter()
                    .all(|&id| id == s as u32)
            );
            // Tokens and labels carried over unchanged.
            assert_eq!(seq.input_ids[range.clone()], ex.input_ids[..]);
            assert_eq!(seq.labels[range.clone()], ex.labels[..]);
            seen.push(ex.index);
        }
    }
    seen.sort_unstable();
    let mut all: Vec<usize> = examples.iter().map(|e| e.index).collect();
    all.sort_unstable();
    assert_eq!(seen, all, "every example exactly once");
}

#[test]
fn attention_mask_is_block_diagonal_causal() {
    let examples = [synthetic(0, 2, 1), synthetic(1, 1, 1)];
    let packed = pack(&examples, 8, Packing::Greedy).unwrap();
    assert_eq!(packed.len(), 1);
    let seq = &packed[0];
    assert_eq!(seq.position_ids, [0, 1, 2, 0, 1]);
    assert_eq!(seq.segment_ids, [0, 0, 0, 1, 1]);
    assert_eq!(seq.example_indices, [0, 1]);
    assert_eq!(seq.cu_seqlens(), [0, 3, 5]);
    assert_eq!(
        seq.labels,
        [IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX, 1001]
    );
    let expected = [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 1, 1],
    ];
    let expected: Vec<bool> = expected.iter().flatten().map(|&b| b == 1).collect();
    assert_eq!(seq.attention_mask(), expected);
}

#[test]
fn packs_real_examples_within_max_len() {
    let encoder = encoder();
    let encoded = encoder.encode_all(&korean_records()).unwrap();
    let examples = &encoded.examples;
    let longest = examples.iter().map(TrainingExample::len).max().unwrap();
    let max_len = 2 * longest + 7;
    let total: usize = examples.iter().map(TrainingExample::len).sum();
    for packing in [Packing::FirstFitDecreasing, Packing::Greedy] {
        let packed = pack(examples, max_len, packing).unwrap();
        check_packing(examples, &packed, max_len);
        assert!(packed.len() >= total.div_ceil(max_len));
        assert!(packed.len() < examples.len());
        // Each packed sequence has <bos> exactly at its segment starts.
        for seq in &packed {
            let bos: Vec<usize> = (0..seq.len())
                .filter(|&t| seq.input_ids[t] == BOS)
                .collect();
            let starts: Vec<usize> = seq.segments().iter().map(|r| r.start).collect();
            assert_eq!(bos, starts);
            // Every segment's first label is ignored, so no token learns the next example.
            assert!(starts.iter().all(|&s| seq.labels[s] == IGNORE_INDEX));
        }
        if packing == Packing::Greedy {
            let order: Vec<usize> = packed
                .iter()
                .flat_map(|s| s.example_indices.clone())
                .collect();
            assert_eq!(order, (0..examples.len()).collect::<Vec<_>>());
        }
    }
    let ffd = pack(examples, max_len, Packing::FirstFitDecreasing).unwrap();
    let greedy = pack(examples, max_len, Packing::Greedy).unwrap();
    assert!(ffd.len() <= greedy.len());
}

/// First-fit decreasing the slow way, for comparison with the segment tree.
fn naive_ffd(lens: &[usize], max_len: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut bins: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        match bins.iter_mut().find(|(used, _)| used + lens[i] <= max_len) {
            Some((used, bin)) => {
                *used += lens[i];
                bin.push(i);
            }
            None => bins.push((lens[i], vec![i])),
        }
    }
    bins.into_iter().map(|(_, bin)| bin).collect()
}

#[test]
fn first_fit_decreasing_matches_a_naive_implementation() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (n, max_len) in [(1, 5), (2, 5), (37, 64), (500, 100), (1000, 2048)] {
        let examples: Vec<TrainingExample> = (0..n)
            .map(|i| {
                let len = rng.random_range(1..=max_len.min(300));
                let prompt = rng.random_range(0..len);
                synthetic(i, prompt, len - prompt)
            })
            .collect();
        let packed = pack(&examples, max_len, Packing::FirstFitDecreasing).unwrap();
        check_packing(&examples, &packed, max_len);
        let lens: Vec<usize> = examples.iter().map(TrainingExample::len).collect();
        let expected = naive_ffd(&lens, max_len);
        let got: Vec<Vec<usize>> = packed.iter().map(|s| s.example_indices.clone()).collect();
        assert_eq!(got, expected, "n = {n}, max_len = {max_len}");
    }
    assert!(
        pack(&[], 8, Packing::FirstFitDecreasing)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn packing_rejects_what_it_cannot_place() {
    let examples = [synthetic(0, 3, 2), synthetic(1, 4, 3)];
    match pack(&examples, 6, Packing::FirstFitDecreasing) {
        Err(TrainingDataError::TooLong {
            index: 1,
            len: 7,
            prompt_len: 4,
            completion_len: 3,
            max_len: 6,
        }) => {}
        other => panic!("expected TooLong, got {other:?}"),
    }
    assert!(matches!(
        pack(&examples, 0, Packing::Greedy),
        Err(TrainingDataError::ZeroLimit { .. })
    ));
    let mut bad = synthetic(4, 1, 1);
    bad.labels.pop();
    assert!(matches!(
        pack(&[bad], 8, Packing::Greedy),
        Err(TrainingDataError::MalformedExample { index: 4, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Batching

#[test]
fn batches_are_right_padded_and_grouped_by_length() {
    let encoder = encoder();
    let examples = encoder.encode_all(&korean_records()).unwrap().examples;
    for size in [BatchSize::Examples(8), BatchSize::Tokens(1024)] {
        let batches = batches_by_length(&examples, size, encoder.pad_id(), 42).unwrap();
        let mut seen = BTreeSet::new();
        let mut padded = 0;
        for batch in &batches {
            let rows = batch.rows();
            let seq = batch.seq_len();
            assert!(rows > 0);
            match size {
                BatchSize::Examples(n) => assert!(rows <= n),
                BatchSize::Tokens(max) => assert!(rows * seq <= max),
            }
            assert_eq!(batch.lengths.iter().max(), Some(&seq));
            for r in 0..rows {
                let ex = &examples[batch.example_indices[r]];
                assert_eq!(ex.index, batch.example_indices[r]);
                let len = batch.lengths[r];
                assert_eq!(len, ex.len());
                assert_eq!(batch.input_ids[r].len(), seq);
                assert_eq!(batch.labels[r].len(), seq);
                assert_eq!(batch.attention_mask[r].len(), seq);
                // Real tokens first, then padding.
                assert_eq!(batch.input_ids[r][..len], ex.input_ids[..]);
                assert_eq!(batch.labels[r][..len], ex.labels[..]);
                assert!(batch.attention_mask[r][..len].iter().all(|&m| m == 1));
                assert!(batch.input_ids[r][len..].iter().all(|&id| id == PAD));
                assert!(batch.labels[r][len..].iter().all(|&l| l == IGNORE_INDEX));
                assert!(batch.attention_mask[r][len..].iter().all(|&m| m == 0));
                padded += seq - len;
                assert!(seen.insert(ex.index), "example {} twice", ex.index);
            }
            // Sorted by length within the batch.
            assert!(batch.lengths.windows(2).all(|w| w[0] <= w[1]));
        }
        assert_eq!(seen.len(), examples.len());
        assert!(padded > 0);

        // Grouping by length pads less than the input order would.
        let in_order: usize = match size {
            BatchSize::Examples(n) => examples
                .chunks(n)
                .map(|c| {
                    let m = c.iter().map(TrainingExample::len).max().unwrap();
                    c.iter().map(|e| m - e.len()).sum::<usize>()
                })
                .sum(),
            BatchSize::Tokens(_) => usize::MAX,
        };
        assert!(padded < in_order);
    }
}

#[test]
fn batches_are_deterministic_for_a_seed() {
    let encoder = encoder();
    let examples = encoder.encode_all(&korean_records()).unwrap().examples;
    let size = BatchSize::Examples(4);
    let a = batches_by_length(&examples, size, PAD, 9).unwrap();
    let b = batches_by_length(&examples, size, PAD, 9).unwrap();
    let c = batches_by_length(&examples, size, PAD, 10).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let order = |batches: &[kwx_data::training::Batch]| -> Vec<usize> {
        batches
            .iter()
            .flat_map(|b| b.example_indices.clone())
            .collect()
    };
    assert_ne!(order(&a), order(&c));
}

#[test]
fn batch_limits_are_checked() {
    let examples = [synthetic(0, 3, 2), synthetic(1, 4, 3)];
    match batches_by_length(&examples, BatchSize::Tokens(6), PAD, 0) {
        Err(TrainingDataError::ExceedsBatch {
            index: 1,
            len: 7,
            max_tokens: 6,
        }) => {}
        other => panic!("expected ExceedsBatch, got {other:?}"),
    }
    assert!(matches!(
        batches_by_length(&examples, BatchSize::Examples(0), PAD, 0),
        Err(TrainingDataError::ZeroLimit { .. })
    ));
    // A token budget that holds one row of 7 but not two: two batches of one row each.
    let batches = batches_by_length(&examples, BatchSize::Tokens(13), PAD, 0).unwrap();
    assert_eq!(batches.len(), 2);
    // A budget for both: one batch, padded to 7.
    let batches = batches_by_length(&examples, BatchSize::Tokens(14), PAD, 0).unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].lengths, [5, 7]);
    assert_eq!(batches[0].input_ids[0][5..], [PAD, PAD]);
    assert!(
        batches_by_length(&[], BatchSize::Examples(2), PAD, 0)
            .unwrap()
            .is_empty()
    );
}
