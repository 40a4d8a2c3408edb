//! `GemmaEmbedder` on a tiny random Gemma 3 with the real Gemma tokenizer: pooling matches a
//! plain unbatched reference, batching and sorting change nothing, long texts go through
//! windows, and the id follows the model and the depth. One test on the real Gemma 3 270M
//! (fetched by `scripts/fetch_model.sh`; missing → the test fails and says how to fetch it).
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use std::sync::OnceLock;

use kwx_core::burn::module::Param;
use kwx_core::burn::tensor::{Device, Distribution, Tensor};
use kwx_core::config::gemma3_layer_types;
use kwx_core::{Family, Gemma, GemmaConfig, GemmaTokenizer, KvCache, RmsNorm, Rope};
use kwx_rag::{Embedder, GemmaEmbedder, RagError};

const LAYERS: usize = 3;
const HIDDEN: usize = 32;

fn tokenizer() -> GemmaTokenizer {
    static TOK: OnceLock<GemmaTokenizer> = OnceLock::new();
    TOK.get_or_init(|| GemmaTokenizer::from_file(common::gemma_tokenizer_path()).unwrap())
        .clone()
}

/// A 3-layer Gemma 3 over the real vocabulary, sliding window 4 (shorter than most texts
/// here), norms randomised so a skipped or misplaced norm shows.
fn tiny(seed: u64) -> Gemma {
    let config = GemmaConfig::new(
        Family::Gemma3,
        tokenizer().vocab_size(),
        HIDDEN,
        64,
        LAYERS,
        2,
        1,
        16,
        16.0,
        gemma3_layer_types(LAYERS, 2),
        Rope::new(1_000_000.0),
        Rope::new(10_000.0),
    )
    .with_sliding_window(Some(4));
    let device = Device::default();
    device.seed(seed);
    let mut model = config.init(&device).unwrap();
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
    model
}

fn model() -> Gemma {
    static MODEL: OnceLock<Gemma> = OnceLock::new();
    MODEL.get_or_init(|| tiny(7)).clone()
}

fn embedder() -> GemmaEmbedder {
    GemmaEmbedder::new(model(), tokenizer())
}

const TEXTS: &[&str] = &[
    "해열제",
    "임산부에게 적합한 해열제는 아세트아미노펜이다.",
    "Ibuprofen 200mg",
    "당뇨병 치료제 제조사",
    "A longer English sentence about the dosage of paracetamol for pregnant women in the third trimester.",
    "x",
];

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
}

/// The definition, unbatched: `<bos>` + ids through `layers` blocks, mean of the non-`<bos>`
/// rows, L2-normalised.
fn reference(model: &Gemma, ids: &[u32], layers: usize) -> Vec<f32> {
    let seq: Vec<u32> = std::iter::once(model.config().bos_token_id)
        .chain(ids.iter().copied())
        .collect();
    let hidden: Vec<f32> = model
        .forward_hidden_layers(&[seq], None, layers, &mut KvCache::disabled(LAYERS))
        .unwrap()
        .into_data()
        .try_into_vec()
        .unwrap();
    let mut mean = vec![0.0f32; HIDDEN];
    for row in hidden.chunks(HIDDEN).skip(1) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, x)| *m += x / ids.len() as f32);
    }
    let n = norm(&mean);
    mean.iter().map(|x| x / n).collect()
}

#[test]
fn vectors_are_the_unit_mean_of_the_token_states_after_bos() {
    let tok = tokenizer();
    for layers in [1, LAYERS] {
        let e = embedder().layers(layers);
        let got = e.embed(TEXTS).unwrap();
        assert_eq!(got.len(), TEXTS.len());
        for (text, v) in TEXTS.iter().zip(&got) {
            assert_eq!(v.len(), e.dim());
            assert!((norm(v) - 1.0).abs() < 1e-5, "{text}: norm {}", norm(v));
            let want = reference(&model(), &tok.encode(text, false).unwrap(), layers);
            assert!(max_diff(v, &want) < 1e-5, "{text} at L{layers}");
        }
    }
    // Depth matters.
    let shallow = embedder().layers(1).embed(&TEXTS[1..2]).unwrap();
    let deep = embedder().embed(&TEXTS[1..2]).unwrap();
    assert!(max_diff(&shallow[0], &deep[0]) > 1e-2);
}

