//! Fused kernels for the CPU backend: the gated GELU of Gemma's MLP, RMSNorm and RoPE, each one
//! pass over memory forward and one backward, split across rayon's threads, and grouped-query
//! attention for training as one autodiff node (its matrix products are flex's).
//!
//! Composed from tensor operations, `gelu_tanh(gate) · up` is seven element-wise passes forward
//! and more backward, each allocating its output, and on burn's CPU backend (flex) every
//! element-wise operation below a few million elements runs on one thread, with a scalar `exp`.
//! A Gemma decoder layer has six RMSNorms (four around the blocks, one on the queries, one on the
//! keys) and two RoPEs; on small models (the 5.9M-parameter benchmark Gemma: 1,024 tokens of 256
//! hidden and 1,024 intermediate values per step) those passes were a large part of a training
//! step beside the matrix products.
//!
//! The kernels are a burn [backend extension](burn::backend::backend_extension): [`FusedOps`]
//! for flex, and for `Autodiff<flex>` a node whose backward pass is the matching fused kernel of
//! [`FusedBackward`]. [`gelu_tanh_mul`], [`rms_norm`] and [`rope`] take them for f32 tensors on
//! the flex device and compose the same function from tensor operations everywhere else (GPU
//! backends fuse element-wise chains on their own); [`attention`] takes its kernel for f32
//! tensors on an autodiff flex device and otherwise leaves attention to burn. Both paths are
//! tested against each other, values and gradients.

use burn::tensor::{Bool, DType, Device, Tensor};

use crate::error::{Error, Result};

/// `gelu_pytorch_tanh(gate) · up`, element-wise.
///
/// # Shapes
/// `gate, up: [...]` (equal) → `[...]`
pub fn gelu_tanh_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if takes_kernel(&gate) && up.dtype() == DType::F32 && gate.shape() == up.shape() {
        return kernel::gelu_tanh_mul(gate, up);
    }
    composed::gelu_tanh(gate) * up
}

/// Gemma's RMSNorm over the last dimension, `x · rsqrt(mean(x²) + eps) · scale`.
///
/// # Shapes
/// `x: [..., d]`, `scale: [d]` → `[..., d]`
pub fn rms_norm<const D: usize>(x: Tensor<D>, scale: Tensor<1>, eps: f64) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if takes_kernel(&x) && scale.dtype() == DType::F32 && x.dims()[D - 1] == scale.dims()[0] {
        return kernel::rms_norm(x, scale, eps);
    }
    composed::rms_norm(x, scale, eps)
}

/// Rotary position embedding, half-split (`rotate_half(x) = [−x₂, x₁]`):
/// `x · cos + rotate_half(x) · sin`, the tables broadcast over the heads.
///
/// # Shapes
/// `x: [batch, seq, heads, head_dim]`, `cos, sin: [batch, seq, 1, head_dim]` → as `x`
pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if takes_kernel(&x) && cos.dtype() == DType::F32 && sin.dtype() == DType::F32 {
        let [b, s, _, hd] = x.dims();
        if cos.dims() == [b, s, 1, hd] && sin.dims() == [b, s, 1, hd] && hd % 2 == 0 {
            return kernel::rope(x, cos.clone(), sin.clone());
        }
    }
    composed::rope(x, cos, sin)
}

/// Scaled dot-product attention for training, with grouped key/value heads and a boolean
/// mask (`true` hides a key): `softmax(scale · q·kᵀ, masked) · v`.
///
/// On an autodiff flex device with f32 tensors and no logit softcap this is one node: the
/// forward pass keeps the softmax probabilities, the backward pass is two products for the
/// values and probabilities, one fused pass for the softmax's gradient, and two products for
/// queries and keys; query heads that share a key/value head are one matrix of rows, so the
/// keys and values are never repeated per head. Elsewhere `None` (the caller takes burn's
/// attention; inference keeps the backend's own kernel).
///
/// # Shapes
/// `q: [batch, heads, seq, head_dim]`, `k, v: [batch, kv_heads, keys, head_dim]`,
/// `mask: [batch, 1, seq, keys]` → `[batch, heads, seq, head_dim]`
pub fn attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    mask: Option<&Tensor<4, Bool>>,
    scale: f64,
    softcap: Option<f64>,
) -> Option<Tensor<4>> {
    #[cfg(feature = "flex")]
    {
        let [b, heads, seq, hd] = q.dims();
        let [kb, kv_heads, keys, khd] = k.dims();
        let applies = takes_kernel(q)
            && q.device().is_autodiff()
            && softcap.is_none()
            && k.dtype() == DType::F32
            && v.dtype() == DType::F32
            && kb == b
            && khd == hd
            && v.dims() == k.dims()
            && kv_heads > 0
            && heads % kv_heads == 0
            && mask.is_none_or(|m| m.dims() == [b, 1, seq, keys]);
        if applies {
            let bias = match mask {
                Some(m) => Tensor::<4>::zeros([b, 1, seq, keys], &q.device())
                    .mask_fill(m.clone(), f32::NEG_INFINITY),
                None => Tensor::<4>::zeros([b, 1, seq, keys], &q.device()),
            };
            return Some(kernel::attention(
                q.clone(),
                k.clone(),
                v.clone(),
                bias,
                scale,
            ));
        }
    }
    let _ = (q, k, v, mask, scale, softcap);
    None
}

/// What [`cross_entropy`] computes for a block of rows.
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    /// `−log softmax(z)[target]` of each row, in f64.
    pub losses: Vec<f64>,
    /// `grad_scale · ∂(Σ losses)/∂logits`, `[n, vocab]` f32, when a gradient was asked for.
    pub grad: Option<Tensor<2>>,
}

/// The cross-entropy of each row of `logits` at its target, after the logit softcap
/// `z = cap·tanh(logits/cap)` when `softcap` is given, and with `grad_scale` the gradient of the
/// rows' summed loss with respect to the logits times `grad_scale`:
/// `(softmax(z) − onehot(target)) · (1 − (z/cap)²) · grad_scale`.
///
/// For f32 logits on the flex device this is one kernel over the rows: per row a maximum, one
/// pass of `exp` and its sum, and one pass that turns the exponentials into the gradient in
/// the logits' own memory (no probabilities, one-hot or gradient tensors of `[n × vocab]`
/// beside them). Each loss is `max + ln Σ e^(z−max) − z[target]`, exact however far below the
/// best logit the target lies. Elsewhere the same values are composed from tensor operations
/// ([`composed::cross_entropy`]).
///
/// # Shapes
/// `logits: [n, vocab]` (f32), `targets: n` ids → `losses: n`, `grad: [n, vocab]`
///
/// # Errors
/// [`Error::InvalidInput`] when `targets` and the rows disagree in number, a target is outside
/// the vocabulary, `logits` is not f32, or `grad_scale` is not finite.
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: &[u32],
    softcap: Option<f64>,
    grad_scale: Option<f64>,
) -> Result<CrossEntropy> {
    // Other types, devices, and zero rows take the composed form (which checks and handles
    // them).
    #[cfg(feature = "flex")]
    if takes_kernel(&logits) && !logits.is_autodiff() && logits.dims()[0] > 0 {
        check_cross_entropy(&logits, targets, grad_scale)?;
        let (losses, grad) = kernel::cross_entropy(logits, targets.to_vec(), softcap, grad_scale);
        let losses = losses
            .into_data()
            .try_into_vec::<f64>()
            .map_err(|e| Error::Device(format!("{e:?}")))?;
        return Ok(CrossEntropy { losses, grad });
    }
    composed::cross_entropy(logits, targets, softcap, grad_scale)
}

