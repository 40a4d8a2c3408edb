//! Helpers shared by kwx-core's integration tests.
#![allow(dead_code, unreachable_pub)]

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use kwx_core::{Gemma, RmsNorm};

/// Sets every RMSNorm weight of `model` (layer norms, q/k norms, the final norm) to uniform
/// values in [0.5, 1.5), so a skipped norm, a wrong row or a skipped scale cannot hide behind
/// weights of one.
pub fn randomise_norms(model: &mut Gemma, device: &Device) {
    let randomise = |norm: &mut RmsNorm| {
        let [d] = norm.weight.val().dims();
        norm.weight =
            Param::from_tensor(Tensor::random([d], Distribution::Uniform(0.5, 1.5), device));
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
}
