//! The comparison harness end to end on a tiny random-weight Gemma 3 over the real Gemma
//! tokenizer (wiring, not quality): every strategy runs — prompting, RAG, LoRA, tokenizer-extended
//! LoRA with new embedding rows, full SFT — and the report, predictions and chart are written.
//! The tokenizer comes from `scripts/fetch_model.sh` (missing → the test says how to fetch it).
#![allow(clippy::unwrap_used)] // test code

use std::path::Path;

use kwx::compare::{self, CompareConfig, Event, Report, Strategy};
use kwx::core::burn::module::Param;
use kwx::core::burn::tensor::{Device, Distribution, Tensor};
use kwx::core::config::gemma3_layer_types;
use kwx::core::extract::{DictionaryExtractor, KeywordExtractor};
use kwx::core::gguf::{GgufVocab, WriteOptions, write_gemma};
use kwx::core::{Family, Gemma, GemmaConfig, GemmaTokenizer, RmsNorm, Rope, home};
use kwx::data::builder::DatasetBuilder;
use kwx::data::dictionary::Dictionary;
use kwx::data::eval::{EvalExample, Evaluator};
use kwx::data::split::HeldOutSplit;

/// A 2-layer Gemma 3 (hidden 32) over the real 262k vocabulary, norms randomised, written as a
/// GGUF with the real tokenizer's vocabulary so `Gemma::load_with_tokenizer` reads it back.
fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let tokenizer = GemmaTokenizer::from_file(
        home::gemma3_270m_tokenizer().expect("run scripts/fetch_model.sh for the Gemma tokenizer"),
    )
    .unwrap();
    let config = GemmaConfig::new(
        Family::Gemma3,
        tokenizer.vocab_size(),
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
    device.seed(11);
    let mut model: Gemma = config.init(&device).unwrap();
    let randomise = |norm: &mut RmsNorm| {
        let [d] = norm.weight.val().dims();
        norm.weight = Param::from_tensor(Tensor::random(
            [d],
            Distribution::Uniform(0.5, 1.5),
            &device,
        ));
    };
    for layer in &mut model.layers {
        randomise(&mut layer.input_layernorm);
        randomise(&mut layer.post_attention_layernorm);
        layer.pre_feedforward_layernorm.as_mut().map(randomise);
        layer.post_feedforward_layernorm.as_mut().map(randomise);
        layer.self_attn.q_norm.as_mut().map(randomise);
        layer.self_attn.k_norm.as_mut().map(randomise);
    }
    randomise(&mut model.norm);
    let vocab = GgufVocab::from_hf_tokenizer(tokenizer.inner(), tokenizer.vocab_size()).unwrap();
    let path = dir.join("tiny.gguf");
    let options = WriteOptions {
        llama_cpp_compatible: false,
        ..WriteOptions::default()
    };
    write_gemma(&model, &vocab, &path, &options).unwrap();
    path
}

/// The adapter folder of the newest checkpoint in a training folder.
fn last_adapter(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("adapter").join("adapter_config.json").exists())
        .max()
        .expect("a checkpoint with an adapter")
        .join("adapter")
}

fn settings(model: &Path, out: &Path) -> CompareConfig {
    let mut c = CompareConfig::quick(model, out);
    c.limit = 4;
    c.sizes = (40, 4, 30);
    c.few_shot = 2;
    c.retries = 1;
    c.batch_size = 3;
    c.max_new_tokens = 10;
    c.rag_budget = 64;
    for t in [&mut c.lora, &mut c.sft] {
        t.max_steps = 2;
        t.micro_batch_size = 2;
        t.warmup_steps = 0;
    }
    c
}