/// The argument checks of [`cross_entropy`] and [`composed::cross_entropy`].
fn check_cross_entropy(logits: &Tensor<2>, targets: &[u32], grad_scale: Option<f64>) -> Result<()> {
    let [n, vocab] = logits.dims();
    crate::head::check_target_ids("cross_entropy", "rows of logits", n, vocab, targets)?;
    if logits.dtype() != DType::F32 {
        return Err(Error::InvalidInput(format!(
            "cross_entropy: logits are {:?}; cast them to f32 first",
            logits.dtype()
        )));
    }
    if let Some(s) = grad_scale.filter(|s| !s.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "cross_entropy: grad_scale {s} is not finite"
        )));
    }
    Ok(())
}

/// Whether `t` is an f32 tensor on the flex device (with or without autodiff), where the fused
/// kernels run.
fn takes_kernel<const D: usize>(t: &Tensor<D>) -> bool {
    #[cfg(feature = "flex")]
    {
        t.dtype() == DType::F32 && t.device() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = t;
        false
    }
}

/// The same functions composed from tensor operations: the reference the kernels are tested
/// and benchmarked against, and the path of every other backend and type.
pub mod composed {
    use burn::tensor::activation::softmax;
    use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

    use super::CrossEntropy;
    use crate::error::Result;
    use crate::head::floats;

    /// `gelu_pytorch_tanh`, `0.5·x·(1 + tanh(z))` with `z = √(2/π)·(x + 0.044715·x³)`, computed
    /// as the equal `x · sigmoid(2z)`, `2z = x · (2√(2/π) + 2√(2/π)·0.044715·x²)`: six
    /// element-wise operations, one of them burn's sigmoid, whose backward pass is a single
    /// step. The sigmoid is the numerically safe one: no `exp` of a large argument, so no
    /// `0 · ∞` in the backward pass (the real Gemma 3 270M reaches such activations).
    pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        let two_z = (x.clone() * x.clone())
            .mul_scalar(super::TWO_SQRT_2_OVER_PI * super::GELU_CUBIC)
            .add_scalar(super::TWO_SQRT_2_OVER_PI)
            * x.clone();
        x * burn::tensor::activation::sigmoid(two_z)
    }

    /// [`super::rms_norm`] from tensor operations.
    pub fn rms_norm<const D: usize>(x: Tensor<D>, scale: Tensor<1>, eps: f64) -> Tensor<D> {
        let mean_sq = (x.clone() * x.clone()).mean_dim(D - 1);
        let normed = x * (mean_sq + eps).sqrt().recip();
        normed * scale.unsqueeze::<D>()
    }

    /// [`super::cross_entropy`] from tensor operations: burn's softmax, the targets'
    /// probabilities, and the gradient as the probabilities with one subtracted at each target.
    /// A row whose target's probability is below [`SMALLEST_EXACT_PROBABILITY`] has its loss
    /// recomputed from its logits in f64 (`−ln p` of a probability near f32's underflow would
    /// lose digits, or be infinite).
    ///
    /// # Errors
    /// As [`super::cross_entropy`].
    pub fn cross_entropy(
        logits: Tensor<2>,
        targets: &[u32],
        softcap: Option<f64>,
        grad_scale: Option<f64>,
    ) -> Result<CrossEntropy> {
        super::check_cross_entropy(&logits, targets, grad_scale)?;
        let [n, vocab] = logits.dims();
        if n == 0 {
            let grad = grad_scale.map(|_| Tensor::zeros([0, vocab], &logits.device()));
            return Ok(CrossEntropy {
                losses: Vec::new(),
                grad,
            });
        }
        let device = logits.device();
        let z = match softcap {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        };
        let tgt: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
        let tgt = Tensor::<2, Int>::from_data(TensorData::new(tgt, [n, 1]), &device);
        let p = softmax(z.clone(), 1);
        let pt = floats(p.clone().gather(1, tgt.clone()))?;
        let mut losses = Vec::with_capacity(n);
        for (r, &q) in pt.iter().enumerate() {
            losses.push(if q >= SMALLEST_EXACT_PROBABILITY {
                -f64::from(q).ln()
            } else {
                row_nll(z.clone().narrow(0, r, 1), targets[r] as usize)?
            });
        }
        let grad = grad_scale.map(|scale| {
            let ones = Tensor::<2>::full([n, 1], -1.0, &device);
            let mut g = p.scatter(1, tgt, ones, IndexingUpdateOp::Add);
            if let Some(cap) = softcap {
                let t = z / cap;
                g = g * (t.clone() * t).neg().add_scalar(1.0);
            }
            if scale != 1.0 { g.mul_scalar(scale) } else { g }
        });
        Ok(CrossEntropy { losses, grad })
    }

    /// Below this softmax probability [`cross_entropy`] recomputes a row's loss in f64.
    pub const SMALLEST_EXACT_PROBABILITY: f32 = 1e-30;

    /// `log Σ exp(z) − z[target]` of one row `[1, vocab]`, in f64.
    fn row_nll(z: Tensor<2>, target: usize) -> Result<f64> {
        let z = floats(z)?;
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = z.iter().map(|&v| (f64::from(v) - m).exp()).sum();
        Ok(m + sum.ln() - f64::from(z[target]))
    }

    /// [`super::rope`] from tensor operations (any layout the tables broadcast to).
    pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [_, _, _, hd] = x.dims();
        let half = hd / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos.clone() + rotated * sin.clone()
    }
}

/// `2·√(2/π)`.
const TWO_SQRT_2_OVER_PI: f64 = 2.0 * 0.797_884_560_802_865_4;
/// The cubic coefficient of `gelu_pytorch_tanh`.
const GELU_CUBIC: f64 = 0.044715;

#[cfg(feature = "flex")]
pub use kernel::{FusedBackward, FusedOps};

#[cfg(feature = "flex")]
mod kernel {
    use burn::backend::TensorMetadata;
    use burn::backend::autodiff::NodeId;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
    use burn::tensor::{Bytes, DType, FloatDType, Shape, Tensor};
    use rayon::prelude::*;

    use super::{GELU_CUBIC, TWO_SQRT_2_OVER_PI};

    /// Fused operations as a burn backend extension: flex computes them with the kernels below,
    /// `Autodiff<B>` records a node whose backward pass is [`FusedBackward`]'s.
    #[backend_extension(Flex, Autodiff)]
    pub trait FusedOps: Backend {
        /// `gelu_pytorch_tanh(gate) · up`; equal shapes.
        fn gelu_tanh_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
        /// `x · rsqrt(mean(x²) + eps) · scale` over the last dimension; `scale: [d]`.
        fn rms_norm(x: FloatTensor<Self>, scale: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
        /// Half-split RoPE of `x: [b, s, h, d]` with tables `[b, s, 1, d]`.
        fn rope(
            x: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
        ) -> FloatTensor<Self>;
        /// `softmax(scale · q·kᵀ + bias) · v`: `q: [b, h, s, d]`, `k, v: [b, kv, l, d]` with
        /// `h` a multiple of `kv`, `bias: [b, 1, s, l]` (0 or −∞).
        fn grouped_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            scale: f64,
        ) -> FloatTensor<Self>;
        /// Per-row cross-entropy of f32 `logits: [n, v]` at `targets` (`n` ids below `v`) after
        /// the softcap when given: the losses `[n]` in f64 and, with `grad_scale`, the scaled
        /// gradient with respect to the logits, `[n, v]`. Not a node of the autodiff graph: the
        /// caller hands the gradient on itself (`Gemma::label_nll_scaled`).
        fn cross_entropy(
            logits: FloatTensor<Self>,
            targets: Vec<u32>,
            softcap: Option<f64>,
            grad_scale: Option<f64>,
        ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>);
    }

