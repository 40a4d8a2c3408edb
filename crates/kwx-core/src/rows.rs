//! Replaced embedding rows: a few rows of the (tied) embedding matrix trained on their own, the
//! rest frozen — PEFT's `trainable_token_indices`, for new domain tokens.
//!
//! [`TokenRows`] is a burn [`Reparameterization`] of the embedding weight, `E'[ids] = values`,
//! so `Param::val()`, merging and saving see the replaced matrix. The model never forms `E'`:
//! the lookup reads the frozen `E` and swaps in the replaced rows where the input holds their
//! ids, and the tied output head computes `h·Eᵀ` and swaps in the columns `h·valuesᵀ`. Training
//! a handful of rows then costs a handful of columns, where `E'` would cost a copy of the whole
//! matrix per forward and a dense `[vocab, hidden]` gradient per backward (Gemma 3: 262,144 ×
//! 640).

use std::collections::HashMap;

use burn::module::{Module, Param, Reparameterization};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

/// Trainable replacement rows of the embedding matrix (PEFT's `trainable_token_indices`):
/// `E'[ids] = values`, every other row frozen. The output head reads the same `E'`, so the tie
/// between input and output embeddings holds.
#[derive(Module, Debug)]
pub struct TokenRows {
    /// The new rows, `[n, hidden]` (trainable).
    pub values: Param<Tensor<2>>,
    /// The rows they replace (distinct ids).
    #[module(skip)]
    pub ids: Vec<u32>,
}

impl Reparameterization for TokenRows {
    const NAME: &'static str = "token_rows";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        if D != 2 || self.ids.is_empty() {
            return base;
        }
        let shape = base.shape();
        let dims = base.dims();
        let w: Tensor<2> = base.reshape([dims[0], dims[1]]);
        let idx = self.index(&w.device());
        let old = w.clone().select(0, idx.clone());
        let values = self.values.val().cast(w.dtype());
        w.select_assign(0, idx, values - old, IndexingUpdateOp::Add)
            .reshape(shape)
    }
}

impl TokenRows {
    /// The replaced ids as an index tensor.
    fn index(&self, device: &burn::tensor::Device) -> Tensor<1, Int> {
        ids_tensor(self.ids.iter().map(|&i| i64::from(i)).collect(), device)
    }

    /// Embeddings of `flat` (the ids of `[batch, seq]`, row-major) looked up in the frozen
    /// `base`, with the replaced rows swapped in.
    ///
    /// # Shapes
    /// `base: [vocab, hidden]`, `ids: [batch, seq]` → `[batch, seq, hidden]`
    pub(crate) fn embed(&self, base: Tensor<2>, ids: Tensor<2, Int>, flat: &[u32]) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let hidden = base.dims()[1];
        let x = burn::tensor::module::embedding(base, ids);
        let row_of: HashMap<u32, i64> = self
            .ids
            .iter()
            .enumerate()
            .map(|(r, &id)| (id, r as i64))
            .collect();
        let (positions, rows): (Vec<i64>, Vec<i64>) = flat
            .iter()
            .enumerate()
            .filter_map(|(p, id)| row_of.get(id).map(|&r| (p as i64, r)))
            .unzip();
        if positions.is_empty() {
            return x;
        }
        let device = x.device();
        let at = ids_tensor(positions, &device);
        let flat_x = x.reshape([batch * seq, hidden]);
        let old = flat_x.clone().select(0, at.clone());
        let new = self
            .values
            .val()
            .cast(old.dtype())
            .select(0, ids_tensor(rows, &device));
        flat_x
            .select_assign(0, at, new - old, IndexingUpdateOp::Add)
            .reshape([batch, seq, hidden])
    }

    /// Logits `h·Eᵀ` computed on the frozen matrix with the replaced rows' columns swapped in.
    ///
    /// # Shapes
    /// `hidden: [n, hidden]`, `logits: [n, vocab]` (of the frozen matrix) → `[n, vocab]`
    pub(crate) fn replace_columns(&self, hidden: Tensor<2>, logits: Tensor<2>) -> Tensor<2> {
        if self.ids.is_empty() {
            return logits;
        }
        let idx = self.index(&logits.device());
        let new = hidden.matmul(self.values.val().cast(logits.dtype()).transpose());
        let old = logits.clone().select(1, idx.clone());
        logits.select_assign(1, idx, new - old, IndexingUpdateOp::Add)
    }
}

fn ids_tensor(ids: Vec<i64>, device: &burn::tensor::Device) -> Tensor<1, Int> {
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [n]), device)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test helpers
    use burn::module::ParamId;
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::config::gemma3_layer_types;
    use crate::{Family, Gemma, GemmaConfig, Rope};

    fn tiny(device: &Device) -> Gemma {
        GemmaConfig::new(
            Family::Gemma3,
            64,
            16,
            32,
            2,
            2,
            1,
            8,
            8.0,
            gemma3_layer_types(2, 2),
            Rope::new(1_000_000.0),
            Rope::new(10_000.0),
        )
        .with_sliding_window(Some(4))
        .with_final_logit_softcapping(Some(3.0))
        .init(device)
        .unwrap()
    }

    /// The factored lookup and head against the composed matrix `E'` (what `val()` gives):
    /// logits and the gradient of the replaced rows agree, ids replaced several times in the
    /// input and ids absent from it included.
    #[test]
    fn replaced_rows_compute_as_the_composed_matrix() {
        let device = Device::default().autodiff();
        let base = tiny(&device).freeze();
        let ids = vec![5u32, 17, 40, 63];
        let values = Param::from_tensor(
            Tensor::<2>::random([4, 16], Distribution::Normal(0.0, 1.0), &device).require_grad(),
        );
        let rows = TokenRows {
            values: values.clone(),
            ids: ids.clone(),
        };
        let composed = rows.apply(base.embed_tokens.weight.val());
        let mut reference = base.clone();
        reference.embed_tokens.weight = Param::initialized(ParamId::new(), composed);
        let mut factored = base;
        factored.embed_tokens = factored
            .embed_tokens
            .apply_reparameterization(crate::OnWeight::new(rows));

        let tokens = vec![vec![2u32, 5, 9, 17, 5], vec![40, 1, 3, 17, 8]];
        let weights = Tensor::<3>::random([2, 5, 64], Distribution::Normal(0.0, 1.0), &device);
        let run = |m: &Gemma| {
            let mut cache = crate::KvCache::disabled(m.layers.len());
            let logits = m.project(m.forward_hidden(&tokens, None, &mut cache).unwrap());
            let loss = (logits.clone() * weights.clone()).sum();
            let grads = loss.backward();
            let g: Vec<f32> = values
                .val()
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap();
            let l: Vec<f32> = logits.into_data().try_to_vec().unwrap();
            (l, g)
        };
        let (l_ref, g_ref) = run(&reference);
        let (l_fact, g_fact) = run(&factored);
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(
            diff(&l_ref, &l_fact) < 1e-5,
            "logits {}",
            diff(&l_ref, &l_fact)
        );
        assert!(g_ref.iter().any(|&g| g.abs() > 1e-3));
        // id 63 never occurs in the input but its column is still a logit.
        assert!(g_ref[3 * 16..].iter().any(|&g| g.abs() > 1e-4));
        assert!(
            diff(&g_ref, &g_fact) < 1e-4,
            "gradients {}",
            diff(&g_ref, &g_fact)
        );
    }
}
