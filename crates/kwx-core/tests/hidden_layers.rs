//! `Gemma::forward_hidden_layers` on a tiny random Gemma 3: all layers is `forward_hidden`
//! bit for bit, fewer layers differ, and bad counts or mixed caches are refused by number.

#![allow(clippy::unwrap_used)] // test helpers

mod common;

use burn::tensor::{Device, Tensor};
use kwx_core::config::gemma3_layer_types;
use kwx_core::{Error, Family, Gemma, GemmaConfig, KvCache, Rope};

const LAYERS: usize = 3;

fn tiny() -> Gemma {
    let config = GemmaConfig::new(
        Family::Gemma3,
        61,
        32,
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
    device.seed(21);
    let mut model = config.init(&device).unwrap();
    common::randomise_norms(&mut model, &device);
    model
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Two left-padded rows, longer than the sliding window.
fn batch() -> (Vec<Vec<u32>>, Vec<bool>) {
    let tokens = vec![
        vec![0, 0, 2, 7, 9, 11, 3, 5],
        vec![2, 4, 8, 15, 16, 23, 42, 1],
    ];
    let valid = [false; 2].into_iter().chain([true; 6 + 8]).collect();
    (tokens, valid)
}

#[test]
fn all_layers_is_forward_hidden_exactly() {
    let model = tiny();
    let (tokens, valid) = batch();
    let full = model
        .forward_hidden(&tokens, Some(&valid), &mut KvCache::disabled(LAYERS))
        .unwrap();
    let through = model
        .forward_hidden_layers(
            &tokens,
            Some(&valid),
            LAYERS,
            &mut KvCache::disabled(LAYERS),
        )
        .unwrap();
    assert_eq!(values(full), values(through));
}

#[test]
fn fewer_layers_differ_and_each_count_is_its_own() {
    let model = tiny();
    let (tokens, valid) = batch();
    let run = |n| {
        values(
            model
                .forward_hidden_layers(&tokens, Some(&valid), n, &mut KvCache::disabled(LAYERS))
                .unwrap(),
        )
    };
    let outs: Vec<Vec<f32>> = (0..=LAYERS).map(run).collect();
    for (i, a) in outs.iter().enumerate() {
        assert!(a.iter().all(|v| v.is_finite()), "{i} layers: non-finite");
        for (j, b) in outs.iter().enumerate().skip(i + 1) {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(diff > 1e-2, "{i} and {j} layers agree (max diff {diff})");
        }
    }
    assert_eq!(outs[1], run(1), "not deterministic");
}

#[test]
fn fewer_layers_through_a_storing_cache_match_one_shot() {
    let model = tiny();
    let ids: Vec<u32> = vec![2, 4, 8, 15, 16, 23, 42];
    let one_shot = values(
        model
            .forward_hidden_layers(
                std::slice::from_ref(&ids),
                None,
                2,
                &mut KvCache::disabled(LAYERS),
            )
            .unwrap(),
    );
    let mut cache = model.new_cache();
    let head = values(
        model
            .forward_hidden_layers(&[ids[..5].to_vec()], None, 2, &mut cache)
            .unwrap(),
    );
    let tail = values(
        model
            .forward_hidden_layers(&[ids[5..].to_vec()], None, 2, &mut cache)
            .unwrap(),
    );
    let stepped: Vec<f32> = head.into_iter().chain(tail).collect();
    let diff = one_shot
        .iter()
        .zip(&stepped)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "max diff {diff}");

    // The cache holds 2 layers: continuing through all of them would attend to nothing.
    let err = model
        .forward_hidden(&[vec![3]], None, &mut cache)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("filled through 2 layers") && msg.contains("runs 3"),
        "{msg}"
    );
}

#[test]
fn more_layers_than_the_model_is_refused_naming_both() {
    let model = tiny();
    let err = model
        .forward_hidden_layers(
            &[vec![2, 5]],
            None,
            LAYERS + 2,
            &mut KvCache::disabled(LAYERS),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("5 layers requested, the model has 3"), "{msg}");
}