    /// The backward passes of [`FusedOps`], one fused kernel each.
    pub trait FusedBackward: Backend {
        /// `(∂gate, ∂up)` of [`FusedOps::gelu_tanh_mul`] for the output gradient `grad`.
        fn gelu_tanh_mul_backward(
            gate: FloatTensor<Self>,
            up: FloatTensor<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);
        /// `(∂x, ∂scale)` of [`FusedOps::rms_norm`]; `∂scale` only when `scale_grad`.
        fn rms_norm_backward(
            x: FloatTensor<Self>,
            scale: FloatTensor<Self>,
            eps: f64,
            grad: FloatTensor<Self>,
            scale_grad: bool,
        ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>);
        /// `∂x` of [`FusedOps::rope`]: the inverse rotation of `grad`.
        fn rope_backward(
            grad: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
        ) -> FloatTensor<Self>;
        /// [`FusedOps::grouped_attention`] keeping what its backward pass needs.
        fn attention_saved(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            scale: f64,
        ) -> (FloatTensor<Self>, AttentionSaved<Self>);
        /// `(∂q, ∂k, ∂v)` of [`FusedOps::grouped_attention`] for the output gradient `grad`.
        fn attention_backward(
            saved: AttentionSaved<Self>,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    /// What [`FusedBackward::attention_backward`] reads: the queries grouped per key/value head
    /// `[b, kv, g·s, d]`, keys, values, the softmax probabilities `[b, kv, g·s, l]`, the scale
    /// and the queries' shape.
    #[derive(Debug, Clone)]
    pub struct AttentionSaved<B: Backend> {
        q: FloatTensor<B>,
        k: FloatTensor<B>,
        v: FloatTensor<B>,
        probs: FloatTensor<B>,
        scale: f64,
        q_shape: [usize; 4],
    }

    pub(super) fn gelu_tanh_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_tanh_mul(
            gate.into_dispatch(),
            up.into_dispatch(),
        ))
    }

