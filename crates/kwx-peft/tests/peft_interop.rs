//! Interop with Hugging Face PEFT 0.21 both ways.
//!
//! Fixtures: `scripts/make_peft_fixtures.py` (PEFT's own `save_pretrained`, random non-zero A and
//! B, f32, eager attention) and `kwx_saved/`, an adapter kwx wrote, checked in PEFT by
//! `scripts/check_peft_load.py` (its result is committed as `kwx_saved/peft_check.json`).
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use std::path::Path;

use common::{base, expected, fixtures, ids, max_diff, values};
use kwx_core::{Gemma, SafetensorsSource, WeightSource};
use kwx_peft::{Adapter, AdapterSet, Error, LoraConfig, TargetModules, attach, merge, unmerge};

const ADAPTERS: [&str; 3] = [
    "lora_all_linear",
    "lora_rslora_tokens",
    "lora_modules_to_save",
];
const TOL: f32 = 1e-4;

#[test]
fn peft_adapters_give_peft_logits_unmerged_and_merged() {
    let base = base();
    let vocab = base.config().vocab_size;
    for name in ADAPTERS {
        let dir = fixtures().join(name);
        let ids = ids(&dir);
        let adapter = Adapter::load(&dir, &base).unwrap();
        let model = attach(base.clone(), &adapter).unwrap();
        let got = values(model.logits(&ids).unwrap());
        let want = expected(&dir, "logits", vocab);
        let d = max_diff(&got, &want);
        assert!(d <= TOL, "{name}: unmerged logits differ from PEFT by {d}");
        // The adapter matters: the base alone is far away.
        let plain = values(base.logits(&ids).unwrap());
        assert!(
            max_diff(&plain, &want) > 0.5,
            "{name}: adapter changes nothing"
        );

        let merged = merge(model);
        let got_merged = values(merged.logits(&ids).unwrap());
        let d = max_diff(&got_merged, &expected(&dir, "merged_logits", vocab));
        assert!(
            d <= TOL,
            "{name}: merged logits differ from PEFT's merged by {d}"
        );
        let d = max_diff(&got_merged, &got);
        assert!(d <= TOL, "{name}: merged differs from unmerged by {d}");

        if adapter.token_rows.is_none() && adapter.saved_modules.is_empty() {
            let back = unmerge(merged, &adapter).unwrap();
            let d = max_diff(&values(back.logits(&ids).unwrap()), &plain);
            assert!(d <= TOL, "{name}: unmerge leaves {d}");
        } else {
            let e = unmerge(merged, &adapter).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
        }
    }
}

#[test]
fn adapters_switch_per_request_from_many_threads() {
    let base = base();
    let vocab = base.config().vocab_size;
    let mut set = AdapterSet::new(base.clone());
    for name in ADAPTERS {
        set.load(name, fixtures().join(name)).unwrap();
    }
    assert_eq!(set.names(), {
        let mut n = ADAPTERS.to_vec();
        n.sort_unstable();
        n
    });
    let plain_ids = ids(&fixtures().join(ADAPTERS[0]));
    let plain = values(base.logits(&plain_ids).unwrap());
    std::thread::scope(|s| {
        for round in 0..2 {
            for name in ADAPTERS {
                let set = &set;
                let plain = &plain;
                let plain_ids = &plain_ids;
                s.spawn(move || {
                    let dir = fixtures().join(name);
                    let got = values(set.model(Some(name)).unwrap().logits(&ids(&dir)).unwrap());
                    let d = max_diff(&got, &expected(&dir, "logits", vocab));
                    assert!(d <= TOL, "{name} (round {round}): {d}");
                    let got = values(set.model(None).unwrap().logits(plain_ids).unwrap());
                    assert!(max_diff(&got, plain) <= TOL, "base view changed");
                });
            }
        }
    });
    let e = set.model(Some("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("lora_all_linear"), "{e}");
}

#[test]
fn save_then_load_is_exact() {
    let base = base();
    for name in ADAPTERS {
        let adapter = Adapter::load(fixtures().join(name), &base).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        adapter.save(tmp.path()).unwrap();
        let back = Adapter::load(tmp.path(), &base).unwrap();
        assert_eq!(back.config, adapter.config, "{name}");
        assert_eq!(back.layers.len(), adapter.layers.len());
        for (k, p) in &adapter.layers {
            let q = &back.layers[k];
            assert_eq!(values(p.a.clone()), values(q.a.clone()), "{name} {k}");
            assert_eq!(values(p.b.clone()), values(q.b.clone()), "{name} {k}");
        }
        assert_eq!(
            adapter.token_rows.clone().map(values),
            back.token_rows.clone().map(values)
        );
        // Same config as PEFT wrote, field for field.
        let ours: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        let theirs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(name).join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(ours, theirs, "{name}");
    }
}

/// kwx's own adapter, checked in PEFT once (`scripts/check_peft_load.py`); kwx must keep
/// writing exactly those bytes, or the PEFT check no longer speaks for it.
fn kwx_saved_adapter(base: &Gemma) -> Adapter {
    let config = LoraConfig::new(4, 8.0)
        .with_target_modules(TargetModules::names([
            "q_proj",
            "k_proj",
            "up_proj",
            "down_proj",
        ]))
        .with_rslora(true)
        .with_trainable_tokens(vec![9, 10])
        .with_init(serde_json::Value::Bool(false));
    let mut adapter = Adapter::init(base, &config, 7).unwrap();
    // Token rows moved away from the base rows so they matter.
    adapter.token_rows = adapter.token_rows.map(|t| t.clone() + t.ones_like() * 0.05);
    adapter
}

#[test]
fn kwx_saved_adapter_is_what_peft_checked() {
    let base = base();
    let dir = fixtures().join("kwx_saved");
    let adapter = kwx_saved_adapter(&base);
    let ids: Vec<u32> = (0..20)
        .map(|i| (i * 37 % 500 + 3) as u32)
        .chain([9, 10])
        .collect();
    let logits = values(
        attach(base.clone(), &adapter)
            .unwrap()
            .logits(&ids)
            .unwrap(),
    );
    if std::env::var_os("KWX_BLESS").is_some() {
        adapter.save(dir.join("adapter")).unwrap();
        std::fs::write(
            dir.join("ids.json"),
            serde_json::json!({ "input_ids": ids }).to_string(),
        )
        .unwrap();
        let vocab = base.config().vocab_size;
        let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![ids.len(), vocab],
            &bytes,
        )
        .unwrap();
        std::fs::write(
            dir.join("expected.safetensors"),
            safetensors::serialize([("logits", view)], None).unwrap(),
        )
        .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    adapter.save(tmp.path()).unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            std::fs::read(tmp.path().join(file)).unwrap(),
            std::fs::read(dir.join("adapter").join(file)).unwrap(),
            "{file} changed: rerun with KWX_BLESS=1 and scripts/check_peft_load.py"
        );
    }
    let vocab = base.config().vocab_size;
    assert!(max_diff(&logits, &expected(&dir, "logits", vocab)) <= TOL);
    let check: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("peft_check.json")).unwrap())
            .unwrap();
    assert_eq!(check["passed"], true, "{check}");
    assert!(check["max_abs_diff"].as_f64().unwrap() <= 1e-4, "{check}");
}

