//! The prompt strategies on a tiny random-weight Gemma 3 over the real Gemma tokenizer: the
//! conversation each strategy builds, the feedback loop's bookkeeping, constrained answers,
//! batching, and the fine-tuned prompt being exactly the training prompt.
#![allow(clippy::unwrap_used)] // test code

mod common;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use kwx_core::burn::tensor::Device;
use kwx_core::config::gemma3_layer_types;
use kwx_core::extract::{
    Constrain, ContextProvider, Example, ExamplePool, KeywordExtractor, PromptConfig,
    PromptExtractor,
};
use kwx_core::{
    DictionaryExtractor, Error, Family, Gemma, GemmaConfig, GemmaTokenizer, Rope, home,
};
use kwx_data::dictionary::Dictionary;
use kwx_data::korean::strip_particles;
use kwx_data::training::ChatFormat;

const TEXT: &str = "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.";

fn tokenizer() -> GemmaTokenizer {
    static TOK: OnceLock<GemmaTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        GemmaTokenizer::from_file(
            home::gemma3_270m_tokenizer()
                .expect("run scripts/fetch_model.sh for the Gemma 3 tokenizer"),
        )
        .unwrap()
    })
    .clone()
}

fn model() -> Gemma {
    static MODEL: OnceLock<Gemma> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let config = GemmaConfig::new(
                Family::Gemma3,
                tokenizer().vocab_size(),
                32,
                64,
                2,
                2,
                1,
                16,
                16.0,
                gemma3_layer_types(2, 2),
                Rope::new(1_000_000.0),
                Rope::new(10_000.0),
            )
            .with_sliding_window(Some(8));
            let device = Device::default();
            device.seed(5);
            let mut model = config.init(&device).unwrap();
            common::randomise_norms(&mut model, &device);
            model
        })
        .clone()
}

fn pool() -> ExamplePool {
    let ex = |text: &str, labels: &[&str]| Example {
        text: text.into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    };
    ExamplePool::new(vec![
        ex("연고를 상처에 하루 두 번 바르세요.", &["연고"]),
        ex("해열제는 발열이 있을 때 복용합니다.", &["해열제", "발열"]),
        ex("파스는 임산부에게 주의가 필요합니다.", &["파스", "임산부"]),
        ex("노인은 진통제 복용 전 상담하세요.", &["노인", "진통제"]),
    ])
}

fn extractor(config: PromptConfig) -> PromptExtractor {
    PromptExtractor::new(
        model(),
        tokenizer(),
        PromptConfig {
            max_new_tokens: 12,
            ..config
        },
    )
    .unwrap()
}

#[test]
fn fine_tuned_prompt_is_the_training_prompt_token_for_token() {
    let x = extractor(PromptConfig::fine_tuned("키워드를 JSON 배열로 추출하세요."));
    let messages = x.messages(TEXT).unwrap();
    let ids = tokenizer().encode_chat(&messages, true).unwrap();
    let training = ChatFormat::Gemma.render_prompt("키워드를 JSON 배열로 추출하세요.", TEXT);
    assert_eq!(ids, tokenizer().encode(&training, false).unwrap());
    // An empty instruction (SFT on text → labels) is the bare text, no blank system line.
    let x = extractor(PromptConfig::fine_tuned(""));
    let ids = tokenizer()
        .encode_chat(&x.messages(TEXT).unwrap(), true)
        .unwrap();
    let training = ChatFormat::Gemma.render_prompt("", TEXT);
    assert_eq!(ids, tokenizer().encode(&training, false).unwrap());
}

#[test]
fn few_shot_turns_are_the_nearest_examples_and_definitions_skip_held_out_terms() {
    let x = extractor(PromptConfig::few_shot(2))
        .with_dictionary(Dictionary::bundled(), ["해열"])
        .unwrap()
        .with_examples(pool());
    let m = x.messages("임산부에게 파스를 붙여도 되나요?").unwrap();
    // system (instruction + definitions), 2 × (user, model), the text.
    assert_eq!(m.len(), 6);
    assert!(
        m[0].content.contains("- 증상·효능: 진통, 소염"),
        "{}",
        m[0].content
    );
    assert_eq!(m[1].content, "문장: 파스는 임산부에게 주의가 필요합니다.");
    assert_eq!(m[2].content, r#"["파스","임산부"]"#);
    assert_eq!(m[5].content, "문장: 임산부에게 파스를 붙여도 되나요?");

    let missing = extractor(PromptConfig::few_shot(2))
        .messages(TEXT)
        .unwrap_err();
    assert!(
        matches!(
            missing,
            Error::InvalidOption {
                option: "few_shot",
                ..
            }
        ),
        "{missing}"
    );
    let err = PromptExtractor::new(
        model(),
        tokenizer(),
        PromptConfig {
            batch_size: 0,
            ..PromptConfig::zero_shot()
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "batch_size",
            ..
        }
    ));
}

struct Fixed(String);

impl ContextProvider for Fixed {
    fn context(&self, _text: &str) -> kwx_core::Result<String> {
        Ok(self.0.clone())
    }
}

#[test]
fn context_goes_before_the_text() {
    let x = extractor(PromptConfig::zero_shot())
        .with_dictionary(Dictionary::bundled(), [])
        .unwrap()
        .with_context(Arc::new(Fixed("- 임산부: 임신한 여성.".into())));
    let m = x.messages(TEXT).unwrap();
    assert_eq!(
        m.last().unwrap().content,
        format!("참고 사전:\n- 임산부: 임신한 여성.\n\n문장: {TEXT}")
    );
}

