//! The cross-entropy of the output head at chosen positions, fused: the loss a language model
//! trains on, without the `[rows × vocab]` autodiff graph.
//!
//! Composed from tensor operations, `−Σ log_softmax(h·Eᵀ)[t]` keeps the logits and every
//! intermediate of the log-softmax (the shifted logits, their exponentials, the gradient of
//! each) alive from the forward pass to the backward pass: for Gemma 3's 262,144-entry
//! vocabulary and 1,024 label positions, about 1 GiB each, and on the CPU backend each
//! element-wise step is a pass of its own. [`Gemma::label_nll`] instead computes the head on the
//! backend directly, a block of rows at a time: logits, the per-row loss and at once the logits'
//! gradient `softmax − onehot` ([`fused::cross_entropy`](crate::fused::cross_entropy): on the
//! CPU one kernel that writes the gradient over the logits), pushed through the head's
//! products. What it hands to autodiff is a scalar whose value is the loss and whose gradient —
//! with respect to the hidden states and whichever head weights train — is the loss's. Only one
//! block's logits exist at a time.

use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::fused;
use crate::model::Gemma;

/// Logit elements per block of rows (256 MiB of f32 logits): Gemma 3 270M's vocabulary makes
/// that 256 rows per block.
const BLOCK_ELEMENTS: usize = 1 << 26;

/// The loss of [`Gemma::label_nll_scaled`].
#[derive(Debug, Clone)]
pub struct LabelLoss {
    /// The summed negative log-likelihood.
    pub sum: f64,
    /// On an autodiff device, a scalar whose gradient is `grad_scale` times the loss's (its
    /// value means nothing); call `backward` on it.
    pub scaled: Option<Tensor<1>>,
}

/// What the head reads, outside the autodiff graph.
#[allow(clippy::large_enum_variant)] // one per call
enum Head {
    /// `logits = h · Eᵀ` (the embedding, tied), with `rows` replacing some of `E`'s rows.
    Tied {
        /// `[vocab, hidden]` in the product type.
        embed: Tensor<2>,
        /// Whether `E` itself trains (full fine-tuning).
        embed_trains: bool,
        rows: Option<Rows>,
    },
    /// `logits = h · W` (a separate `lm_head`, `[hidden, vocab]`).
    Untied {
        /// `[hidden, vocab]` in the product type.
        weight: Tensor<2>,
        trains: bool,
    },
}

/// Replaced embedding rows ([`TokenRows`](crate::TokenRows)) as the head sees them.
struct Rows {
    /// The replaced ids as an index.
    idx: Tensor<1, Int>,
    /// The new rows, `[k, hidden]`, in the product type.
    values: Tensor<2>,
    trains: bool,
}

impl Gemma {
    /// The summed negative log-likelihood of `targets` under the next-token distributions of
    /// `hidden`'s rows: `−Σᵢ log softmax(project(hᵢ))[tᵢ]`, with [`project`](Gemma::project)'s
    /// head exactly (tied or separate, replaced token rows, the final softcap, the precision's
    /// casts), as a `[1]` tensor.
    ///
    /// On an autodiff device the result carries the loss's gradient with respect to `hidden` and
    /// to the head's trainable weights (the tied embedding under full fine-tuning, a separate
    /// `lm_head`, replaced token rows), computed as described in the [module docs](self): no
    /// `[rows × vocab]` tensor outlives a block of rows. A `lm_head` carrying a LoRA adapter or
    /// a bias takes [`label_nll_unfused`](Gemma::label_nll_unfused).
    ///
    /// # Shapes
    /// `hidden: [n, hidden_size]`, `targets: n` ids → `[1]`
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `targets` and `hidden` disagree in length, or a target is
    /// outside the vocabulary.
    pub fn label_nll(&self, hidden: Tensor<2>, targets: &[u32]) -> Result<Tensor<1>> {
        let device = hidden.device();
        let loss = self.label_nll_scaled(hidden, targets, 1.0)?;
        let value = Tensor::<1>::from_data(TensorData::new(vec![loss.sum as f32], [1]), &device);
        Ok(match loss.scaled {
            // value + (s − s) = value, with s's gradient.
            Some(s) => value + (s.clone() - s.detach()),
            None => value,
        })
    }

