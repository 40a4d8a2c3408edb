//! Bad input yields a typed error that names the problem, never a panic.
#![allow(clippy::unwrap_used)] // test helpers

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kwx_core::{Error, Gemma, GenerationConfig, Generator};
use safetensors::tensor::TensorView;

const CASE: &str = "gemma1_mha_f32";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemma")
        .join(CASE)
}

/// A copy of the fixture folder whose weights pass through `edit` (name → (shape, f32 data)).
fn edited(edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<u8>)>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (s, d))| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &tmp.path().join("model.safetensors")).unwrap();
    tmp
}

fn load(dir: &Path) -> Result<Gemma, Error> {
    Gemma::from_pretrained(dir, &Device::default())
}

#[test]
fn unedited_copy_loads_and_computes_the_same_logits() {
    // The control for every test below: the rewrite itself changes nothing, so their errors come
    // from their edits.
    let tmp = edited(|_| {});
    let ids = [2, 17, 250, 3, 99];
    let copy: Vec<f32> = load(tmp.path())
        .unwrap()
        .logits(&ids)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let orig: Vec<f32> = load(&fixture())
        .unwrap()
        .logits(&ids)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(copy, orig);
}

#[test]
fn missing_tensor_is_named() {
    let name = "model.layers.1.mlp.up_proj.weight";
    let tmp = edited(|t| {
        t.remove(name);
    });
    match load(tmp.path()) {
        Err(Error::MissingTensor { name: n, hint }) => {
            assert_eq!(n, name);
            assert!(hint.is_empty(), "nothing similar is left unused: {hint}");
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn misnamed_tensor_gets_a_suggestion() {
    let tmp = edited(|t| {
        let v = t.remove("model.layers.0.self_attn.q_proj.weight").unwrap();
        t.insert("model.layers.0.self_attn.qproj.weight".into(), v);
    });
    let err = load(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains("model.layers.0.self_attn.q_proj.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("did you mean `model.layers.0.self_attn.qproj.weight`"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_reported_with_both_shapes() {
    let tmp = edited(|t| {
        let (shape, _) = t.get_mut("model.layers.2.mlp.down_proj.weight").unwrap();
        *shape = vec![shape[1], shape[0]];
    });
    match load(tmp.path()) {
        Err(Error::ShapeMismatch {
            name,
            expected,
            got,
        }) => {
            assert_eq!(name, "model.layers.2.mlp.down_proj.weight");
            assert_eq!(expected, vec![48, 96]);
            assert_eq!(got, vec![96, 48]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn extra_decoder_tensor_is_an_error() {
    let tmp = edited(|t| {
        let v = t.get("model.norm.weight").unwrap().clone();
        t.insert("model.layers.9.input_layernorm.weight".into(), v);
    });
    let err = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::UnusedTensors { count: 1, first } if first == "model.layers.9.input_layernorm.weight"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_typed() {
    let tmp = edited(|_| {});
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Safetensors { path: p, message } if p == &path && message.contains("truncated")),
        "{err}"
    );
    // Shorter than the header length field.
    std::fs::write(&path, &bytes[..5]).unwrap();
    assert!(matches!(load(tmp.path()), Err(Error::Safetensors { .. })));
}

#[test]
fn corrupt_header_is_typed() {
    let tmp = edited(|_| {});
    let path = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[8..40] {
        *b = b'#';
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(load(tmp.path()), Err(Error::Safetensors { .. })));
}

#[test]
fn missing_weights_file_is_an_io_error_with_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );
}

fn with_config(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> tempfile::TempDir {
    let tmp = edited(|_| {});
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(json.as_object_mut().unwrap());
    std::fs::write(tmp.path().join("config.json"), json.to_string()).unwrap();
    tmp
}

#[test]
fn unknown_model_type_is_typed() {
    let tmp = with_config(|c| {
        c.insert("model_type".into(), "mistral".into());
    });
    let err = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownModelType { model_type, .. } if model_type == "mistral"),
        "{err}"
    );
    assert!(err.to_string().contains("config.json"));
}

#[test]
fn config_missing_field_names_field_and_file() {
    let tmp = with_config(|c| {
        c.remove("num_hidden_layers");
    });
    let err = load(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Json { .. }), "{msg}");
    assert!(
        msg.contains("num_hidden_layers") && msg.contains("config.json"),
        "{msg}"
    );
}

#[test]
fn config_that_disagrees_with_weights_is_caught() {
    let tmp = with_config(|c| {
        c.insert("num_hidden_layers".into(), 4.into());
    });
    let err = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name == "model.layers.3.input_layernorm.weight" || name.starts_with("model.layers.3.")),
        "{err}"
    );
}

#[test]
fn token_out_of_vocabulary_is_typed() {
    let model = load(&fixture()).unwrap();
    let err = model.logits(&[2, 17, 512]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfVocab {
                id: 512,
                position: 2,
                vocab_size: 512
            }
        ),
        "{err}"
    );
    let err = Generator::new(&model)
        .generate(&[2, 9999], &GenerationConfig::greedy(2), |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfVocab {
                id: 9999,
                position: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(model.logits(&[]), Err(Error::InvalidInput(_))));
}

#[test]
fn stop_strings_without_tokenizer_are_rejected() {
    let model = load(&fixture()).unwrap();
    let cfg = GenerationConfig::greedy(2).with_stop_string("\n");
    let err = Generator::new(&model)
        .generate(&[2, 5], &cfg, |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "stop_strings",
                ..
            }
        ),
        "{err}"
    );
}
