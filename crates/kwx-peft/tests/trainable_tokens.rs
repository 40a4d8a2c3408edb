//! Training only chosen embedding rows — new domain tokens — as PEFT's `TrainableTokensConfig`:
//! a PEFT-saved adapter gives PEFT's logits in kwx, kwx writes PEFT's format, and after
//! `Gemma::resize_token_embeddings` a few AdamW steps move the new rows and nothing else.
//!
//! Fixture: `scripts/make_peft_tt_fixture.py` (PEFT 0.21 `save_pretrained`).
#![allow(clippy::unwrap_used)] // test helpers

mod common;

use std::path::PathBuf;

use common::{base, fixtures, ids, max_diff, values};
use kwx_core::{ResizeOptions, RowInit, SafetensorsSource, WeightSource};
use kwx_peft::inject::linears;
use kwx_peft::train::{MicroBatch, Mode, TrainConfig, optimizer, train_step, trainable_model};
use kwx_peft::{Adapter, LoraConfig, attach, extract, merge};

fn expected() -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let dir = fixtures().join("trainable_tokens");
    let vocab = base().config().vocab_size;
    (
        ids(&dir),
        common::expected(&dir, "logits", vocab),
        common::expected(&dir, "merged_logits", vocab),
    )
}

#[test]
fn peft_trainable_tokens_adapter_gives_peft_logits_and_saves_as_peft_does() {
    let base = base();
    let dir = fixtures().join("trainable_tokens");
    let adapter = Adapter::load(&dir, &base).unwrap();
    assert!(adapter.config.is_trainable_tokens_only());
    assert_eq!(
        adapter.config.trainable_tokens(),
        Some(&[5, 6, 7, 500, 501][..])
    );
    assert!(adapter.layers.is_empty());
    let (ids, want, want_merged) = expected();
    let model = attach(base.clone(), &adapter).unwrap();
    let got = values(model.logits(&ids).unwrap());
    let d = max_diff(&got, &want);
    assert!(d <= 1e-4, "unmerged logits differ from PEFT by {d}");
    assert!(max_diff(&values(base.logits(&ids).unwrap()), &want) > 0.5);
    let merged = merge(model);
    let d = max_diff(&values(merged.logits(&ids).unwrap()), &want_merged);
    assert!(d <= 1e-4, "merged logits differ from PEFT by {d}");

    // Saved by kwx: PEFT's config (same fields and values) and PEFT's keys, values exact.
    let out = tempfile::tempdir().unwrap();
    adapter.save(out.path()).unwrap();
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    assert_eq!(
        json(out.path().join("adapter_config.json")),
        json(dir.join("adapter_config.json"))
    );
    let tensors = |p: PathBuf| {
        let mut src = SafetensorsSource::open(vec![p]).unwrap();
        let names = src.names();
        names
            .into_iter()
            .map(|n| {
                let shape = src.shape(&n).unwrap();
                let v = src.read(&n, &shape).unwrap();
                (n, shape, v)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tensors(out.path().join("adapter_model.safetensors")),
        tensors(dir.join("adapter_model.safetensors"))
    );
}

#[test]
fn only_the_new_rows_train_after_resizing() {
    let base = base();
    let old_vocab = base.config().vocab_size as u32;
    // Four new tokens, each starting at the mean of two old rows.
    let rows: Vec<(u32, RowInit)> = (0..4)
        .map(|i| (old_vocab + i, RowInit::MeanOf(vec![10 + i, 20 + i])))
        .collect();
    let new_ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
    let resized = base
        .resize_token_embeddings(old_vocab as usize + 4, &rows, &ResizeOptions::default())
        .unwrap();
    let before_embed = values(resized.embed_tokens.weight.val());
    let before_params: Vec<Vec<f32>> = linears(&resized)
        .into_iter()
        .map(|(_, l)| values(l.weight.val()))
        .collect();

    let lora = LoraConfig::trainable_tokens_only(new_ids.clone());
    let config = TrainConfig {
        mode: Mode::Lora,
        lora: lora.clone(),
        learning_rate: 1e-2,
        weight_decay: 0.0,
        ..TrainConfig::default()
    };
    config.validate("test").unwrap();
    let mut model = trainable_model(resized.clone(), Mode::Lora, &lora, 0, None).unwrap();
    let mut optim = optimizer(&config, &model);
    // Sequences that use the new tokens as inputs and as labels.
    let seq: Vec<u32> = vec![
        2, 30, new_ids[0], 31, new_ids[1], new_ids[2], 32, new_ids[3], 33,
    ];
    let labels: Vec<i64> = seq.iter().map(|&t| i64::from(t)).collect();
    let batch = MicroBatch {
        input_ids: vec![seq.clone()],
        labels: vec![labels],
    };
    let mut losses = Vec::new();
    for _ in 0..5 {
        let (m, stats) = train_step(
            model,
            &mut optim,
            std::slice::from_ref(&batch),
            1e-2,
            1.0,
            None,
        )
        .unwrap();
        model = m;
        losses.push(stats.loss);
    }
    assert!(losses[4] < losses[0], "{losses:?}");

    let adapter = extract(&model, &lora).unwrap();
    assert!(adapter.layers.is_empty());
    let trained = merge(attach(resized.clone(), &adapter).unwrap());
    let after_embed = values(trained.embed_tokens.weight.val());
    let hidden = resized.config().hidden_size;
    for (row, (b, a)) in before_embed
        .chunks(hidden)
        .zip(after_embed.chunks(hidden))
        .enumerate()
    {
        if new_ids.contains(&(row as u32)) {
            assert!(max_diff(a, b) > 1e-3, "new row {row} did not move");
        } else {
            assert_eq!(a, b, "old row {row} changed");
        }
    }
    for (before, (_, l)) in before_params.iter().zip(linears(&trained)) {
        assert_eq!(before, &values(l.weight.val()));
    }
    // Saved as PEFT's TrainableTokensConfig.
    let out = tempfile::tempdir().unwrap();
    adapter.save(out.path()).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["peft_type"], "TRAINABLE_TOKENS");
    assert_eq!(cfg["token_indices"], serde_json::json!(new_ids));
    let reloaded = Adapter::load(out.path(), &resized).unwrap();
    assert_eq!(
        values(reloaded.token_rows.unwrap()),
        values(adapter.token_rows.unwrap())
    );
}

#[test]
fn trainable_tokens_configs_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        std::fs::write(dir.path().join("adapter_config.json"), text).unwrap();
        LoraConfig::from_file(dir.path().join("adapter_config.json"))
    };
    let err = write(r#"{"peft_type":"TRAINABLE_TOKENS","token_indices":[]}"#).unwrap_err();
    assert!(err.to_string().contains("token_indices"), "{err}");
    let err =
        write(r#"{"peft_type":"TRAINABLE_TOKENS","token_indices":[1],"target_modules":"lm_head"}"#)
            .unwrap_err();
    assert!(err.to_string().contains("target_modules"), "{err}");
    let err = write(r#"{"peft_type":"TRAINABLE_TOKENS","token_indices":[1],"init_weights":false}"#)
        .unwrap_err();
    assert!(err.to_string().contains("init_weights"), "{err}");
    let ok = write(r#"{"peft_type":"TRAINABLE_TOKENS","token_indices":[1,2],"target_modules":["embed_tokens"]}"#)
        .unwrap();
    assert!(ok.is_trainable_tokens_only());
    // A LoRA config with no targets but token rows is the same thing, written as PEFT would.
    let lora = write(r#"{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":[],"trainable_token_indices":[3]}"#)
        .unwrap();
    assert!(lora.is_trainable_tokens_only());
    let json: serde_json::Value = serde_json::from_str(&lora.to_json().unwrap()).unwrap();
    assert_eq!(json["peft_type"], "TRAINABLE_TOKENS");
    assert_eq!(json["token_indices"], serde_json::json!([3]));
    assert!(json.get("r").is_none());
}
