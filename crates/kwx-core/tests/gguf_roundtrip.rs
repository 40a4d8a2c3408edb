//! GGUF export: kwx reads back what it wrote. F32 gives bit-identical logits on all four
//! fixture families; F16, BF16 and Q8_0 store exactly what their codecs produce; the real
//! Gemma 3 270M re-exported to Q8_0 keeps its greedy continuation and its vocabulary; models
//! llama.cpp would compute differently are refused in compatible mode.
#![allow(clippy::unwrap_used)] // test helpers

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kwx_core::gguf::quant::{dequantize, quantize};
use kwx_core::gguf::{GgmlType, GgufFile, GgufVocab, WriteOptions, write_gemma};
use kwx_core::{Error, Gemma};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma")
        .join(name)
}

const FIXTURES: [&str; 4] = [
    "gemma1_mha_f32",
    "gemma2_gqa_bf16",
    "gemma3_mqa_f16_v4config",
    "gemma3_gqa_sharded_bf16",
];

/// A vocabulary of the right size: the fixture's tokenizer.json where it has one, else
/// placeholder pieces (the weights are what these tests are about).
fn vocab_for(dir: &Path, vocab_size: usize) -> GgufVocab {
    let path = dir.join("tokenizer.json");
    if path.exists() {
        let tok = tokenizers::Tokenizer::from_file(&path).unwrap();
        return GgufVocab::from_hf_tokenizer(&tok, vocab_size).unwrap();
    }
    let tok =
        tokenizers::Tokenizer::from_file(fixture("gemma3_gqa_sharded_bf16").join("tokenizer.json"))
            .unwrap();
    GgufVocab::from_hf_tokenizer(&tok, vocab_size).unwrap()
}

fn prompt(vocab: usize) -> Vec<u32> {
    // 24 tokens: three times the fixtures' sliding window of 8.
    (0..24u32)
        .map(|i| 2 + (i * 37 + 11) % (vocab as u32 - 2))
        .collect()
}

fn logits(model: &Gemma, ids: &[u32]) -> Vec<f32> {
    model
        .logits(ids)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap()
}

fn lax() -> WriteOptions {
    WriteOptions {
        llama_cpp_compatible: false,
        ..WriteOptions::new(GgmlType::F32)
    }
}

#[test]
fn f32_export_reads_back_with_identical_logits() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let model = Gemma::from_pretrained(fixture(name), &device).unwrap();
        let config = model.config().clone();
        let out = dir.path().join(format!("{name}.gguf"));
        write_gemma(
            &model,
            &vocab_for(&fixture(name), config.vocab_size),
            &out,
            &lax(),
        )
        .unwrap();
        let (back, tokenizer) = Gemma::load_with_tokenizer(&out, None, &device).unwrap();
        // The tokenizer rebuilt from the export's metadata encodes as the source tokenizer.json.
        let source = match fixture(name).join("tokenizer.json") {
            p if p.exists() => p,
            _ => fixture("gemma3_gqa_sharded_bf16").join("tokenizer.json"),
        };
        let source = tokenizers::Tokenizer::from_file(source).unwrap();
        let text = "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다. Paris";
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            source.encode(text, true).unwrap().get_ids(),
            "{name}: tokenizer from the export"
        );
        // Same config (the GGUF carries everything the decoder needs). End-of-sequence ids: a
        // GGUF without `tokenizer.ggml.eot_token_id` also stops at <end_of_turn>, as llama.cpp
        // does, so a config with one eos id reads back with <end_of_turn> (id 5 here) added.
        let mut want = config.clone();
        if want.eos_token_ids.len() == 1 {
            want.eos_token_ids.push(5);
        }
        assert_eq!(
            format!("{:?}", back.config()),
            format!("{want:?}"),
            "{name}: config"
        );
        let ids = prompt(config.vocab_size);
        let (a, b) = (logits(&model, &ids), logits(&back, &ids));
        assert_eq!(a.len(), b.len());
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name}: logits differ after the F32 round trip");
    }
}