#[test]
fn a_text_alone_equals_the_text_in_a_padded_sorted_batch() {
    // Batches of 4 over 6 texts of different lengths: every text shares a padded batch with
    // others, and the sort puts them out of input order.
    let e = embedder().batch_size(4);
    let together = e.embed(TEXTS).unwrap();
    for (text, v) in TEXTS.iter().zip(&together) {
        let alone = e.embed(&[text]).unwrap();
        let d = max_diff(&alone[0], v);
        assert!(d < 1e-5, "{text}: max diff {d}");
    }
    // Order is the input's, whatever the lengths.
    let reversed: Vec<&str> = TEXTS.iter().rev().copied().collect();
    let back = e.embed(&reversed).unwrap();
    for (i, v) in back.iter().rev().enumerate() {
        assert!(max_diff(v, &together[i]) < 1e-5, "{}", TEXTS[i]);
    }
    // And the vectors differ between texts (a wrong gather would repeat one).
    assert!(max_diff(&together[0], &together[1]) > 1e-2);
}

#[test]
fn deterministic_across_calls_and_threads() {
    let e = embedder().batch_size(3);
    let first = e.embed(TEXTS).unwrap();
    assert_eq!(first, e.embed(TEXTS).unwrap());
    let from_threads: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| e.embed(TEXTS).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in from_threads {
        assert_eq!(v, first);
    }
}

#[test]
fn long_texts_are_the_token_mean_over_balanced_windows() {
    let tok = tokenizer();
    let text = TEXTS[4];
    let ids = tok.encode(text, false).unwrap();
    // max_tokens 8: windows of at most 7 tokens, as few as possible, lengths differing by ≤ 1.
    let span = 7;
    let n = ids.len().div_ceil(span);
    assert!(n >= 3, "{} tokens", ids.len());
    let (base, extra) = (ids.len() / n, ids.len() % n);
    let m = model();
    let mut sum = vec![0.0f32; HIDDEN];
    let mut start = 0;
    for w in 0..n {
        let len = base + usize::from(w < extra);
        // Summed, not averaged, per window: the text's mean weights windows by their tokens.
        let window_sum = {
            let seq: Vec<u32> = std::iter::once(m.config().bos_token_id)
                .chain(ids[start..start + len].iter().copied())
                .collect();
            let h: Vec<f32> = m
                .forward_hidden_layers(&[seq], None, LAYERS, &mut KvCache::disabled(LAYERS))
                .unwrap()
                .into_data()
                .try_into_vec()
                .unwrap();
            h.chunks(HIDDEN)
                .skip(1)
                .fold(vec![0.0f32; HIDDEN], |acc, r| {
                    acc.iter().zip(r).map(|(a, x)| a + x).collect()
                })
        };
        sum.iter_mut().zip(&window_sum).for_each(|(s, x)| *s += x);
        start += len;
    }
    let want: Vec<f32> = sum.iter().map(|x| x / norm(&sum)).collect();

    let windowed = embedder()
        .max_tokens(8)
        .batch_size(2)
        .embed(&[text, "x"])
        .unwrap();
    assert!((norm(&windowed[0]) - 1.0).abs() < 1e-5);
    let d = max_diff(&windowed[0], &want);
    assert!(d < 1e-5, "max diff {d}");
    // The whole text in one sequence sees more context: a different vector.
    let whole = embedder().embed(&[text]).unwrap();
    assert!(max_diff(&whole[0], &windowed[0]) > 1e-3);
    // A short text fits one window: max_tokens changes nothing for it.
    assert!(max_diff(&windowed[1], &embedder().embed(&["x"]).unwrap()[0]) < 1e-6);
}