    /// [`label_nll`](Gemma::label_nll) for a caller that scales the loss before `backward` (a
    /// trainer: 1 / label tokens, times a loss scale): the value, and a scalar whose gradient is
    /// `grad_scale` times the loss's. Under a half precision the logits' gradient enters the
    /// head's products already scaled, as it would through autodiff, so f16's loss scaling
    /// protects small gradients here too; and the value stays the loss even when those products
    /// overflow (the gradient then is not finite, which is what a loss scaler watches for).
    ///
    /// # Errors
    /// As [`label_nll`](Gemma::label_nll), and [`Error::InvalidInput`] for a `grad_scale` that is
    /// not finite and positive.
    pub fn label_nll_scaled(
        &self,
        hidden: Tensor<2>,
        targets: &[u32],
        grad_scale: f64,
    ) -> Result<LabelLoss> {
        let block_rows = (BLOCK_ELEMENTS / self.config().vocab_size.max(1)).max(1);
        self.label_nll_in_blocks(hidden, targets, grad_scale, block_rows, false)
    }

    /// [`label_nll_scaled`](Gemma::label_nll_scaled), `block_rows` rows at a time; `composed`
    /// takes [`fused::composed::cross_entropy`](crate::fused::composed::cross_entropy) where
    /// the kernel would run (the tests compare the two).
    fn label_nll_in_blocks(
        &self,
        hidden: Tensor<2>,
        targets: &[u32],
        grad_scale: f64,
        block: usize,
        composed: bool,
    ) -> Result<LabelLoss> {
        let [n, _] = hidden.dims();
        self.check_targets(n, targets)?;
        if !(grad_scale.is_finite() && grad_scale > 0.0) {
            return Err(Error::InvalidInput(format!(
                "label_nll: grad_scale {grad_scale} is not a finite positive number"
            )));
        }
        if n == 0 {
            return Ok(LabelLoss {
                sum: 0.0,
                scaled: None,
            });
        }
        let Some(head) = self.fused_head() else {
            let loss = self.label_nll_unfused(hidden, targets)?;
            let sum = f64::from(floats(loss.clone())?[0]);
            let scaled = loss.is_autodiff().then(|| loss.mul_scalar(grad_scale));
            return Ok(LabelLoss { sum, scaled });
        };
        let dtype = self.precision().dtype();
        let half = self.precision().is_half();
        let softcap = self.config().final_logit_softcapping;
        let backward = hidden.is_autodiff();
        let x = hidden.clone().inner();

        let mut loss = 0.0f64;
        let mut grad_x = Vec::new();
        let mut grad_embed: Option<Tensor<2>> = None;
        let mut grad_weight: Option<Tensor<2>> = None;
        let mut grad_rows: Option<Tensor<2>> = None;
        for start in (0..n).step_by(block) {
            let c = block.min(n - start);
            let xc = x.clone().narrow(0, start, c).cast(dtype);

            // Forward, as `project` computes it.
            let logits = match &head {
                // h · Eᵀ (the embedding read transposed in place) gives row-major logits: the
                // softmax over a row then reads contiguous memory. `(E · hᵀ)ᵀ`, as `project`
                // computes it, is a few percent faster as a product, but the softmax over its
                // strided rows took 2.6× as long (Gemma 3 270M, 256 rows: 943 vs 358 ms).
                Head::Tied { embed, .. } => xc.clone().matmul(embed.clone().transpose()),
                Head::Untied { weight, .. } => xc.clone().matmul(weight.clone()),
            };
            let logits = match &head {
                Head::Tied {
                    rows: Some(rows), ..
                } => {
                    let new = xc.clone().matmul(rows.values.clone().transpose());
                    let old = logits.clone().select(1, rows.idx.clone());
                    logits.select_assign(1, rows.idx.clone(), new - old, IndexingUpdateOp::Add)
                }
                _ => logits,
            };
            // Half products take the gradient scaled (small entries survive); f32 ones scale
            // their smaller results instead.
            let g_scale = backward.then_some(if half { grad_scale } else { 1.0 });
            let block_targets = &targets[start..start + c];
            let cross_entropy = if composed {
                fused::composed::cross_entropy
            } else {
                fused::cross_entropy
            };
            let ce = cross_entropy(
                logits.cast(FloatDType::F32),
                block_targets,
                softcap,
                g_scale,
            )?;
            loss += ce.losses.iter().sum::<f64>();
            // The logits' gradient: (softmax − onehot) times the softcap's derivative.
            let Some(g) = ce.grad else {
                continue;
            };
            let g = g.cast(dtype);
            match &head {
                Head::Tied {
                    embed,
                    embed_trains,
                    rows,
                } => {
                    // The replaced columns' gradient goes to the new rows, not to `E`.
                    let (g, g_rows) = match rows {
                        Some(rows) => {
                            let g_rows = g.clone().select(1, rows.idx.clone());
                            let g = g.select_assign(
                                1,
                                rows.idx.clone(),
                                g_rows.clone().neg(),
                                IndexingUpdateOp::Add,
                            );
                            (g, Some(g_rows))
                        }
                        None => (g, None),
                    };
                    let mut gx = g.clone().matmul(embed.clone());
                    if let (Some(rows), Some(g_rows)) = (rows, &g_rows) {
                        gx = gx + g_rows.clone().matmul(rows.values.clone());
                        if rows.trains {
                            let gv = g_rows
                                .clone()
                                .transpose()
                                .matmul(xc.clone())
                                .cast(FloatDType::F32);
                            grad_rows = Some(accumulate(grad_rows, gv));
                        }
                    }
                    if *embed_trains {
                        let ge = g.transpose().matmul(xc).cast(FloatDType::F32);
                        grad_embed = Some(accumulate(grad_embed, ge));
                    }
                    grad_x.push(gx.cast(FloatDType::F32));
                }
                Head::Untied { weight, trains } => {
                    grad_x.push(
                        g.clone()
                            .matmul(weight.clone().transpose())
                            .cast(FloatDType::F32),
                    );
                    if *trains {
                        let gw = xc.transpose().matmul(g).cast(FloatDType::F32);
                        grad_weight = Some(accumulate(grad_weight, gw));
                    }
                }
            }
        }

        if !backward {
            return Ok(LabelLoss {
                sum: loss,
                scaled: None,
            });
        }
        // Σ param ⊙ grad (grad a constant) has gradient `grad` with respect to `param`.
        let rescale = if half { 1.0 } else { grad_scale };
        let surrogate = |param: Tensor<2>, grad: Tensor<2>| {
            let grad = Tensor::from_inner(grad);
            let grad = if rescale != 1.0 {
                grad.mul_scalar(rescale)
            } else {
                grad
            };
            (param * grad).sum()
        };
        let mut s = surrogate(hidden, Tensor::cat(grad_x, 0));
        if let Some(g) = grad_embed {
            s = s + surrogate(self.tied_embedding(), g);
        }
        if let (Some(g), Some(head)) = (grad_weight, &self.lm_head) {
            s = s + surrogate(head.weight.val(), g);
        }
        if let (Some(g), Some(rows)) = (
            grad_rows,
            self.embed_tokens
                .weight
                .reparameterization::<crate::TokenRows>(),
        ) {
            s = s + surrogate(rows.values.val(), g);
        }
        Ok(LabelLoss {
            sum: loss,
            scaled: Some(s),
        })
    }