#[test]
fn f16_bf16_q8_0_store_exactly_what_the_codecs_produce() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let name = "gemma3_mqa_f16_v4config";
    let model = Gemma::from_pretrained(fixture(name), &device).unwrap();
    let vocab = vocab_for(&fixture(name), model.config().vocab_size);
    let f32_path = dir.path().join("f32.gguf");
    write_gemma(&model, &vocab, &f32_path, &WriteOptions::new(GgmlType::F32)).unwrap();
    let reference = GgufFile::open(&f32_path).unwrap();
    let ids = prompt(model.config().vocab_size);
    let base = logits(&model, &ids);
    // This fixture was saved in f16, so F16 is lossless; BF16 and Q8_0 round. Tolerances on
    // logits, relative to the largest |logit|: what each format's rounding allows.
    for (ty, tol) in [
        (GgmlType::F16, 0.0),
        (GgmlType::BF16, 0.05),
        (GgmlType::Q8_0, 0.05),
    ] {
        let path = dir.path().join(format!("{}.gguf", ty.name()));
        write_gemma(&model, &vocab, &path, &WriteOptions::new(ty)).unwrap();
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.tensors().len(), reference.tensors().len());
        for t in reference.tensors() {
            let got = file.tensor(&t.name).unwrap();
            assert_eq!(got.dims, t.dims, "{}", t.name);
            let original = reference.dequantize(&t.name).unwrap();
            let want_type = if t.dims.len() == 1 { GgmlType::F32 } else { ty };
            assert_eq!(got.ggml_type, want_type, "{}", t.name);
            let mut want = vec![0.0f32; original.len()];
            dequantize(
                want_type,
                &quantize(want_type, &original).unwrap(),
                &mut want,
            )
            .unwrap();
            assert_eq!(
                file.dequantize(&t.name).unwrap(),
                want,
                "{} in {}",
                t.name,
                ty.name()
            );
        }
        let back = Gemma::from_gguf(&path, &device).unwrap();
        let got = logits(&back, &ids);
        let worst = base
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = base.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        eprintln!("{}: worst {worst}, max |logit| {scale}", ty.name());
        let tol = tol * scale;
        if tol == 0.0 {
            assert_eq!(
                worst,
                0.0,
                "{}: an f16 model exported as F16 must not change",
                ty.name()
            );
        } else {
            assert!(
                worst > 0.0,
                "{}: rounding should change something",
                ty.name()
            );
            assert!(worst < tol, "{}: logits moved by {worst}", ty.name());
        }
    }
}