#[test]
fn id_names_model_and_depth() {
    let a = embedder();
    let id = a.id();
    let parts: Vec<&str> = id.split(':').collect();
    assert_eq!(parts.len(), 4, "{id}");
    assert_eq!(parts[0], "gemma");
    assert_eq!(parts[1].len(), 8);
    assert!(parts[1].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(&parts[2..], ["mean", "L3"]);
    assert_eq!(a.dim(), HIDDEN);
    // Stable for the same weights, other weights or depths give another id.
    assert_eq!(embedder().id(), id);
    assert_eq!(embedder().batch_size(1).max_tokens(9).id(), id);
    let shallow = embedder().layers(2).id();
    assert_eq!(shallow, id.replace(":L3", ":L2"));
    let other = GemmaEmbedder::new(tiny(8), tokenizer()).id();
    assert_ne!(other, id);
}

#[test]
fn empty_inputs_and_bad_settings() {
    let e = embedder();
    assert!(e.embed(&[]).unwrap().is_empty());

    let err = e.embed(&["해열제", ""]).unwrap_err();
    assert!(matches!(err, RagError::Embedder { .. }), "{err:?}");
    assert!(err.to_string().contains("text 1 is empty"), "{err}");
    // Whitespace is a token, not nothing.
    assert_eq!(e.embed(&[" "]).unwrap().len(), 1);

    let err = embedder().layers(LAYERS + 1).embed(&["x"]).unwrap_err();
    assert!(
        matches!(
            err,
            RagError::Config {
                field: "layers",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("4 layers requested, the model has 3"),
        "{err}"
    );
    let err = embedder().batch_size(0).embed(&["x"]).unwrap_err();
    assert!(matches!(
        err,
        RagError::Config {
            field: "batch_size",
            ..
        }
    ));
    let err = embedder().max_tokens(1).embed(&["x"]).unwrap_err();
    assert!(matches!(
        err,
        RagError::Config {
            field: "max_tokens",
            ..
        }
    ));
}

/// The real Gemma 3 270M at depth 4 finds a dictionary term's own definition among 101
/// (every 8th entry) far above chance (over all 808 entries: top-1 44%, top-5 67%). Single-pair checks are not robust for a model never trained to embed: "임산부에게 적합한
/// 해열제" is closer to "당뇨병 치료제 제조사" (0.937) than to "임산부" (0.933).
#[test]
fn real_model_finds_a_terms_definition() {
    let path = kwx_core::home::gemma3_270m_gguf().unwrap_or_else(|e| panic!("{e}"));
    let e = GemmaEmbedder::from_path(path).unwrap().layers(4);
    assert_eq!(e.dim(), 640);
    assert!(e.id().ends_with(":mean:L4"), "{}", e.id());
    let entries: Vec<_> = kwx_data::dictionary::Dictionary::bundled()
        .entries()
        .iter()
        .step_by(8)
        .collect();
    let defs: Vec<&str> = entries.iter().map(|x| x.definition.as_str()).collect();
    let terms: Vec<&str> = entries.iter().map(|x| x.term.as_str()).collect();
    let d = e.embed(&defs).unwrap();
    let t = e.embed(&terms).unwrap();
    let ranks: Vec<usize> = t
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let own = cosine(q, &d[i]);
            d.iter().filter(|v| cosine(q, v) > own).count()
        })
        .collect();
    let top1 = ranks.iter().filter(|&&r| r == 0).count();
    let top5 = ranks.iter().filter(|&&r| r < 5).count();
    // Measured 62 and 83 of 101; chance is 1 and 5.
    assert!(
        top1 >= 40 && top5 >= 65,
        "top-1 {top1}, top-5 {top5} of 101"
    );
}