    pub(super) fn rms_norm<const D: usize>(x: Tensor<D>, scale: Tensor<1>, eps: f64) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as FusedOps>::rms_norm(
            x.into_dispatch(),
            scale.into_dispatch(),
            eps,
        ))
    }

    pub(super) fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as FusedOps>::rope(
            x.into_dispatch(),
            cos.into_dispatch(),
            sin.into_dispatch(),
        ))
    }

    pub(super) fn attention(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Tensor<4>,
        scale: f64,
    ) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as FusedOps>::grouped_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            bias.into_dispatch(),
            scale,
        ))
    }

    pub(super) fn cross_entropy(
        logits: Tensor<2>,
        targets: Vec<u32>,
        softcap: Option<f64>,
        grad_scale: Option<f64>,
    ) -> (Tensor<1>, Option<Tensor<2>>) {
        let (losses, grad) = <Dispatch as FusedOps>::cross_entropy(
            logits.into_dispatch(),
            targets,
            softcap,
            grad_scale,
        );
        (
            Tensor::from_dispatch(losses),
            grad.map(Tensor::from_dispatch),
        )
    }

    /// Elements below which a kernel runs on the calling thread (a rayon fan-out costs more
    /// than it saves).
    const PARALLEL_ELEMENTS: usize = 1 << 15;
    /// Rows per task of the row kernels; fixed, so sums over rows (`∂scale`) add in the same
    /// order whatever the thread count: a run is reproducible on any machine.
    const ROWS_PER_TASK: usize = 64;

    /// `t` as a contiguous f32 tensor (casting and copying only when it is not one).
    fn f32_contiguous(t: FlexTensor) -> FlexTensor {
        let t = if t.dtype() == DType::F32 {
            t
        } else {
            Flex::float_cast(t, FloatDType::F32)
        };
        if t.as_slice::<f32>().is_some() {
            t
        } else {
            t.to_contiguous()
        }
    }

    /// The f32 values of a tensor made by [`f32_contiguous`].
    fn values(t: &FlexTensor) -> &[f32] {
        t.as_slice::<f32>()
            .expect("f32_contiguous yields contiguous f32 storage")
    }

    /// `out` in the type of `like` (the kernels compute in f32).
    fn like(out: FlexTensor, like: DType) -> FlexTensor {
        match like {
            DType::F32 => out,
            DType::F64 => Flex::float_cast(out, FloatDType::F64),
            DType::F16 => Flex::float_cast(out, FloatDType::F16),
            DType::BF16 => Flex::float_cast(out, FloatDType::BF16),
            _ => out,
        }
    }

    /// `f(chunk_index, chunk)` over `data` in chunks of `chunk` elements, in parallel when
    /// `data` is large (the chunks, and so any per-chunk result, do not depend on the thread
    /// count); the results in chunk order.
    fn map_chunks<R: Send>(
        data: &mut [f32],
        chunk: usize,
        f: impl Fn(usize, &mut [f32]) -> R + Sync + Send,
    ) -> Vec<R> {
        let chunk = chunk.max(1);
        if data.len() >= PARALLEL_ELEMENTS {
            data.par_chunks_mut(chunk)
                .enumerate()
                .map(|(i, c)| f(i, c))
                .collect()
        } else {
            data.chunks_mut(chunk)
                .enumerate()
                .map(|(i, c)| f(i, c))
                .collect()
        }
    }

    /// `data` as a contiguous f32 tensor of `shape`, handed to flex as typed elements
    /// (`FlexTensor::empty` allocates bytes, which burn then copies into a second, aligned
    /// buffer).
    fn tensor(shape: Shape, data: Vec<f32>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(shape),
            DType::F32,
        )
    }

    /// A new f32 tensor of `shape` whose values `fill` writes, chunk by chunk ([`map_chunks`]).
    fn build(
        shape: Shape,
        chunk: usize,
        fill: impl Fn(usize, &mut [f32]) + Sync + Send,
    ) -> FlexTensor {
        let mut data = vec![0f32; shape.num_elements()];
        map_chunks(&mut data, chunk, fill);
        tensor(shape, data)
    }

    /// `e^x` for f32, branch-free so that loops over it vectorise (libm's `expf` is a call per
    /// element): Cody–Waite range reduction `x = n·ln2 + r` and Cephes' `expf` polynomial for
    /// `e^r` on `|r| ≤ ln2/2`, with `2^n` built in the exponent bits; about 1 ulp. Inputs are
    /// clamped to `[−87, 88]` (`e^88` is near f32's largest finite value, `e^−87` its smallest
    /// normal), which a sigmoid's `1/(1 + e^−t)` turns into 0 or 1 within f32's resolution.
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // Round to nearest by the 1.5·2²³ trick (vectorises where `round` may not).
        const SHIFTER: f32 = 12_582_912.0;
        let x = x.clamp(-87.0, 88.0);
        let shifted = x * LOG2E + SHIFTER;
        let n = shifted - SHIFTER;
        // n as an integer from the shifted value's mantissa (an `as i32` cast saturates, which
        // does not vectorise): the bits of 1.5·2²³ + n are 0x4B40_0000 + n.
        let n_int = shifted.to_bits().wrapping_sub(0x4B40_0000);
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
            * r
            + 1.666_666_5e-1)
            * r
            + 0.5;
        let e_r = p * r * r + r + 1.0;
        e_r * f32::from_bits(n_int.wrapping_add(127) << 23)
    }

    /// `sigmoid(t) = 1 / (1 + e^−t)`.
    #[inline(always)]
    fn sigmoid(t: f32) -> f32 {
        1.0 / (1.0 + exp(-t))
    }

    /// `2z = g·(2√(2/π) + 2√(2/π)·0.044715·g²)`, the sigmoid's argument of `gelu_tanh(g)`.
    #[inline(always)]
    fn two_z(g: f32) -> f32 {
        const C1: f32 = TWO_SQRT_2_OVER_PI as f32;
        const C3: f32 = (TWO_SQRT_2_OVER_PI * GELU_CUBIC) as f32;
        g * (C1 + C3 * g * g)
    }

    fn gelu_tanh_mul_forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let dtype = gate.dtype();
        let shape = gate.shape();
        let (gate, up) = (f32_contiguous(gate), f32_contiguous(up));
        let (g, u) = (values(&gate), values(&up));
        let chunk = 1 << 14;
        let out = build(shape, chunk, |i, out| {
            let start = i * chunk;
            let (g, u) = (&g[start..start + out.len()], &u[start..start + out.len()]);
            for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
                *o = g * sigmoid(two_z(g)) * u;
            }
        });
        like(out, dtype)
    }

    fn rms_norm_forward(x: FlexTensor, scale: FlexTensor, eps: f64) -> FlexTensor {
        let dtype = x.dtype();
        let shape = x.shape();
        let d = shape[shape.num_dims() - 1];
        let (x, scale) = (f32_contiguous(x), f32_contiguous(scale));
        let (xs, w) = (values(&x), values(&scale));
        let eps = eps as f32;
        let out = build(shape, ROWS_PER_TASK * d, |i, out| {
            let start = i * ROWS_PER_TASK * d;
            for (o, x) in out.chunks_mut(d).zip(xs[start..].chunks(d)) {
                let r = inv_rms(x, eps);
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * r * w;
                }
            }
        });
        like(out, dtype)
    }

    /// `1 / sqrt(mean(x²) + eps)` of one row.
    #[inline(always)]
    fn inv_rms(x: &[f32], eps: f32) -> f32 {
        1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt()
    }

    /// `x` folded by `f` in eight running lanes (a single running value is a chain of
    /// dependent steps that cannot vectorise), the lanes folded pairwise at the end.
    #[inline(always)]
    fn lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
        let mut acc = [init; 8];
        let chunks = x.chunks_exact(8);
        let tail = chunks.remainder().iter().fold(init, |a, &v| f(a, v));
        for c in chunks {
            for i in 0..8 {
                acc[i] = f(acc[i], c[i]);
            }
        }
        let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
        f(f(f(f(a0, a4), f(a1, a5)), f(f(a2, a6), f(a3, a7))), tail)
    }

    /// `Σ aᵢ·bᵢ` in eight running sums (a single f32 sum is a chain of dependent additions
    /// that cannot vectorise), added pairwise at the end.
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
        ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
    }

    /// The rows of `x: [b, s, h, d]` as `(b·s, h, d)` and the tables' `(b·s, d)`.
    fn rope_forward(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, inverse: bool) -> FlexTensor {
        let dtype = x.dtype();
        let shape = x.shape();
        let (heads, d) = (shape[2], shape[3]);
        let half = d / 2;
        let (x, cos, sin) = (f32_contiguous(x), f32_contiguous(cos), f32_contiguous(sin));
        let (xs, cs, ss) = (values(&x), values(&cos), values(&sin));
        // One position (all its heads) per chunk.
        let out = build(shape, heads * d, |pos, out| {
            let c = &cs[pos * d..(pos + 1) * d];
            let s = &ss[pos * d..(pos + 1) * d];
            let (c1, c2) = c.split_at(half);
            let (s1, s2) = s.split_at(half);
            for (o, x) in out.chunks_mut(d).zip(xs[pos * heads * d..].chunks(d)) {
                let (x1, x2) = x.split_at(half);
                let (o1, o2) = o.split_at_mut(half);
                if inverse {
                    // ∂x₁ = g₁·c₁ + g₂·s₂, ∂x₂ = g₂·c₂ − g₁·s₁ (the transpose of the rotation).
                    for i in 0..half {
                        o1[i] = x1[i] * c1[i] + x2[i] * s2[i];
                        o2[i] = x2[i] * c2[i] - x1[i] * s1[i];
                    }
                } else {
                    for i in 0..half {
                        o1[i] = x1[i] * c1[i] - x2[i] * s1[i];
                        o2[i] = x2[i] * c2[i] + x1[i] * s2[i];
                    }
                }
            }
        });
        like(out, dtype)
    }

    impl FusedOps for Flex {
        fn gelu_tanh_mul(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
            gelu_tanh_mul_forward(gate, up)
        }

        fn rms_norm(x: FlexTensor, scale: FlexTensor, eps: f64) -> FlexTensor {
            rms_norm_forward(x, scale, eps)
        }

        fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
            rope_forward(x, cos, sin, false)
        }

        fn grouped_attention(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            bias: FlexTensor,
            scale: f64,
        ) -> FlexTensor {
            Self::attention_saved(q, k, v, bias, scale).0
        }

        fn cross_entropy(
            logits: FlexTensor,
            targets: Vec<u32>,
            softcap: Option<f64>,
            grad_scale: Option<f64>,
        ) -> (FlexTensor, Option<FlexTensor>) {
            cross_entropy_rows(logits, &targets, softcap, grad_scale)
        }
    }

    /// [`FusedOps::cross_entropy`] on flex, row by row in the logits' memory (copied first
    /// only when shared): the maximum `m`, `e = exp(z − m)` in place and its sum `S`, the loss
    /// `m + ln S − z[t]`; with a gradient, `e · (grad_scale / S)` with `grad_scale` taken off
    /// at the target, times the softcap's `1 − (z/cap)²`. Under a softcap the row's `z` is kept
    /// aside for that factor. Rows are independent, so the result does not depend on threads.
    fn cross_entropy_rows(
        logits: FlexTensor,
        targets: &[u32],
        softcap: Option<f64>,
        grad_scale: Option<f64>,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let [n, v] = logits.shape().dims::<2>();
        let mut logits = f32_contiguous(logits);
        let cap = softcap.map(|c| c as f32);
        let scale = grad_scale.map(|s| s as f32);
        let row = |r: usize, x: &mut [f32]| -> f64 {
            let t = targets[r] as usize;
            let z = cap.map(|cap| {
                for x in x.iter_mut() {
                    *x = cap * (*x / cap).tanh();
                }
                x.to_vec()
            });
            let max = lanes(x, f32::NEG_INFINITY, f32::max);
            let zt = x[t];
            for x in x.iter_mut() {
                *x = exp(*x - max);
            }
            let sum = lanes(x, 0.0, |a, b| a + b);
            if let Some(scale) = scale {
                let k = scale / sum;
                match (&z, cap) {
                    (Some(z), Some(cap)) => {
                        let inv = 1.0 / cap;
                        for (x, &z) in x.iter_mut().zip(z) {
                            let u = z * inv;
                            *x *= k * (1.0 - u * u);
                        }
                        let u = zt * inv;
                        x[t] -= scale * (1.0 - u * u);
                    }
                    _ => {
                        for x in x.iter_mut() {
                            *x *= k;
                        }
                        x[t] -= scale;
                    }
                }
            }
            f64::from(max) + f64::from(sum).ln() - f64::from(zt)
        };
        let losses = map_chunks(logits.storage_mut::<f32>(), v, row);
        debug_assert_eq!(losses.len(), n);
        let losses = FlexTensor::new(
            Bytes::from_elems(losses),
            Layout::contiguous(Shape::new([n])),
            DType::F64,
        );
        (losses, scale.is_some().then_some(logits))
    }

    /// `t` (row-major `[b, kv·g, s, d]` once contiguous) as `[b, kv, g·s, d]`.
    fn grouped(t: FlexTensor, kv: usize) -> FlexTensor {
        let [b, h, s, d] = t.shape().dims::<4>();
        let t = f32_contiguous(t);
        Flex::float_reshape(t, Shape::new([b, kv, (h / kv) * s, d]))
    }

    /// In place over rows of `l` scores: `p = softmax(scale · row + bias_row)`, where the row's
    /// bias is row `(batch, query)` of `bias: [b, 1, s, l]` and the rows are ordered
    /// `[b, kv, g, s]`. A row whose keys are all hidden becomes zeros (as burn's attention).
    fn softmax_rows(
        scores: &mut [f32],
        bias: &[f32],
        rows_per_batch: usize,
        s: usize,
        l: usize,
        scale: f32,
    ) {
        let row = |r: usize, x: &mut [f32]| {
            let (batch, query) = (r / rows_per_batch, r % s);
            let bias = &bias[(batch * s + query) * l..(batch * s + query + 1) * l];
            for (x, &b) in x.iter_mut().zip(bias) {
                *x = *x * scale + b;
            }
            let max = lanes(x, f32::NEG_INFINITY, f32::max);
            if max == f32::NEG_INFINITY {
                x.fill(0.0);
                return;
            }
            for x in x.iter_mut() {
                *x = exp(*x - max);
            }
            let sum = lanes(x, 0.0, |a, b| a + b);
            let inv = 1.0 / sum;
            for x in x.iter_mut() {
                *x *= inv;
            }
        };
        map_chunks(scores, l, row);
    }

    impl FusedBackward for Flex {
        fn gelu_tanh_mul_backward(
            gate: FlexTensor,
            up: FlexTensor,
            grad: FlexTensor,
        ) -> (FlexTensor, FlexTensor) {
            let dtype = gate.dtype();
            let shape = gate.shape();
            let (gate, up, grad) = (
                f32_contiguous(gate),
                f32_contiguous(up),
                f32_contiguous(grad),
            );
            let (g, u, dy) = (values(&gate), values(&up), values(&grad));
            // ∂gate and ∂up in one pass: σ is computed once per element.
            let chunk = 1 << 14;
            const C1: f32 = TWO_SQRT_2_OVER_PI as f32;
            const C3: f32 = (TWO_SQRT_2_OVER_PI * GELU_CUBIC) as f32;
            let n = g.len();
            let (mut d_gate, mut d_up) = (vec![0f32; n], vec![0f32; n]);
            let fill = |(i, (d_gate, d_up)): (usize, (&mut [f32], &mut [f32]))| {
                let start = i * chunk;
                let end = start + d_gate.len();
                let inputs = g[start..end]
                    .iter()
                    .zip(&u[start..end])
                    .zip(&dy[start..end]);
                for ((dg, du), ((&g, &u), &dy)) in
                    d_gate.iter_mut().zip(d_up.iter_mut()).zip(inputs)
                {
                    // gelu(g) = g·σ(t), t = g·(C1 + C3·g²):
                    // gelu'(g) = σ + g·σ·(1 − σ)·(C1 + 3·C3·g²).
                    let s = sigmoid(two_z(g));
                    let dt = C1 + 3.0 * C3 * g * g;
                    *dg = dy * u * (s + g * s * (1.0 - s) * dt);
                    *du = dy * g * s;
                }
            };
            if n >= PARALLEL_ELEMENTS {
                d_gate
                    .par_chunks_mut(chunk)
                    .zip(d_up.par_chunks_mut(chunk))
                    .enumerate()
                    .for_each(fill);
            } else {
                d_gate
                    .chunks_mut(chunk)
                    .zip(d_up.chunks_mut(chunk))
                    .enumerate()
                    .for_each(fill);
            }
            let (d_gate, d_up) = (tensor(shape.clone(), d_gate), tensor(shape, d_up));
            (like(d_gate, dtype), like(d_up, dtype))
        }

        fn rms_norm_backward(
            x: FlexTensor,
            scale: FlexTensor,
            eps: f64,
            grad: FlexTensor,
            scale_grad: bool,
        ) -> (FlexTensor, Option<FlexTensor>) {
            let (dtype, scale_dtype) = (x.dtype(), scale.dtype());
            let shape = x.shape();
            let d = shape[shape.num_dims() - 1];
            let (x, scale, grad) = (
                f32_contiguous(x),
                f32_contiguous(scale),
                f32_contiguous(grad),
            );
            let (xs, w, dy) = (values(&x), values(&scale), values(&grad));
            let eps = eps as f32;
            // y = x·r·w, r = (mean(x²) + eps)^−½:
            // ∂x = r·(dy·w) − x·r³·mean(dy·w·x), ∂w = Σ_rows dy·x·r.
            // One pass: each task's rows of ∂x and, when the scale trains, its partial ∂w over
            // those rows; the partials are added in task order.
            let mut dx = vec![0f32; xs.len()];
            let partials = map_chunks(&mut dx, ROWS_PER_TASK * d, |i, out| {
                let start = i * ROWS_PER_TASK * d;
                let mut acc = vec![0f32; if scale_grad { d } else { 0 }];
                for ((o, x), dy) in out
                    .chunks_mut(d)
                    .zip(xs[start..].chunks(d))
                    .zip(dy[start..].chunks(d))
                {
                    let r = inv_rms(x, eps);
                    for ((a, &x), &g) in acc.iter_mut().zip(x).zip(dy) {
                        *a += g * x * r;
                    }
                    // Σ x·dy·w, with dy·w first into the output row (overwritten below).
                    for ((o, &g), &w) in o.iter_mut().zip(dy).zip(w) {
                        *o = g * w;
                    }
                    let k = r * r * r * dot(x, o) / d as f32;
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = r * *o - x * k;
                    }
                }
                acc
            });
            let d_scale = scale_grad.then(|| {
                let mut sum = vec![0f32; d];
                for p in partials {
                    for (s, v) in sum.iter_mut().zip(p) {
                        *s += v;
                    }
                }
                like(tensor(Shape::new([d]), sum), scale_dtype)
            });
            let dx = tensor(shape, dx);
            (like(dx, dtype), d_scale)
        }

        fn rope_backward(grad: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
            rope_forward(grad, cos, sin, true)
        }

        fn attention_saved(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            bias: FlexTensor,
            scale: f64,
        ) -> (FlexTensor, AttentionSaved<Self>) {
            let dtype = q.dtype();
            let q_shape = q.shape().dims::<4>();
            let [b, _, s, _] = q_shape;
            let kv = k.shape().dims::<4>()[1];
            let l = k.shape().dims::<4>()[2];
            let q = grouped(q, kv);
            let (k, v, bias) = (f32_contiguous(k), f32_contiguous(v), f32_contiguous(bias));
            let mut probs = f32_contiguous(Flex::float_matmul(
                q.clone(),
                Flex::float_transpose(k.clone()),
            ));
            let rows_per_batch = probs.shape().num_elements() / (b * l);
            softmax_rows(
                probs.storage_mut::<f32>(),
                values(&bias),
                rows_per_batch,
                s,
                l,
                scale as f32,
            );
            let out = Flex::float_matmul(probs.clone(), v.clone());
            let out = Flex::float_reshape(out, Shape::new(q_shape));
            let saved = AttentionSaved {
                q,
                k,
                v,
                probs,
                scale,
                q_shape,
            };
            (like(out, dtype), saved)
        }

        fn attention_backward(
            saved: AttentionSaved<Self>,
            grad: FlexTensor,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let AttentionSaved {
                q,
                k,
                v,
                probs,
                scale,
                q_shape,
            } = saved;
            let kv = k.shape().dims::<4>()[1];
            let l = k.shape().dims::<4>()[2];
            let d_out = grouped(grad, kv);
            // ∂v = pᵀ·∂o; ∂p = ∂o·vᵀ; ∂scores = p ⊙ (∂p − rowsum(∂p ⊙ p)) · scale.
            let d_v = Flex::float_matmul(Flex::float_transpose(probs.clone()), d_out.clone());
            let mut d_s = f32_contiguous(Flex::float_matmul(d_out, Flex::float_transpose(v)));
            let p = values(&probs);
            let scale = scale as f32;
            let fill = |r: usize, g: &mut [f32]| {
                let p = &p[r * l..(r + 1) * l];
                let dot = dot(g, p);
                for (g, &p) in g.iter_mut().zip(p) {
                    *g = p * (*g - dot) * scale;
                }
            };
            map_chunks(d_s.storage_mut::<f32>(), l, fill);
            let d_q = Flex::float_matmul(d_s.clone(), k);
            let d_k = Flex::float_matmul(Flex::float_transpose(d_s), q);
            (Flex::float_reshape(d_q, Shape::new(q_shape)), d_k, d_v)
        }
    }

    /// Hands each gradient to its parent node, where that parent is tracked.
    fn register<B: Backend, const N: usize>(
        grads: &mut Gradients,
        parents: [Option<NodeId>; N],
        values: [Option<FloatTensor<B>>; N],
    ) {
        for (node, value) in parents.into_iter().zip(values) {
            if let (Some(node), Some(value)) = (node, value) {
                grads.register::<B>(node, value);
            }
        }
    }

    #[derive(Debug)]
    struct GeluTanhMul;

    impl<B: FusedBackward> Backward<B, 2> for GeluTanhMul {
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (gate, up) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let (d_gate, d_up) = B::gelu_tanh_mul_backward(gate, up, grad);
            register::<B, 2>(
                grads,
                ops.parents.map(|p| p.map(|n| n.id)),
                [Some(d_gate), Some(d_up)],
            );
        }
    }

    #[derive(Debug)]
    struct RmsNorm;

    impl<B: FusedBackward> Backward<B, 2> for RmsNorm {
        /// `x`, `scale`, `eps`.
        type State = (FloatTensor<B>, FloatTensor<B>, f64);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (x, scale, eps) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let scale_grad = ops.parents[1].is_some();
            let (dx, d_scale) = B::rms_norm_backward(x, scale, eps, grad, scale_grad);
            register::<B, 2>(
                grads,
                ops.parents.map(|p| p.map(|n| n.id)),
                [Some(dx), d_scale],
            );
        }
    }

    #[derive(Debug)]
    struct Rope;

    impl<B: FusedBackward> Backward<B, 1> for Rope {
        /// The tables.
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (cos, sin) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            if ops.parents[0].is_some() {
                let dx = B::rope_backward(grad, cos, sin);
                register::<B, 1>(grads, ops.parents.map(|p| p.map(|n| n.id)), [Some(dx)]);
            }
        }
    }

    #[derive(Debug)]
    struct Attention;

    impl<B: FusedBackward> Backward<B, 3> for Attention {
        type State = AttentionSaved<B>;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<B>(&ops.node);
            let (d_q, d_k, d_v) = B::attention_backward(ops.state, grad);
            register::<B, 3>(
                grads,
                ops.parents.map(|p| p.map(|n| n.id)),
                [Some(d_q), Some(d_k), Some(d_v)],
            );
        }
    }

    impl<B, C> FusedOps for Autodiff<B, C>
    where
        B: FusedOps + FusedBackward,
        C: CheckpointStrategy,
    {
        fn gelu_tanh_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
            let nodes = [gate.node(), up.node()];
            let (gate, up) = (gate.into_primitive(), up.into_primitive());
            match GeluTanhMul.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let out = B::gelu_tanh_mul(gate.clone(), up.clone());
                    prep.finish((gate, up), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::gelu_tanh_mul(gate, up)),
            }
        }

        fn rms_norm(x: FloatTensor<Self>, scale: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
            let nodes = [x.node(), scale.node()];
            let (x, scale) = (x.into_primitive(), scale.into_primitive());
            match RmsNorm.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let out = B::rms_norm(x.clone(), scale.clone(), eps);
                    prep.finish((x, scale, eps), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::rms_norm(x, scale, eps)),
            }
        }

        fn rope(
            x: FloatTensor<Self>,
            cos: FloatTensor<Self>,
            sin: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let nodes = [x.node()];
            let (x, cos, sin) = (
                x.into_primitive(),
                cos.into_primitive(),
                sin.into_primitive(),
            );
            match Rope.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let out = B::rope(x, cos.clone(), sin.clone());
                    prep.finish((cos, sin), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::rope(x, cos, sin)),
            }
        }

        fn grouped_attention(
            q: FloatTensor<Self>,
            k: FloatTensor<Self>,
            v: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            scale: f64,
        ) -> FloatTensor<Self> {
            let nodes = [q.node(), k.node(), v.node()];
            let (q, k, v, bias) = (
                q.into_primitive(),
                k.into_primitive(),
                v.into_primitive(),
                bias.into_primitive(),
            );
            match Attention.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (out, saved) = B::attention_saved(q, k, v, bias, scale);
                    prep.finish(saved, out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::grouped_attention(q, k, v, bias, scale)),
            }
        }

        fn cross_entropy(
            logits: FloatTensor<Self>,
            targets: Vec<u32>,
            softcap: Option<f64>,
            grad_scale: Option<f64>,
        ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
            // Outside the graph (see the trait): the results are new untracked leaves.
            let (losses, grad) =
                B::cross_entropy(logits.into_primitive(), targets, softcap, grad_scale);
            (
                <FloatTensor<Self>>::new(losses),
                grad.map(<FloatTensor<Self>>::new),
            )
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Bool, Distribution, Tensor, TensorData};

    use super::*;

    fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 values")
    }

    /// `|a − b| ≤ tol · max(1, largest |b|)` element-wise.
    fn assert_close(what: &str, a: Vec<f32>, b: Vec<f32>, tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}[{i}]: kernel {x} vs composed {y} (scale {scale})"
            );
        }
    }

    fn random<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, std), device)
    }

    /// The kernel and the composed function on the same inputs: values, and the gradients of
    /// `Σ y ⊙ w` for a random `w` (an upstream gradient that is not all ones).
    fn check<const D: usize, const N: usize>(
        what: &str,
        inputs: [Tensor<D>; N],
        trains: [bool; N],
        kernel: impl Fn(&[Tensor<D>]) -> Tensor<D>,
        composed: impl Fn(&[Tensor<D>]) -> Tensor<D>,
        tol: f32,
    ) {
        let device = Device::flex().autodiff();
        let run = |f: &dyn Fn(&[Tensor<D>]) -> Tensor<D>| {
            let xs: Vec<Tensor<D>> = inputs
                .iter()
                .zip(trains)
                .map(|(x, t)| {
                    let x = Tensor::<D>::from_data(x.to_data(), &device);
                    if t { x.require_grad() } else { x }
                })
                .collect();
            let y = f(&xs);
            let w =
                Tensor::<D>::from_data(random(y.dims(), 1.0, &Device::flex()).to_data(), &device);
            (y, w, xs)
        };
        // One upstream weight for both runs.
        let (y_k, w, xs_k) = run(&kernel);
        let y_c = composed(&xs_k.iter().map(|x| x.clone().detach()).collect::<Vec<_>>());
        assert_close(&format!("{what} value"), vec(y_k.clone()), vec(y_c), tol);
        let grads_k = (y_k * w.clone()).sum().backward();
        let xs_c: Vec<Tensor<D>> = xs_k
            .iter()
            .zip(trains)
            .map(|(x, t)| {
                let x = x.clone().detach();
                if t { x.require_grad() } else { x }
            })
            .collect();
        let grads_c = (composed(&xs_c) * w).sum().backward();
        for (i, t) in trains.iter().enumerate() {
            if *t {
                assert_close(
                    &format!("{what} ∂input{i}"),
                    vec(xs_k[i].grad(&grads_k).expect("kernel gradient")),
                    vec(xs_c[i].grad(&grads_c).expect("composed gradient")),
                    tol,
                );
            } else {
                assert!(
                    xs_k[i].grad(&grads_k).is_none(),
                    "{what}: input {i} is frozen"
                );
            }
        }
    }

    /// The cross-entropy kernel against its composed form on rows wide enough to split across
    /// threads (a block of Gemma's head is wider still), with and without a softcap whose
    /// `tanh` saturates: losses in f64 and the scaled gradient; and against f64 arithmetic
    /// written out here, on a row whose target lies far below its best logit.
    #[test]
    fn cross_entropy_kernel_matches_the_composed_function() {
        let device = Device::flex();
        device.seed(5);
        let (n, v) = (24, 3001);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 977 + 11) % v as u32).collect();
        for softcap in [None, Some(4.0)] {
            let logits = random([n, v], 6.0, &device);
            let got = cross_entropy(logits.clone(), &targets, softcap, Some(0.125)).unwrap();
            let want =
                composed::cross_entropy(logits.clone(), &targets, softcap, Some(0.125)).unwrap();
            for (r, (a, b)) in got.losses.iter().zip(&want.losses).enumerate() {
                assert!(
                    (a - b).abs() <= 2e-5 * b.abs().max(1.0),
                    "{softcap:?} row {r}: {a} vs {b}"
                );
            }
            assert_close(
                &format!("{softcap:?} gradient"),
                vec(got.grad.unwrap()),
                vec(want.grad.unwrap()),
                1e-6,
            );
            let no_grad = cross_entropy(logits, &targets, softcap, None).unwrap();
            assert!(no_grad.grad.is_none());
            assert_eq!(no_grad.losses, got.losses);
        }
        // A target 200 nats below the best logit: p underflows f32, the loss does not.
        let row: Vec<f32> = (0..v).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        let mut row = row;
        row[7] = -150.0;
        let logits = Tensor::<2>::from_data(TensorData::new(row.clone(), [1, v]), &device);
        let got = cross_entropy(logits, &[7], None, Some(1.0)).unwrap();
        let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&z| (f64::from(z) - max).exp())
                .sum::<f64>()
                .ln();
        let want = lse + 150.0;
        assert!(
            (got.losses[0] - want).abs() <= 1e-5 * want,
            "{} vs {want}",
            got.losses[0]
        );
        let g = vec(got.grad.unwrap());
        assert_eq!(
            g[7], -1.0,
            "p[target] is 0 in f32, so its gradient is exactly −1"
        );
    }

    #[test]
    fn cross_entropy_rejects_bad_targets_and_types() {
        type Ce = fn(Tensor<2>, &[u32], Option<f64>, Option<f64>) -> Result<CrossEntropy>;
        let device = Device::flex();
        let logits = Tensor::<2>::zeros([2, 5], &device);
        let err = |r: Result<CrossEntropy>| r.unwrap_err().to_string();
        for (path, ce) in [
            ("kernel", cross_entropy as Ce),
            ("composed", composed::cross_entropy),
        ] {
            let e = err(ce(logits.clone(), &[1], None, None));
            assert!(e.contains("1 targets for 2 rows"), "{path}: {e}");
            let e = err(ce(logits.clone(), &[1, 5], None, None));
            assert!(
                e.contains("target 1 is token 5, outside the vocabulary of 5"),
                "{path}: {e}"
            );
            let e = err(ce(logits.clone(), &[1, 2], None, Some(f64::NAN)));
            assert!(e.contains("grad_scale NaN"), "{path}: {e}");
            let half = logits.clone().cast(burn::tensor::FloatDType::F16);
            let e = err(ce(half, &[1, 2], None, None));
            assert!(e.contains("F16") && e.contains("f32"), "{path}: {e}");
            // Uniform logits: every loss is ln 5, the gradient 1/5 − onehot.
            let out = ce(Tensor::zeros([2, 5], &device), &[1, 4], None, Some(1.0)).unwrap();
            for l in &out.losses {
                assert!((l - 5f64.ln()).abs() < 1e-6, "{path}: {l}");
            }
            assert_close(
                &format!("{path} uniform gradient"),
                vec(out.grad.unwrap()),
                vec![0.2, -0.8, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, -0.8],
                1e-6,
            );
            let empty = ce(Tensor::zeros([0, 5], &device), &[], None, Some(1.0)).unwrap();
            assert!(empty.losses.is_empty(), "{path}");
            assert_eq!(empty.grad.unwrap().dims(), [0, 5], "{path}");
        }
    }

    #[test]
    fn the_flex_f32_path_takes_the_kernels_and_other_types_do_not() {
        let x = random([2, 3], 1.0, &Device::flex());
        assert!(takes_kernel(&x));
        let tracked =
            Tensor::<2>::from_data(x.to_data(), &Device::flex().autodiff()).require_grad();
        assert!(takes_kernel(&tracked));
        assert!(!takes_kernel(&x.cast(burn::tensor::FloatDType::F64)));
    }

    /// Sizes on both sides of the parallel threshold; row counts that are not a multiple of the
    /// rows per task; activations up to ±12 (the real model reaches such values).
    #[test]
    fn gelu_tanh_mul_kernel_matches_the_composed_function() {
        let d = Device::flex();
        for shape in [[3, 5, 7], [4, 33, 1024]] {
            check(
                "gelu_tanh_mul",
                [random(shape, 4.0, &d), random(shape, 1.0, &d)],
                [true, true],
                |x| gelu_tanh_mul(x[0].clone(), x[1].clone()),
                |x| composed::gelu_tanh(x[0].clone()) * x[1].clone(),
                2e-6,
            );
        }
    }

    #[test]
    fn rms_norm_kernel_matches_the_composed_function() {
        let d = Device::flex();
        for (shape, trains) in [
            ([2, 3, 5], true),
            ([7, 67, 256], true),
            ([7, 67, 256], false),
        ] {
            let scale = random([shape[2]], 1.0, &d) + 1.0;
            // Rows of very different magnitudes: the norm must not mix them.
            let x = random(shape, 1.0, &d) * random([shape[0], shape[1], 1], 3.0, &d).exp();
            let eps = 1e-6;
            // The scale broadcast to x's rank so that `check` handles one type; the functions
            // take its first row.
            let scale3 = scale.reshape([1, 1, shape[2]]);
            check(
                "rms_norm",
                [x, scale3],
                [true, trains],
                |x| rms_norm(x[0].clone(), x[1].clone().flatten(0, 2), eps),
                |x| composed::rms_norm(x[0].clone(), x[1].clone().flatten(0, 2), eps),
                2e-5,
            );
        }
    }

    #[test]
    fn rope_kernel_matches_the_composed_function() {
        let d = Device::flex();
        for [b, s, h, hd] in [[1, 3, 2, 4], [3, 41, 4, 64]] {
            // Random tables (not cos/sin of anything), so a mixed-up half or sign shows.
            let cos = random([b, s, 1, hd], 1.0, &d);
            let sin = random([b, s, 1, hd], 1.0, &d);
            check(
                "rope",
                [random([b, s, h, hd], 1.0, &d)],
                [true],
                |x| {
                    let (c, sn) = (
                        cos.clone().to_device(&x[0].device()),
                        sin.clone().to_device(&x[0].device()),
                    );
                    rope(x[0].clone(), &c, &sn)
                },
                |x| {
                    let (c, sn) = (
                        cos.clone().to_device(&x[0].device()),
                        sin.clone().to_device(&x[0].device()),
                    );
                    composed::rope(x[0].clone(), &c, &sn)
                },
                1e-6,
            );
        }
    }

    /// Grouped-query attention with a causal-and-padding mask (one row fully hidden): the kernel
    /// against burn's attention on repeated keys and values, values and all three gradients.
    #[test]
    fn attention_kernel_matches_burns_attention() {
        use burn::tensor::module::attention as burn_attention;
        use burn::tensor::ops::AttentionModuleOptions;
        let d = Device::flex();
        for [b, heads, kv, s, l, hd] in [
            [1, 2, 1, 3, 3, 4],
            [2, 4, 1, 37, 37, 16],
            [2, 4, 2, 5, 9, 8],
        ] {
            let q = random([b, heads, s, hd], 1.0, &d);
            let k = random([b, kv, l, hd], 1.0, &d);
            let v = random([b, kv, l, hd], 1.0, &d);
            // Key j is hidden from query i when j > i + (l − s) (causal over a past of l − s);
            // in batch 1 key 0 is padding; in batch 0 query 0 sees nothing (a fully hidden row
            // gives zeros, as in burn's attention).
            let mut hide = Vec::new();
            for bi in 0..b {
                for i in 0..s {
                    for j in 0..l {
                        hide.push(j > i + (l - s) || (bi == 1 && j == 0) || (bi == 0 && i == 0));
                    }
                }
            }
            let mask = Tensor::<4, Bool>::from_data(TensorData::new(hide, [b, 1, s, l]), &d);
            let scale = 0.3;
            let groups = heads / kv;
            let repeat = move |t: Tensor<4>| {
                let [b, kv, l, hd] = t.dims();
                t.unsqueeze_dim::<5>(2)
                    .expand([b, kv, groups, l, hd])
                    .reshape([b, kv * groups, l, hd])
            };
            let m = mask.clone();
            let composed = move |x: &[Tensor<4>]| {
                let [b, h, s, _] = x[0].dims();
                let l = x[1].dims()[2];
                let mask =
                    Tensor::<4, Bool>::from_data(m.to_data(), &x[0].device()).expand([b, h, s, l]);
                let options = AttentionModuleOptions {
                    scale: Some(scale),
                    softcap: None,
                    is_causal: false,
                };
                burn_attention(
                    x[0].clone(),
                    repeat(x[1].clone()),
                    repeat(x[2].clone()),
                    Some(mask),
                    None,
                    options,
                )
            };
            let kernel = move |x: &[Tensor<4>]| {
                let mask = Tensor::<4, Bool>::from_data(mask.to_data(), &x[0].device());
                attention(&x[0], &x[1], &x[2], Some(&mask), scale, None)
                    .expect("the kernel applies")
            };
            // q, k and v have different shapes under grouping: `check` takes one shape, so the
            // comparison runs on the three separately-shaped inputs directly.
            let device = Device::flex().autodiff();
            let lift = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), &device).require_grad();
            let (qk, kk, vk) = (lift(&q), lift(&k), lift(&v));
            let (qc, kc, vc) = (lift(&q), lift(&k), lift(&v));
            let yk = kernel(&[qk.clone(), kk.clone(), vk.clone()]);
            let yc = composed(&[qc.clone(), kc.clone(), vc.clone()]);
            assert_close("attention value", vec(yk.clone()), vec(yc.clone()), 1e-5);
            let w = Tensor::<4>::from_data(random(yk.dims(), 1.0, &d).to_data(), &device);
            let gk = (yk * w.clone()).sum().backward();
            let gc = (yc * w).sum().backward();
            for (name, a, c) in [("q", &qk, &qc), ("k", &kk, &kc), ("v", &vk, &vc)] {
                assert_close(
                    &format!("attention ∂{name} {b}x{heads}/{kv}x{s}x{l}"),
                    vec(a.grad(&gk).expect("kernel gradient")),
                    vec(c.grad(&gc).expect("composed gradient")),
                    1e-5,
                );
            }
        }
        // Outside autodiff (inference) the backend's own attention runs.
        let x = random([1, 2, 3, 4], 1.0, &d);
        assert!(attention(&x, &x, &x, None, 1.0, None).is_none());
    }

    /// transformers' `gelu_pytorch_tanh` and its derivative in f64, at inputs where a naive
    /// `exp` overflows: both paths finite and exact.
    #[test]
    fn gelu_tanh_has_finite_exact_gradients_at_extreme_inputs() {
        let device = Device::flex().autodiff();
        let xs = [-200.0f32, -60.0, -12.0, -1.5, 0.0, 0.7, 9.0, 300.0];
        for kernel in [true, false] {
            let x = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), &device)
                .require_grad();
            let y = if kernel {
                gelu_tanh_mul(x.clone(), Tensor::ones([xs.len()], &device))
            } else {
                composed::gelu_tanh(x.clone())
            };
            let grads = y.clone().sum().backward();
            let g = vec(x.grad(&grads).expect("gradient"));
            let out = vec(y);
            for (i, &v) in xs.iter().enumerate() {
                let v = f64::from(v);
                let k = 0.797_884_560_802_865_4;
                let z = k * (v + 0.044715 * v * v * v);
                let t = z.tanh();
                let want = 0.5 * v * (1.0 + t);
                let dwant =
                    0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
                assert!(
                    (f64::from(out[i]) - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "kernel {kernel}: gelu({v}) = {} vs {want}",
                    out[i]
                );
                assert!(g[i].is_finite(), "kernel {kernel}: gelu'({v}) = {}", g[i]);
                assert!(
                    (f64::from(g[i]) - dwant).abs() < 1e-4,
                    "kernel {kernel}: gelu'({v}) = {} vs {dwant}",
                    g[i]
                );
            }
        }
    }
}