#[test]
fn compatible_mode_refuses_what_llama_cpp_would_compute_differently() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let strict = WriteOptions::new(GgmlType::F32);
    // Gemma 2 fixture: query_pre_attn_scalar 24 with head_dim 16.
    let g2 = Gemma::from_pretrained(fixture("gemma2_gqa_bf16"), &device).unwrap();
    let v2 = vocab_for(&fixture("gemma2_gqa_bf16"), 512);
    let out = dir.path().join("g2.gguf");
    let err = write_gemma(&g2, &v2, &out, &strict).unwrap_err();
    assert!(matches!(err, Error::GgufMetadata { .. }), "{err}");
    assert!(
        err.to_string().contains("query_pre_attn_scalar 24"),
        "{err}"
    );
    assert!(!out.exists());
    // Gemma 3 with a final softcap (and a scalar llama.cpp would not use).
    let g3 = Gemma::from_pretrained(fixture("gemma3_gqa_sharded_bf16"), &device).unwrap();
    let err = write_gemma(
        &g3,
        &vocab_for(&fixture("gemma3_gqa_sharded_bf16"), 512),
        &out,
        &strict,
    )
    .unwrap_err();
    assert!(matches!(err, Error::GgufMetadata { .. }), "{err}");
    // Q8_0 needs rows of whole 32-value blocks: Gemma 1 fixture has hidden 48.
    let g1 = Gemma::from_pretrained(fixture("gemma1_mha_f32"), &device).unwrap();
    let err = write_gemma(
        &g1,
        &vocab_for(&fixture("gemma1_mha_f32"), 512),
        &out,
        &WriteOptions::new(GgmlType::Q8_0),
    )
    .unwrap_err();
    match err {
        Error::GgufTensor {
            tensor, message, ..
        } => {
            assert!(
                tensor.starts_with("blk.0.") || tensor == "token_embd.weight",
                "{tensor}"
            );
            assert!(message.contains("Q8_0"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Unsupported weight type and a vocabulary of the wrong size.
    let err = write_gemma(
        &g1,
        &vocab_for(&fixture("gemma1_mha_f32"), 512),
        &out,
        &WriteOptions::new(GgmlType::Q4K),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Q4_K"), "{err}");
    let err = write_gemma(
        &g1,
        &vocab_for(&fixture("gemma1_mha_f32"), 500),
        &out,
        &strict,
    )
    .unwrap_err();
    assert!(err.to_string().contains("500 tokens"), "{err}");
    assert!(!out.exists());
}

#[test]
fn real_model_reexported_to_q8_0_keeps_vocabulary_and_greedy_text() {
    let device = Device::default();
    let src = kwx_core::home::gemma3_270m_gguf().unwrap_or_else(|e| panic!("{e}"));
    let file = GgufFile::open(&src).unwrap();
    let model = Gemma::from_gguf_file(&file, &device).unwrap();
    let vocab = GgufVocab::from_gguf(&file).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma-3-270m-q8_0.gguf");
    let options = WriteOptions {
        name: "Gemma 3 270m (kwx Q8_0)".into(),
        ..WriteOptions::new(GgmlType::Q8_0)
    };
    write_gemma(&model, &vocab, &out, &options).unwrap();
    let back = GgufFile::open(&out).unwrap();
    assert_eq!(back.get_str("general.architecture"), Some("gemma3"));
    assert_eq!(back.tensors().len(), file.tensors().len());
    let back_vocab = GgufVocab::from_gguf(&back).unwrap();
    assert_eq!(back_vocab.tokens, vocab.tokens);
    assert_eq!(back_vocab.scores, vocab.scores);
    assert_eq!(back_vocab.token_types, vocab.token_types);
    assert_eq!(
        kwx_core::gguf::config_from_gguf(&back).unwrap().layer_types,
        model.config().layer_types
    );
    let reexported = Gemma::from_gguf_file(&back, &device).unwrap();
    let tokenizer = kwx_core::GemmaTokenizer::from_gguf(&out).unwrap();
    let ids = tokenizer.encode("Paris is the capital of", true).unwrap();
    assert_eq!(ids, vec![2, 50429, 563, 506, 5279, 529]);
    let out = kwx_core::Generator::new(&reexported)
        .generate(&ids, &kwx_core::GenerationConfig::greedy(10), |_| {})
        .unwrap();
    assert_eq!(
        tokenizer.decode(&out.tokens).unwrap(),
        " France and is the most visited city in the world"
    );
}

/// What llama.cpp computed on kwx's exports (`scripts/check_llama_cpp.py` →
/// `fixtures/llama_cpp/greedy.json`): kwx, reading the same exports, must agree.
#[test]
fn llama_cpp_agrees_with_kwx_on_kwx_exports() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_cpp/greedy.json");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids_of = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let name = "gemma3_mqa_f16_v4config";
    let model = Gemma::from_pretrained(fixture(name), &device).unwrap();
    let vocab = vocab_for(&fixture(name), model.config().vocab_size);
    let mut checked = 0;
    for case in recorded["cases"].as_array().unwrap() {
        let Some(ty) = case["type"].as_str() else {
            continue;
        };
        let ggml = match ty {
            "f32" => GgmlType::F32,
            "f16" => GgmlType::F16,
            "bf16" => GgmlType::BF16,
            "q8_0" => GgmlType::Q8_0,
            other => panic!("unexpected type {other}"),
        };
        let out = dir.path().join(format!("tiny-{ty}.gguf"));
        write_gemma(&model, &vocab, &out, &WriteOptions::new(ggml)).unwrap();
        let back = Gemma::from_gguf(&out, &device).unwrap();
        let ids = ids_of(&case["ids"]);
        // Argmax at every prompt position, as llama.cpp computed it.
        let l = logits(&back, &ids);
        let v = back.config().vocab_size;
        let argmax: Vec<u32> = l
            .chunks(v)
            .map(|row| (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32)
            .collect();
        assert_eq!(
            argmax,
            ids_of(&case["llama_cpp_argmax_per_position"]),
            "{ty}: argmax per position"
        );
        // llama.cpp's top-10 logits at the last position (its KV cache is f16: ≤ 0.1 apart).
        let last = &l[(ids.len() - 1) * v..];
        for (id, want) in ids_of(&case["llama_cpp_top10_ids"])
            .iter()
            .zip(case["llama_cpp_top10_logits"].as_array().unwrap())
        {
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (last[*id as usize] - want).abs() < 0.1,
                "{ty}: id {id}: kwx {} llama.cpp {want}",
                last[*id as usize]
            );
        }
        // Greedy continuation.
        let greedy = ids_of(&case["llama_cpp_greedy"]);
        let decoded = kwx_core::Generator::new(&back)
            .generate(
                &ids,
                &kwx_core::GenerationConfig::greedy(greedy.len()).with_stop_at_eos(false),
                |_| {},
            )
            .unwrap();
        assert_eq!(decoded.tokens, greedy, "{ty}: greedy");
        checked += 1;
    }
    assert_eq!(checked, 4, "F32, F16, BF16 and Q8_0 recorded");
}
