//! Token-embedding resizing on a tiny random Gemma 3: old ids compute exactly what they did,
//! new rows start where `RowInit` says, nothing else moves, and bad input is refused by name.

#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::module::{Module, Param};
use burn::module::{Reparameterization, Reparameterizer};
use burn::tensor::{Device, Distribution, Tensor};
use kwx_core::config::gemma3_layer_types;
use kwx_core::{Error, Family, Gemma, GemmaConfig, ResizeError, ResizeOptions, Rope, RowInit};

/// Vocabulary of the tiny model; odd, so padding to 8 adds rows.
const V: usize = 61;
const HIDDEN: usize = 32;

fn tiny(tied: bool) -> Gemma {
    let config = GemmaConfig::new(
        Family::Gemma3,
        V,
        HIDDEN,
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
    .with_sliding_window(Some(4))
    .with_final_logit_softcapping(Some(30.0))
    .with_tie_word_embeddings(tied);
    let device = Device::default();
    device.seed(if tied { 11 } else { 12 });
    let mut model = config.init(&device).unwrap();
    common::randomise_norms(&mut model, &device);
    model
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The embedding as `[vocab][hidden]` rows.
fn embed_rows(model: &Gemma) -> Vec<Vec<f32>> {
    rows_of(model.embed_tokens.weight.val())
}

/// The untied head as `[vocab][hidden]` (its columns).
fn head_rows(model: &Gemma) -> Vec<Vec<f32>> {
    rows_of(model.lm_head.as_ref().unwrap().weight.val().transpose())
}

fn rows_of(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, width] = t.dims();
    values(t).chunks(width).map(<[f32]>::to_vec).collect()
}

fn mean_of(rows: &[Vec<f32>], ids: &[usize]) -> Vec<f64> {
    let mut mean = vec![0.0f64; rows[0].len()];
    for &i in ids {
        for (m, &x) in mean.iter_mut().zip(&rows[i]) {
            *m += f64::from(x) / ids.len() as f64;
        }
    }
    mean
}

/// Per-dimension mean and population standard deviation over every row.
fn stats(rows: &[Vec<f32>]) -> (Vec<f64>, Vec<f64>) {
    let all: Vec<usize> = (0..rows.len()).collect();
    let mean = mean_of(rows, &all);
    let std = (0..mean.len())
        .map(|d| {
            let var = rows
                .iter()
                .map(|r| (f64::from(r[d]) - mean[d]).powi(2))
                .sum::<f64>()
                / rows.len() as f64;
            var.sqrt()
        })
        .collect();
    (mean, std)
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

fn padded() -> ResizeOptions {
    ResizeOptions {
        pad_to_multiple_of: Some(8),
        seed: 7,
        ..ResizeOptions::default()
    }
}

#[test]
fn old_ids_give_bit_identical_logits_after_growing() {
    for tied in [true, false] {
        let mut model = tiny(tied);
        let device = model.device();
        if let Some(head) = model.lm_head.as_mut() {
            // Gemma has no head bias; a loaded variant with one must keep it too.
            let bias = Tensor::random([V], Distribution::Normal(0.0, 0.5), &device);
            head.bias = Some(Param::from_tensor(bias));
        }
        let embed_id = model.embed_tokens.weight.id;
        let head_id = model.lm_head.as_ref().map(|h| h.weight.id);
        // 12 tokens take the plain matmul; 5 take the vocabulary-split decode path on CPUs.
        let long: Vec<u32> = (0..12).map(|i| (i * 17 + 3) % V as u32).collect();
        let short = &long[..5];
        let before = [model.logits(&long).unwrap(), model.logits(short).unwrap()];

        let rows = [(V as u32 + 1, RowInit::MeanOf(vec![4, 9]))];
        let resized = model
            .resize_token_embeddings(V + 5, &rows, &padded())
            .unwrap();
        assert_eq!(resized.config().vocab_size, 72, "61 + 5 rounded up to 8");
        assert_eq!(resized.embed_tokens.weight.val().dims(), [72, HIDDEN]);
        assert_eq!(resized.embed_tokens.weight.id, embed_id, "param id kept");
        if let Some(head) = &resized.lm_head {
            assert_eq!(head.weight.val().dims(), [HIDDEN, 72]);
            assert_eq!(head.bias.as_ref().unwrap().val().dims(), [72]);
            assert_eq!(Some(head.weight.id), head_id, "param id kept");
        }

        let after = [
            resized.logits(&long).unwrap(),
            resized.logits(short).unwrap(),
        ];
        for (b, a) in before.into_iter().zip(after) {
            let [seq, vocab] = a.dims();
            assert_eq!(vocab, 72);
            // Exact: each logit is one dot product over `hidden`, whose summation order does
            // not depend on how many vocabulary rows the matmul covers.
            assert_eq!(
                values(a.narrow(1, 0, V)),
                values(b),
                "tied = {tied}, seq = {seq}"
            );
        }
        // New ids run too.
        resized.logits(&[2, 70, 71, V as u32]).unwrap();
    }
}

#[test]
fn new_rows_start_at_their_means_with_seeded_noise() {
    for tied in [true, false] {
        let model = tiny(tied);
        let old_embed = embed_rows(&model);
        let old_head = (!tied).then(|| head_rows(&model));
        let rows = [
            (V as u32, RowInit::MeanOf(vec![3, 7, 7, 20])),
            (V as u32 + 2, RowInit::MeanOf(vec![50])),
            (V as u32 + 3, RowInit::MeanOf(vec![1, 2, 3, 4])),
            (V as u32 + 4, RowInit::VocabMean),
        ];
        // Clones, not fresh `tiny` models: the device RNG is shared by tests running in parallel.
        let grow = |seed| {
            let options = ResizeOptions { seed, ..padded() };
            model
                .clone()
                .resize_token_embeddings(V + 5, &rows, &options)
                .unwrap()
        };
        let a = grow(7);
        let (a_embed, a_head) = (embed_rows(&a), (!tied).then(|| head_rows(&a)));

        let mut checks = vec![(old_embed, a_embed.clone(), "embed")];
        if let (Some(old), Some(new)) = (old_head, a_head.clone()) {
            checks.push((old, new, "lm_head"));
        }
        let scale = ResizeOptions::default().noise_variance_scale.sqrt();
        for (old, new, what) in checks {
            assert_eq!(new.len(), 72);
            assert_eq!(&new[..V], &old[..], "{what}: old rows unchanged");
            for (row, pieces) in [
                (V, vec![3, 7, 7, 20]),
                (V + 2, vec![50]),
                (V + 3, vec![1, 2, 3, 4]),
            ] {
                let diff = max_abs_diff(&new[row], &mean_of(&old, &pieces));
                assert!(diff <= 1e-6, "{what} row {row}: {diff}");
            }
            // Unnamed new rows (V+1) and padding (V+5..72) get VocabMean, as V+4 asked.
            let noisy: Vec<usize> = [V + 1, V + 4].into_iter().chain(V + 5..72).collect();
            let (mean, std) = stats(&old);
            let mut z = Vec::new();
            for &row in &noisy {
                for d in 0..HIDDEN {
                    let dev = f64::from(new[row][d]) - mean[d];
                    // Six standard deviations of the noise, plus f32 rounding of the mean.
                    assert!(
                        dev.abs() <= 6.0 * std[d] * scale + 1e-7,
                        "{what} row {row} dim {d}: {dev}"
                    );
                    z.push(dev / (std[d] * scale));
                }
            }
            // The noise is there, at the documented scale.
            let z_std = (z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64).sqrt();
            assert!(
                (0.6..1.5).contains(&z_std),
                "{what}: noise std ratio {z_std}"
            );
            for pair in noisy.windows(2) {
                assert_ne!(
                    new[pair[0]], new[pair[1]],
                    "{what}: rows {pair:?} identical"
                );
            }
        }

        let again = grow(7);
        assert_eq!(embed_rows(&again), a_embed, "same seed, same rows");
        let other = embed_rows(&grow(8));
        assert_eq!(
            &other[..=V],
            &a_embed[..=V],
            "MeanOf rows do not depend on the seed"
        );
        assert_ne!(other[V + 1], a_embed[V + 1], "another seed, other noise");
        assert_ne!(other[71], a_embed[71]);
        if !tied {
            assert_eq!(head_rows(&again), a_head.unwrap());
        }
    }
}

#[test]
fn zero_noise_scale_gives_the_plain_mean() {
    let model = tiny(true);
    let old = embed_rows(&model);
    let options = ResizeOptions {
        noise_variance_scale: 0.0,
        ..ResizeOptions::default()
    };
    let new = embed_rows(&model.resize_token_embeddings(V + 2, &[], &options).unwrap());
    let (mean, _) = stats(&old);
    assert_eq!(new.len(), V + 2);
    assert_eq!(new[V], new[V + 1]);
    assert!(max_abs_diff(&new[V], &mean) <= 1e-7);
}

#[test]
fn init_token_rows_changes_only_the_named_rows() {
    for tied in [true, false] {
        let model = tiny(tied);
        let old_embed = embed_rows(&model);
        let old_head = (!tied).then(|| head_rows(&model));
        let named = [4usize, 9, 33];
        let rows = [
            (4, RowInit::MeanOf(vec![10, 11])),
            (9, RowInit::VocabMean),
            // A row may average itself: means use the matrix from before the call.
            (33, RowInit::MeanOf(vec![33, 0])),
        ];
        let model = model.init_token_rows(&rows, &padded()).unwrap();
        assert_eq!(model.config().vocab_size, V, "no padding without growth");
        let mut checks = vec![(old_embed, embed_rows(&model))];
        if let Some(old) = old_head {
            checks.push((old, head_rows(&model)));
        }
        for (old, new) in checks {
            assert_eq!(new.len(), V);
            for i in 0..V {
                if named.contains(&i) {
                    assert_ne!(new[i], old[i], "row {i} re-initialised");
                } else {
                    assert_eq!(new[i], old[i], "row {i} bit-identical");
                }
            }
            assert!(max_abs_diff(&new[4], &mean_of(&old, &[10, 11])) <= 1e-6);
            assert!(max_abs_diff(&new[33], &mean_of(&old, &[33, 0])) <= 1e-6);
        }
    }
}

#[test]
fn nothing_to_do_returns_the_model_unchanged() {
    let model = tiny(true);
    let old = embed_rows(&model);
    let model = model.init_token_rows(&[], &padded()).unwrap();
    let model = model
        .resize_token_embeddings(V, &[], &ResizeOptions::default())
        .unwrap();
    assert_eq!(embed_rows(&model), old);
    assert_eq!(model.config().vocab_size, V);
}

#[test]
fn trainable_weights_stay_trainable_after_growing() {
    let device = Device::default().autodiff();
    let config = tiny(false).config().clone();
    let model = config.init(&device).unwrap();
    let model = model
        .resize_token_embeddings(V + 3, &[], &ResizeOptions::default())
        .unwrap();
    let embed = model.embed_tokens.weight.val();
    let head = model.lm_head.as_ref().unwrap().weight.val();
    assert!(embed.is_require_grad() && head.is_require_grad());
    let grads = model.logits(&[1, V as u32 + 2]).unwrap().sum().backward();
    assert_eq!(embed.grad(&grads).unwrap().dims(), [V + 3, HIDDEN]);
    assert_eq!(head.grad(&grads).unwrap().dims(), [HIDDEN, V + 3]);
}

fn resize_error(
    new_vocab_size: usize,
    rows: &[(u32, RowInit)],
    options: &ResizeOptions,
) -> (ResizeError, String) {
    match tiny(true).resize_token_embeddings(new_vocab_size, rows, options) {
        Err(ref err @ Error::Resize(ref inner)) => (inner.clone(), err.to_string()),
        Err(other) => panic!("expected Error::Resize, got {other}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn bad_input_is_refused_by_name() {
    let plain = ResizeOptions::default();

    let (err, msg) = resize_error(V - 1, &[], &plain);
    assert_eq!(
        err,
        ResizeError::Shrink {
            current: V,
            requested: V - 1
        }
    );
    assert!(
        msg.contains("new_vocab_size 60") && msg.contains("shrinking"),
        "{msg}"
    );

    let zero = ResizeOptions {
        pad_to_multiple_of: Some(0),
        ..plain.clone()
    };
    let (err, msg) = resize_error(V + 1, &[], &zero);
    assert!(matches!(
        err,
        ResizeError::PadToMultipleOf {
            pad_to_multiple_of: 0,
            ..
        }
    ));
    assert!(msg.contains("pad_to_multiple_of = 0"), "{msg}");

    // Padding makes the vocabulary 64: id 64 is out, 63 would be in.
    let rows = [(64, RowInit::VocabMean)];
    let (err, msg) = resize_error(V + 1, &rows, &padded());
    assert_eq!(
        err,
        ResizeError::RowOutOfRange {
            id: 64,
            vocab_size: 64
        }
    );
    assert!(msg.contains("row id 64"), "{msg}");

    let rows = [(V as u32, RowInit::MeanOf(vec![2, V as u32]))];
    let (err, msg) = resize_error(V + 1, &rows, &plain);
    assert_eq!(
        err,
        ResizeError::MeanOfOutOfRange {
            row: V as u32,
            id: V as u32,
            vocab_size: V
        }
    );
    assert!(
        msg.contains("MeanOf id 61") && msg.contains("original"),
        "{msg}"
    );

    let rows = [(V as u32, RowInit::MeanOf(Vec::new()))];
    let (err, msg) = resize_error(V + 1, &rows, &plain);
    assert_eq!(err, ResizeError::EmptyMeanOf { row: V as u32 });
    assert!(msg.contains("row 61") && msg.contains("MeanOf"), "{msg}");

    let rows = [
        (5, RowInit::VocabMean),
        (V as u32, RowInit::VocabMean),
        (5, RowInit::MeanOf(vec![1])),
    ];
    let (err, msg) = resize_error(V + 1, &rows, &plain);
    assert_eq!(err, ResizeError::DuplicateRow { id: 5 });
    assert!(msg.contains("row id 5"), "{msg}");

    let noisy = ResizeOptions {
        noise_variance_scale: -1.0,
        ..plain.clone()
    };
    let (err, msg) = resize_error(V + 1, &[], &noisy);
    assert!(matches!(err, ResizeError::NoiseScale { .. }));
    assert!(msg.contains("noise_variance_scale"), "{msg}");

    // init_token_rows checks against the current vocabulary.
    let err = tiny(false)
        .init_token_rows(&[(V as u32, RowInit::VocabMean)], &plain)
        .err()
        .unwrap();
    assert!(matches!(
        err,
        Error::Resize(ResizeError::RowOutOfRange {
            id: 61,
            vocab_size: 61
        })
    ));
}

/// A stand-in for an adapter: scales the weight by a parameter.
#[derive(Module, Debug)]
struct Scale {
    scale: Param<Tensor<1>>,
}

impl Reparameterization for Scale {
    const NAME: &'static str = "scale";
    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        base * 2.0
    }
}

struct AttachScale;

impl Reparameterizer for AttachScale {
    type Reparam = Scale;
    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<Scale>) {
        let device = param.lazy_device();
        (
            param,
            Some(Scale {
                scale: Param::from_tensor(Tensor::ones([1], &device)),
            }),
        )
    }
}

#[test]
fn reparameterized_weights_are_refused() {
    let mut model = tiny(true);
    model.embed_tokens = model.embed_tokens.apply_reparameterization(AttachScale);
    let err = model
        .resize_token_embeddings(V + 1, &[], &ResizeOptions::default())
        .err()
        .unwrap();
    assert!(matches!(
        err,
        Error::Resize(ResizeError::Reparameterized {
            param: "model.embed_tokens.weight"
        })
    ));
    assert!(err.to_string().contains("adapters"), "{err}");

    let mut model = tiny(false);
    let head = model.lm_head.take().unwrap();
    model.lm_head = Some(head.apply_reparameterization(AttachScale));
    let err = model
        .init_token_rows(&[(3, RowInit::VocabMean)], &ResizeOptions::default())
        .err()
        .unwrap();
    assert!(matches!(
        err,
        Error::Resize(ResizeError::Reparameterized {
            param: "lm_head.weight"
        })
    ));
}