    /// [`label_nll`](Gemma::label_nll) composed from tensor operations through the autodiff
    /// graph: [`project`](Gemma::project), log-softmax, the targets' entries. The reference the
    /// fused path is tested against, and the path of a `lm_head` with an adapter or a bias.
    ///
    /// # Errors
    /// As [`label_nll`](Gemma::label_nll).
    pub fn label_nll_unfused(&self, hidden: Tensor<2>, targets: &[u32]) -> Result<Tensor<1>> {
        let [n, h] = hidden.dims();
        self.check_targets(n, targets)?;
        let device = hidden.device();
        if n == 0 {
            return Ok(Tensor::zeros([1], &device));
        }
        let vocab = self.config().vocab_size;
        let logits = self.project(hidden.reshape([1, n, h])).reshape([n, vocab]);
        let logp = log_softmax(logits, 1);
        let tgt: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
        let tgt = Tensor::<2, Int>::from_data(TensorData::new(tgt, [n, 1]), &device);
        Ok(logp.gather(1, tgt).sum().neg())
    }

    fn check_targets(&self, n: usize, targets: &[u32]) -> Result<()> {
        check_target_ids(
            "label_nll",
            "hidden rows",
            n,
            self.config().vocab_size,
            targets,
        )
    }

    /// The head as [`label_nll`](Gemma::label_nll) computes it, or `None` for a `lm_head` with
    /// an adapter or a bias.
    fn fused_head(&self) -> Option<Head> {
        let dtype = self.precision().dtype();
        match &self.lm_head {
            Some(head) => {
                if head.weight.adapter().is_some() || head.bias.is_some() {
                    return None;
                }
                let weight = head.weight.val();
                Some(Head::Untied {
                    trains: weight.is_require_grad(),
                    weight: weight.inner().cast(dtype),
                })
            }
            None => {
                let embed = self.tied_embedding();
                let rows = self
                    .embed_tokens
                    .weight
                    .reparameterization::<crate::TokenRows>()
                    .filter(|r| !r.ids.is_empty())
                    .map(|r| {
                        let values = r.values.val();
                        let ids: Vec<i64> = r.ids.iter().map(|&i| i64::from(i)).collect();
                        let k = ids.len();
                        Rows {
                            idx: Tensor::from_data(TensorData::new(ids, [k]), &embed.device())
                                .inner(),
                            trains: values.is_require_grad(),
                            values: values.inner().cast(dtype),
                        }
                    });
                Some(Head::Tied {
                    embed_trains: embed.is_require_grad(),
                    embed: embed.inner().cast(dtype),
                    rows,
                })
            }
        }
    }
}