#[test]
fn bad_adapters_are_typed_errors_naming_the_problem() {
    let base = base();
    let src = fixtures().join("lora_all_linear");
    let copy = |edit: &dyn Fn(&Path)| {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
        }
        edit(tmp.path());
        tmp
    };
    let rewrite_config = |dir: &Path, f: &dyn Fn(&mut serde_json::Value)| {
        let p = dir.join("adapter_config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
    };
    let rewrite_weights = |dir: &Path, drop: &str, add: Option<(&str, Vec<usize>)>| {
        let p = dir.join("adapter_model.safetensors");
        let mut src = SafetensorsSource::open(vec![p.clone()]).unwrap();
        let mut tensors = Vec::new();
        for name in src.names() {
            if name == drop {
                continue;
            }
            let shape = src.shape(&name).unwrap();
            let v = src.read(&name, &shape).unwrap();
            tensors.push((name, shape, v));
        }
        if let Some((name, shape)) = add {
            let n = shape.iter().product();
            tensors.push((name.to_string(), shape, vec![0.5f32; n]));
        }
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<_> = tensors
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    };
    let key = "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight";

    let t = copy(&|d| rewrite_weights(d, key, None));
    let e = Adapter::load(t.path(), &base).unwrap_err();
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == key),
        "{e}"
    );

    let t = copy(&|d| {
        rewrite_weights(
            d,
            "",
            Some((
                "base_model.model.model.layers.9.mlp.up_proj.lora_B.weight",
                vec![128, 4],
            )),
        )
    });
    let e = Adapter::load(t.path(), &base).unwrap_err();
    assert!(
        matches!(&e, Error::UnexpectedTensors { names, .. } if names[0].contains("layers.9")),
        "{e}"
    );

    let t = copy(&|d| rewrite_weights(d, key, Some((key, vec![128, 5]))));
    let e = Adapter::load(t.path(), &base).unwrap_err();
    assert!(
        matches!(&e, Error::ShapeMismatch { got, .. } if got == &vec![128, 5]),
        "{e}"
    );

    let t = copy(&|d| rewrite_config(d, &|v| v["use_dora"] = true.into()));
    let e = Adapter::load(t.path(), &base).unwrap_err().to_string();
    assert!(
        e.contains("use_dora") && e.contains("adapter_config.json"),
        "{e}"
    );

    let t = copy(&|d| rewrite_config(d, &|v| v["r"] = "four".into()));
    let e = Adapter::load(t.path(), &base).unwrap_err().to_string();
    assert!(
        e.contains("adapter_config.json") && e.contains("line"),
        "{e}"
    );

    let t = copy(&|d| rewrite_config(d, &|v| v["target_modules"] = serde_json::json!(["qq_proj"])));
    let e = Adapter::load(t.path(), &base).unwrap_err();
    assert!(matches!(&e, Error::NoTargets { .. }), "{e}");

    let t = copy(&|d| std::fs::remove_file(d.join("adapter_model.safetensors")).unwrap());
    let e = Adapter::load(t.path(), &base).unwrap_err().to_string();
    assert!(e.contains("adapter_model.safetensors"), "{e}");
}