#[test]
fn every_strategy_runs_and_the_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("run");
    let config = settings(&model, &out);
    let mut stages = Vec::new();
    let mut steps = 0;
    let report = compare::run(&config, &Device::default(), &mut |e| match e {
        Event::Stage {
            strategy, stage, ..
        } => stages.push(format!("{}:{stage}", strategy.name())),
        Event::TrainStep(_) => steps += 1,
        _ => {}
    })
    .unwrap();

    let names: Vec<&str> = report.strategies.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, Strategy::ALL.map(Strategy::name));
    for stage in [
        "rag:indexing",
        "lora:training",
        "lora-tokenizer:training",
        "sft:training",
    ] {
        assert!(
            stages.iter().any(|s| s == stage),
            "{stage} missing from {stages:?}"
        );
    }
    assert_eq!(steps, 6, "2 steps for each of the three trained strategies");
    assert_eq!(report.texts, 4);
    for r in &report.strategies {
        assert_eq!(r.texts, 4, "{}", r.name);
        for v in [r.precision, r.recall, r.f1, r.f1_lenient] {
            assert!((0.0..=1.0).contains(&v), "{}: {v}", r.name);
        }
        assert!(r.seconds_per_text > 0.0, "{}", r.name);
        assert_eq!(
            r.train_seconds > 0.0,
            matches!(r.name.as_str(), "lora" | "lora-tokenizer" | "sft")
        );
        let lines =
            std::fs::read_to_string(out.join("predictions").join(format!("{}.jsonl", r.name)))
                .unwrap();
        assert_eq!(lines.lines().count(), 4, "{}", r.name);
    }

    // The dictionary row is exactly the baseline without the held-out terms, scored directly.
    let dictionary = Dictionary::bundled();
    let held = HeldOutSplit::new(dictionary, config.held_out_fraction, config.seed).unwrap();
    let test = held
        .build(
            &DatasetBuilder::new(dictionary).seed(config.seed),
            config.sizes,
            0.5,
        )
        .unwrap()
        .test;
    let test = &test[..4];
    let baseline =
        DictionaryExtractor::without(dictionary, held.terms().iter().map(String::as_str)).unwrap();
    let predicted: Vec<Vec<String>> = test
        .iter()
        .map(|e| {
            baseline
                .extract(&e.text)
                .unwrap()
                .into_iter()
                .map(|k| k.text)
                .collect()
        })
        .collect();
    let direct = Evaluator::new()
        .dictionary(dictionary)
        .held_out(&held)
        .evaluate(
            test.iter()
                .zip(&predicted)
                .map(|(e, p)| EvalExample::new(&e.text, &e.labels, p)),
        );
    assert_eq!(report.strategies[0].detail, direct);

    // The files: JSON that reads back equal, the markdown table, a PNG, the trained weights.
    let json: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json, report);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "name",
        "precision",
        "recall",
        "f1",
        "f1_lenient",
        "seconds_per_text",
    ] {
        assert!(
            value["strategies"][0].get(key).is_some(),
            "report.json lacks {key}"
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for name in names {
        assert!(
            md.contains(&format!("| {name} |")),
            "report.md lacks {name}"
        );
    }
    let png = std::fs::read(out.join("report.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let train = out.join("train");
    assert!(
        std::fs::read_dir(train.join("lora")).unwrap().count() > 0,
        "lora checkpoints"
    );
    // The adapter folder carries its tokenizer, so it can be given back as a whole.
    let tok = last_adapter(&train.join("lora-tokenizer")).join("tokenizer.json");
    let extended = GemmaTokenizer::from_file(&tok).unwrap();
    assert_eq!(
        extended.encode("임산부", false).unwrap().len(),
        1,
        "the extended tokenizer has domain terms as single tokens"
    );

    // A given adapter skips training and reproduces the trained row (greedy decoding).
    let lora = report.strategies.iter().find(|r| r.name == "lora").unwrap();
    let adapter = last_adapter(&train.join("lora"));
    let mut again = settings(&model, &dir.path().join("again"));
    again.strategies = vec![Strategy::Lora];
    again.given.insert(Strategy::Lora, adapter);
    let mut trained = false;
    let second = compare::run(&again, &Device::default(), &mut |e| {
        trained |= matches!(e, Event::TrainStep(_));
    })
    .unwrap();
    assert!(!trained, "a given adapter is not trained again");
    assert_eq!(second.strategies[0].detail, lora.detail);
    assert!(
        second.strategies[0].train_seconds > 0.0,
        "loading the adapter counts as the strategy's setup time"
    );
}

#[test]
fn bad_settings_are_typed_errors() {
    let err = Strategy::parse_list("dictionary,few-shots").unwrap_err();
    assert!(err.to_string().contains("few-shots"), "{err}");
    assert!(err.to_string().contains("lora-tokenizer"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let mut c = CompareConfig::quick(dir.path().join("missing.gguf"), dir.path().join("out"));
    c.strategies = vec![Strategy::ZeroShot];
    let err = compare::run(&c, &Device::default(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("missing.gguf"), "{err}");
}
