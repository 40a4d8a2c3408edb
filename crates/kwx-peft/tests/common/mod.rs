//! Helpers shared by the tests that read the PEFT fixtures (`scripts/make_peft_fixtures.py`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test uses a part

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use kwx_core::{Gemma, SafetensorsSource, WeightSource};

/// `tests/fixtures/peft`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

/// The tiny random Gemma 3 every fixture adapter was made on.
pub fn base() -> Gemma {
    Gemma::from_pretrained(fixtures().join("base"), &Device::default()).unwrap()
}

/// `input_ids` of a fixture folder's `expected.json`.
pub fn ids(dir: &Path) -> Vec<u32> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Tensor `name` of a fixture folder's `expected.safetensors` (`[seq, vocab]` logits).
pub fn expected(dir: &Path, name: &str, vocab: usize) -> Vec<f32> {
    let mut src = SafetensorsSource::open(vec![dir.join("expected.safetensors")]).unwrap();
    let shape = src.shape(name).unwrap();
    assert_eq!(shape[1], vocab);
    src.read(name, &shape).unwrap()
}

/// A tensor's values as f32.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