impl Gemma {
    /// The tied output matrix as the head multiplies by it: the frozen `E` when token rows
    /// replace some of its rows (they enter as columns of their own), `E` itself otherwise.
    fn tied_embedding(&self) -> Tensor<2> {
        let param = &self.embed_tokens.weight;
        if param.reparameterization::<crate::TokenRows>().is_some() {
            param.base()
        } else {
            param.val()
        }
    }
}

/// That `targets` holds one id per row (`n` rows, called `rows` in the message) and each id is
/// below `vocab`; errors name `op`.
pub(crate) fn check_target_ids(
    op: &str,
    rows: &str,
    n: usize,
    vocab: usize,
    targets: &[u32],
) -> Result<()> {
    if targets.len() != n {
        return Err(Error::InvalidInput(format!(
            "{op}: {} targets for {n} {rows}",
            targets.len()
        )));
    }
    if let Some((i, t)) = targets
        .iter()
        .enumerate()
        .find(|(_, t)| **t as usize >= vocab)
    {
        return Err(Error::InvalidInput(format!(
            "{op}: target {i} is token {t}, outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// `Σ` of `next` into `acc`.
fn accumulate(acc: Option<Tensor<2>>, next: Tensor<2>) -> Tensor<2> {
    match acc {
        Some(acc) => acc + next,
        None => next,
    }
}

/// The values of a small tensor.
pub(crate) fn floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test helpers
    use burn::module::{Module, Param};
    use burn::nn::Linear;
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::config::gemma3_layer_types;
    use crate::{Family, GemmaConfig, OnWeight, Precision, Rope, TokenRows};

    const VOCAB: usize = 97;
    const HIDDEN: usize = 16;

    /// The head variants `label_nll` distinguishes.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Setup {
        /// Tied, frozen: only the hidden states take a gradient (LoRA).
        Frozen,
        /// Tied, trained (full fine-tuning).
        Full,
        /// Tied, frozen, with trained replacement rows (PEFT's `trainable_token_indices`).
        Rows,
        /// A separate, trained `lm_head`.
        Untied,
    }

    fn model(setup: Setup, softcap: Option<f64>, precision: Precision, device: &Device) -> Gemma {
        let m = GemmaConfig::new(
            Family::Gemma3,
            VOCAB,
            HIDDEN,
            32,
            1,
            2,
            1,
            8,
            8.0,
            gemma3_layer_types(1, 2),
            Rope::new(1_000_000.0),
            Rope::new(10_000.0),
        )
        .with_sliding_window(Some(4))
        .with_final_logit_softcapping(softcap)
        .init(device)
        .unwrap();
        let mut m = match setup {
            Setup::Full => m,
            _ => m.freeze(),
        };
        match setup {
            Setup::Rows => {
                let values =
                    Tensor::<2>::random([4, HIDDEN], Distribution::Normal(0.0, 1.0), device);
                let rows = TokenRows {
                    values: Param::from_tensor(values.require_grad()),
                    ids: vec![3, 40, 41, 96],
                };
                m.embed_tokens = m.embed_tokens.apply_reparameterization(OnWeight::new(rows));
            }
            Setup::Untied => {
                let w =
                    Tensor::<2>::random([HIDDEN, VOCAB], Distribution::Normal(0.0, 0.5), device);
                m.lm_head = Some(Linear {
                    weight: Param::from_tensor(w.require_grad()),
                    bias: None,
                });
            }
            Setup::Frozen | Setup::Full => {}
        }
        m.with_precision(precision).unwrap()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// Largest difference relative to the largest magnitude of `want`.
    fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "an all-zero reference");
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
            / scale
    }

    /// Fused in blocks of 3 rows (four blocks, the last short) against the composed reference:
    /// the value, and the gradients of the hidden states and of every trained head weight,
    /// scaled by `grad_scale` as the trainer asks.
    fn check(setup: Setup, softcap: Option<f64>, precision: Precision, spread: f64, tol: f32) {
        let device = Device::default().autodiff();
        device.seed(7);
        let m = model(setup, softcap, precision, &device);
        let n = 10;
        let hidden = Tensor::<2>::random([n, HIDDEN], Distribution::Normal(0.0, spread), &device)
            .require_grad();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 41 + 3) % VOCAB as u32).collect();

        for composed in [false, true] {
            // Its own reference each time: a backward pass consumes the graph.
            let reference = m.label_nll_unfused(hidden.clone(), &targets).unwrap();
            check_path(
                &m, setup, softcap, precision, tol, &hidden, &targets, reference, composed,
            );
        }
    }

    /// One path of [`check`]: the cross-entropy kernel (`composed` false) or its composed form.
    #[allow(clippy::too_many_arguments)]
    fn check_path(
        m: &Gemma,
        setup: Setup,
        softcap: Option<f64>,
        precision: Precision,
        tol: f32,
        hidden: &Tensor<2>,
        targets: &[u32],
        reference: Tensor<1>,
        composed: bool,
    ) {
        let grad_scale = 0.25;
        let fused = m
            .label_nll_in_blocks(hidden.clone(), targets, grad_scale, 3, composed)
            .unwrap();
        let want = f64::from(values(reference.clone())[0]);
        assert!(
            (fused.sum - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{setup:?} {precision:?} composed {composed}: loss {} vs {want}",
            fused.sum
        );
        let g_fused = fused.scaled.unwrap().backward();
        let g_ref = reference.mul_scalar(grad_scale).backward();
        let mut params: Vec<(&str, Tensor<2>)> = vec![("hidden", hidden.clone())];
        match setup {
            Setup::Frozen => {}
            Setup::Full => params.push(("embedding", m.embed_tokens.weight.val())),
            Setup::Rows => {
                let rows = m
                    .embed_tokens
                    .weight
                    .reparameterization::<TokenRows>()
                    .unwrap();
                params.push(("rows", rows.values.val()));
            }
            Setup::Untied => params.push(("lm_head", m.lm_head.as_ref().unwrap().weight.val())),
        }
        for (name, p) in params {
            let got = values(
                p.grad(&g_fused)
                    .unwrap_or_else(|| panic!("{name}: no gradient")),
            );
            let want = values(p.grad(&g_ref).unwrap());
            let d = rel_diff(&got, &want);
            assert!(
                d <= tol,
                "{setup:?} {softcap:?} {precision:?} composed {composed}: {name} gradient off by {d}"
            );
        }
    }

    #[test]
    fn fused_head_matches_the_composed_loss_and_its_gradients() {
        for setup in [Setup::Frozen, Setup::Full, Setup::Rows, Setup::Untied] {
            for softcap in [None, Some(3.0)] {
                check(setup, softcap, Precision::F32, 1.0, 1e-5);
            }
        }
    }

    #[test]
    fn fused_head_matches_in_half_precision() {
        // The logits' gradient is rounded to the half type on both paths; the composed one
        // computes it in another order, so an entry may round one step apart.
        for precision in [Precision::Bf16, Precision::F16] {
            for setup in [Setup::Frozen, Setup::Full, Setup::Rows, Setup::Untied] {
                check(setup, Some(3.0), precision, 1.0, 2e-2);
                check(setup, None, precision, 1.0, 2e-2);
            }
        }
    }

    /// Hidden states large enough that targets fall 70+ nats below the best logit, where
    /// `−ln softmax` would underflow: the kernel's `m + ln S − z[t]` and the composed path's
    /// recomputation from the logits both stay exact.
    #[test]
    fn fused_head_keeps_far_targets_exact() {
        let device = Device::default();
        device.seed(3);
        let m = model(Setup::Frozen, None, Precision::F32, &device);
        let hidden = Tensor::<2>::random([10, HIDDEN], Distribution::Normal(0.0, 400.0), &device);
        let targets: Vec<u32> = (0..10).map(|i| (i * 13 + 5) % VOCAB as u32).collect();
        let logits = values(m.project(hidden.clone().reshape([1, 10, HIDDEN])));
        let mut want = 0.0f64;
        let mut far = 0;
        for (r, &t) in targets.iter().enumerate() {
            let row = &logits[r * VOCAB..(r + 1) * VOCAB];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&z| (f64::from(z) - max).exp())
                    .sum::<f64>()
                    .ln();
            let nll = lse - f64::from(row[t as usize]);
            far += usize::from(nll > 75.0);
            want += nll;
        }
        assert!((2..10).contains(&far), "{far} rows beyond underflow");
        for composed in [false, true] {
            let got = m
                .label_nll_in_blocks(hidden.clone(), &targets, 1.0, 4, composed)
                .unwrap();
            assert!(got.scaled.is_none(), "no gradient outside autodiff");
            assert!(
                (got.sum - want).abs() <= 1e-5 * want,
                "composed {composed}: {} vs {want}",
                got.sum
            );
        }
    }

    /// A `lm_head` with a LoRA adapter is computed through autodiff: the same value, and the
    /// adapter's gradient scaled by `grad_scale`.
    #[test]
    fn adapted_lm_head_takes_the_composed_path() {
        let device = Device::default().autodiff();
        device.seed(11);
        let mut m = model(Setup::Untied, None, Precision::F32, &device);
        let head = m.lm_head.take().unwrap();
        let frozen = Linear {
            weight: Param::from_tensor(head.weight.val().detach()),
            bias: None,
        };
        let random = |shape: [usize; 2]| {
            Param::from_tensor(
                Tensor::<2>::random(shape, Distribution::Normal(0.0, 0.5), &device).require_grad(),
            )
        };
        let adapter = burn::module::LoraAdapter {
            a: random([HIDDEN, 4]),
            b: random([4, VOCAB]),
            scale: 2.0,
        };
        m.lm_head = Some(frozen.apply_reparameterization(OnWeight::new(adapter)));
        let hidden = Tensor::<2>::random([6, HIDDEN], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let targets = [1u32, 5, 9, 96, 0, 40];
        let got = m.label_nll_scaled(hidden.clone(), &targets, 0.5).unwrap();
        let want = m.label_nll_unfused(hidden.clone(), &targets).unwrap();
        assert_eq!(got.sum as f32, values(want.clone())[0]);
        let g_got = got.scaled.unwrap().backward();
        let g_want = want.mul_scalar(0.5).backward();
        let b = m
            .lm_head
            .as_ref()
            .unwrap()
            .weight
            .adapter()
            .unwrap()
            .b
            .val();
        let (x, y) = (
            values(b.grad(&g_got).unwrap()),
            values(b.grad(&g_want).unwrap()),
        );
        assert!(y.iter().any(|v| v.abs() > 1e-3));
        assert_eq!(x, y);
    }

    #[test]
    fn bad_targets_and_scales_are_errors() {
        let device = Device::default();
        let m = model(Setup::Frozen, None, Precision::F32, &device);
        let hidden = Tensor::<2>::zeros([2, HIDDEN], &device);
        let err = m.label_nll(hidden.clone(), &[1]).unwrap_err().to_string();
        assert!(err.contains("1 targets for 2 hidden rows"), "{err}");
        let err = m
            .label_nll(hidden.clone(), &[1, VOCAB as u32])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target 1 is token 97, outside the vocabulary of 97"),
            "{err}"
        );
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                m.label_nll_scaled(hidden.clone(), &[1, 2], s).is_err(),
                "{s}"
            );
        }
        let empty = m
            .label_nll(Tensor::zeros([0, HIDDEN], &device), &[])
            .unwrap();
        assert_eq!(values(empty), vec![0.0]);
    }
}