#[test]
fn feedback_names_exactly_the_missed_dictionary_terms() {
    let dictionary = Dictionary::bundled();
    let retries = 2;
    let x = extractor(PromptConfig::feedback(1, retries))
        .with_dictionary(dictionary, [])
        .unwrap()
        .with_examples(pool());
    let scan = DictionaryExtractor::new(dictionary).unwrap();
    let texts = [
        TEXT,
        "소아와 수유부는 시럽 복용 전 상담하세요.",
        "연고를 바르세요.",
    ];
    let traced = x.extract_traced(&texts).unwrap();
    let mut retried = 0;
    for (text, (keywords, trace)) in texts.iter().zip(&traced) {
        let n = trace.answers.len();
        assert!((1..=retries + 1).contains(&n));
        assert_eq!(trace.missed.len(), n - 1, "one feedback message per retry");
        retried += n - 1;
        let found: Vec<String> = scan
            .extract(text)
            .unwrap()
            .into_iter()
            .map(|k| k.text)
            .collect();
        // `feedback` merges answers: each retry is judged against everything said so far.
        let mut so_far: Vec<String> = Vec::new();
        for (answer, missed) in trace.answers.iter().zip(&trace.missed) {
            assert!(answer.valid, "constrained answers are always JSON");
            so_far.extend(answer.items.iter().map(|i| i.trim().to_string()));
            let said: HashSet<String> = so_far
                .iter()
                .map(|i| {
                    dictionary
                        .resolve(i)
                        .or_else(|| dictionary.resolve(strip_particles(i)))
                        .map_or(i.to_string(), |e| e.term.clone())
                })
                .collect();
            // A term inside an answered item (골관절염 ⊃ 관절염) is not missed.
            let expected: Vec<String> = found
                .iter()
                .filter(|t| !said.contains(*t) && !so_far.iter().any(|i| i.contains(t.as_str())))
                .cloned()
                .collect();
            assert_eq!(missed, &expected);
            assert!(!missed.is_empty());
        }
        // The keywords are every answer's, in dictionary form, each once.
        let all: usize = trace.answers.iter().map(|a| a.items.len()).sum();
        assert!(keywords.len() <= all);
        let unique: HashSet<&str> = keywords.iter().map(|k| k.text.as_str()).collect();
        assert_eq!(unique.len(), keywords.len());
        assert!(trace.prompt.ends_with("<start_of_turn>model\n"));
        assert_eq!(
            trace.prompt_tokens,
            tokenizer().encode(&trace.prompt, false).unwrap().len()
        );
    }
    // A random model misses the terms: the loop must have re-asked.
    assert!(retried > 0);
}

#[test]
fn batches_equal_single_texts_and_extractive_answers_come_from_the_text() {
    let texts = [
        TEXT,
        "연고는 상처 부위에 얇게 바릅니다.",
        "임산부는 복용 전에 의사와 상담하세요. 두통이나 발열이 있으면 해열진통제를 드세요.",
        "시럽",
    ];
    for constrain in [Constrain::Json, Constrain::Extractive, Constrain::None] {
        let x = extractor(PromptConfig {
            batch_size: 3,
            ..PromptConfig::zero_shot().constrained(constrain)
        })
        .with_dictionary(Dictionary::bundled(), [])
        .unwrap();
        let batch = x.extract_batch(&texts).unwrap();
        for (text, got) in texts.iter().zip(&batch) {
            assert_eq!(got, &x.extract(text).unwrap(), "{constrain:?}: {text}");
        }
        let traced = x.extract_traced(&texts).unwrap();
        for (text, (_, trace)) in texts.iter().zip(&traced) {
            let answer = &trace.answers[0];
            if constrain != Constrain::None {
                let parsed: Vec<String> = serde_json::from_str(&answer.raw).unwrap();
                assert_eq!(parsed, answer.items);
            }
            if constrain == Constrain::Extractive {
                for item in &answer.items {
                    assert!(text.contains(item.as_str()), "{item:?} not in {text:?}");
                }
            }
        }
    }
}

#[test]
fn unconstrained_answers_that_are_not_json_are_re_asked() {
    let x = extractor(PromptConfig {
        max_new_tokens: 6,
        ..PromptConfig::feedback(1, 1).constrained(Constrain::None)
    })
    .with_dictionary(Dictionary::bundled(), [])
    .unwrap()
    .with_examples(pool());
    let traced = x.extract_traced(&[TEXT, "연고를 바르세요."]).unwrap();
    let mut invalid = 0;
    for (_, trace) in &traced {
        let first = &trace.answers[0];
        if !first.valid {
            invalid += 1;
            assert_eq!(trace.answers.len(), 2, "an invalid answer is re-asked once");
        }
    }
    // Six random tokens are not a JSON array.
    assert!(invalid > 0);
}

#[test]
fn one_extractor_serves_many_threads() {
    let x = Arc::new(
        extractor(PromptConfig::few_shot(1))
            .with_dictionary(Dictionary::bundled(), [])
            .unwrap()
            .with_examples(pool()),
    );
    let texts = [
        TEXT,
        "연고는 상처 부위에 얇게 바릅니다.",
        "노인은 복용 전 상담하세요.",
    ];
    let alone: Vec<_> = texts.iter().map(|t| x.extract(t).unwrap()).collect();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let x = Arc::clone(&x);
            std::thread::spawn(move || x.extract(texts[i]).unwrap())
        })
        .collect();
    for (h, expected) in handles.into_iter().zip(&alone) {
        assert_eq!(&h.join().unwrap(), expected);
    }
}
