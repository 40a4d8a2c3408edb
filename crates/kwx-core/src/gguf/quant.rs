//! GGML tensor types as stored in GGUF files: block layouts, dequantization to `f32`, and the
//! quantizers the GGUF writer needs.
//!
//! Every codec follows ggml (`ggml-quants.c`: `dequantize_row_*`, `quantize_row_q8_0_ref`,
//! `ggml_compute_fp32_to_bf16`) and its Python mirror `gguf.quants` operation for operation, in
//! the same order and without fused multiply-adds, so the results are bitwise identical to
//! gguf-py's. `tests/gguf_quant.rs` checks that against fixtures made by
//! `scripts/make_quant_fixtures.py`.
//!
//! Bytes are read as little-endian at any alignment (tensor data comes straight from an mmap at
//! arbitrary offsets). Tensors larger than one chunk of 64 Ki values are processed in
//! parallel with rayon, one chunk of whole blocks per task.

use std::fmt;

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Elements in a K-quant super-block (`QK_K` in ggml).
const QK_K: usize = 256;

/// Values per parallel task: 64 Ki (256 KiB of f32), a whole number of blocks for every type
/// with a codec (block sizes 1, 32 and 256).
const CHUNK_ELEMS: usize = 1 << 16;

macro_rules! ggml_types {
    ($($(#[$meta:meta])* $var:ident = $id:literal, $name:literal, $block:expr, $size:expr;)*) => {
        /// A GGML tensor type as stored in GGUF (`ggml_type` ids from ggml.h).
        ///
        /// Ids that ggml removed (4, 5: `Q4_2`, `Q4_3`; 31-33: `Q4_0_4_4`, `Q4_0_4_8`,
        /// `Q4_0_8_8`; 36-38: `IQ4_NL_4_4` and friends) have no variant. Names, block sizes and
        /// block byte sizes are those of gguf-py's `GGMLQuantizationType` and
        /// `GGML_QUANT_SIZES`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum GgmlType {
            $($(#[$meta])* $var,)*
        }

        impl GgmlType {
            /// Every type, in id order.
            pub const ALL: &'static [GgmlType] = &[$(GgmlType::$var,)*];

            /// The type with ggml id `id`; `None` for ids ggml never had or has removed.
            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(Self::$var),)*
                    _ => None,
                }
            }

            /// The ggml id (the `ggml_type` value stored in GGUF tensor infos).
            pub fn id(self) -> u32 {
                match self {
                    $(Self::$var => $id,)*
                }
            }

            /// The name gguf-py gives the type, e.g. `"Q4_K"`, `"F32"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$var => $name,)*
                }
            }

            /// Elements per block (1 for the plain types F32, F16, BF16, integers, F64).
            pub fn block_size(self) -> usize {
                match self {
                    $(Self::$var => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self {
                    $(Self::$var => $size,)*
                }
            }
        }
    };
}

ggml_types! {
    /// 32-bit IEEE float.
    F32 = 0, "F32", 1, 4;
    /// 16-bit IEEE half float.
    F16 = 1, "F16", 1, 2;
    /// 32 values: f16 scale, 4-bit quants (offset 8).
    Q4_0 = 2, "Q4_0", 32, 2 + 16;
    /// 32 values: f16 scale and minimum, 4-bit quants.
    Q4_1 = 3, "Q4_1", 32, 2 + 2 + 16;
    /// 32 values: f16 scale, 5-bit quants (offset 16).
    Q5_0 = 6, "Q5_0", 32, 2 + 4 + 16;
    /// 32 values: f16 scale and minimum, 5-bit quants.
    Q5_1 = 7, "Q5_1", 32, 2 + 2 + 4 + 16;
    /// 32 values: f16 scale, 8-bit quants.
    Q8_0 = 8, "Q8_0", 32, 2 + 32;
    /// 32 values: f32 scale and sum, 8-bit quants (ggml's matmul intermediate).
    Q8_1 = 9, "Q8_1", 32, 4 + 4 + 32;
    /// 2-bit K-quant super-block.
    Q2K = 10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4;
    /// 3-bit K-quant super-block.
    Q3K = 11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12;
    /// 4-bit K-quant super-block: f16 scale and minimum, 6-bit sub-block scales and minima.
    Q4K = 12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12;
    /// 5-bit K-quant super-block: as Q4_K plus one high bit per value.
    Q5K = 13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12;
    /// 6-bit K-quant super-block: 8-bit sub-block scales and an f16 scale.
    Q6K = 14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16;
    /// 8-bit K-quant super-block (ggml's matmul intermediate).
    Q8K = 15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8;
    /// 2.06 bits per weight, importance-matrix lattice quant.
    IQ2XXS = 16, "IQ2_XXS", QK_K, 2 + QK_K / 4;
    /// 2.31 bits per weight lattice quant.
    IQ2XS = 17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32;
    /// 3.06 bits per weight lattice quant.
    IQ3XXS = 18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8;
    /// 1.56 bits per weight lattice quant.
    IQ1S = 19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16;
    /// 4-bit non-linear quant, blocks of 32.
    IQ4NL = 20, "IQ4_NL", 32, 2 + 16;
    /// 3.44 bits per weight lattice quant.
    IQ3S = 21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4;
    /// 2.5 bits per weight lattice quant.
    IQ2S = 22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16;
    /// 4-bit non-linear quant, super-blocks of 256.
    IQ4XS = 23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64;
    /// 8-bit signed integer.
    I8 = 24, "I8", 1, 1;
    /// 16-bit signed integer.
    I16 = 25, "I16", 1, 2;
    /// 32-bit signed integer.
    I32 = 26, "I32", 1, 4;
    /// 64-bit signed integer.
    I64 = 27, "I64", 1, 8;
    /// 64-bit IEEE float.
    F64 = 28, "F64", 1, 8;
    /// 1.75 bits per weight lattice quant.
    IQ1M = 29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32;
    /// bfloat16 (the upper half of an f32).
    BF16 = 30, "BF16", 1, 2;
    /// Ternary quant, 1.69 bits per weight.
    TQ1_0 = 34, "TQ1_0", QK_K, 2 + 4 * 13;
    /// Ternary quant, 2.06 bits per weight.
    TQ2_0 = 35, "TQ2_0", QK_K, 2 + 64;
    /// Microscaling FP4 (e2m1 values, e8m0 scale per 32).
    MXFP4 = 39, "MXFP4", 32, 1 + 16;
    /// NVIDIA FP4 (e2m1 values, fp8 scales, blocks of 64).
    NVFP4 = 40, "NVFP4", 64, 4 + 32;
    /// 1-bit quant, blocks of 128.
    Q1_0 = 41, "Q1_0", 128, 2 + 16;
}

/// Types [`dequantize`] decodes, for error messages.
const DEQUANTIZE_SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";
/// Types [`quantize`] encodes, for error messages.
const QUANTIZE_SUPPORTED: &str = "F32, F16, BF16, Q8_0";

impl GgmlType {
    /// Bytes for `n_elements`, or `None` when `n_elements` is not a multiple of the block size
    /// or the byte count overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        // Block sizes are small constants, never 0.
        let block = self.block_size() as u64;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size() as u64)
    }

    /// Whether [`dequantize`] supports it.
    pub fn can_dequantize(self) -> bool {
        use GgmlType as T;
        matches!(
            self,
            T::F32
                | T::F16
                | T::BF16
                | T::Q8_0
                | T::Q4_0
                | T::Q4_1
                | T::Q5_0
                | T::Q5_1
                | T::Q4K
                | T::Q5K
                | T::Q6K
        )
    }

    /// Whether [`quantize`] supports it.
    pub fn can_quantize(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16 | Self::Q8_0)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the block codecs (the caller wraps them with file and tensor names).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// There is no codec for this type in this direction.
    #[error(
        "{op} {ty} is not supported (supported: {supported}); use a GGUF file whose tensors \
         are all of those types"
    )]
    Unsupported {
        /// The type asked for.
        ty: GgmlType,
        /// `"dequantizing"` or `"quantizing to"`.
        op: &'static str,
        /// The types that are supported in this direction.
        supported: &'static str,
    },
    /// The element count does not fill whole blocks.
    #[error(
        "{n_elements} values are not a whole number of {ty} blocks of {block_size}: a {ty} \
         tensor's row length must be a multiple of {block_size}"
    )]
    BlockMultiple {
        /// The type.
        ty: GgmlType,
        /// Number of values.
        n_elements: u64,
        /// Values per block of `ty`.
        block_size: usize,
    },
    /// The byte count does not match the element count.
    #[error(
        "{ty} data for {n_elements} values must be {expected} bytes, got {actual}: the tensor's \
         offset, shape or type disagrees with its data (truncated or corrupt file?)"
    )]
    Length {
        /// The type.
        ty: GgmlType,
        /// Number of values expected.
        n_elements: u64,
        /// Bytes that many values of `ty` take.
        expected: u64,
        /// Bytes given.
        actual: u64,
    },
    /// A value to quantize is NaN or infinite.
    #[error(
        "cannot store value {index} ({value}) as {ty}: only finite values can be quantized; \
         fix the source tensor"
    )]
    NonFinite {
        /// The target type.
        ty: GgmlType,
        /// Index of the first offending value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A finite value to quantize would become infinite in the target type.
    #[error(
        "cannot store value {index} ({value}) as {ty}: magnitudes from about {limit} overflow \
         to infinity; store this tensor as F32 instead"
    )]
    OutOfRange {
        /// The target type.
        ty: GgmlType,
        /// Index of the first offending value.
        index: usize,
        /// The value.
        value: f32,
        /// Smallest magnitude that overflows (approximate for Q8_0, whose f16 scale is
        /// `max|x| / 127`).
        limit: f32,
    },
}

/// Decodes `data` (exactly `ty.bytes_for(out.len())` bytes) into `out`.
///
/// Bitwise identical to ggml's `dequantize_row_*` and gguf-py's `gguf.quants.dequantize`. Any bit
/// pattern decodes (NaN or infinite f16 scales come out as NaN or infinities, as in ggml).
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    use GgmlType as T;
    if !ty.can_dequantize() {
        return Err(QuantError::Unsupported {
            ty,
            op: "dequantizing",
            supported: DEQUANTIZE_SUPPORTED,
        });
    }
    let n_elements = out.len() as u64;
    let expected = ty.bytes_for(n_elements).ok_or(QuantError::BlockMultiple {
        ty,
        n_elements,
        block_size: ty.block_size(),
    })?;
    if data.len() as u64 != expected {
        return Err(QuantError::Length {
            ty,
            n_elements,
            expected,
            actual: data.len() as u64,
        });
    }
    match ty {
        T::F32 => par_decode(ty, data, out, decode_f32),
        T::F16 => par_decode(ty, data, out, decode_f16),
        T::BF16 => par_decode(ty, data, out, decode_bf16),
        T::Q8_0 => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q8_0)),
        T::Q4_0 => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q4_0)),
        T::Q4_1 => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q4_1)),
        T::Q5_0 => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q5_0)),
        T::Q5_1 => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q5_1)),
        T::Q4K => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q4_k)),
        T::Q5K => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q5_k)),
        T::Q6K => par_decode(ty, data, out, |d, o| decode_blocks(d, o, block_q6_k)),
        _ => {
            return Err(QuantError::Unsupported {
                ty,
                op: "dequantizing",
                supported: DEQUANTIZE_SUPPORTED,
            });
        }
    }
    Ok(())
}

/// Encodes f32 values as `ty` (F32, F16, BF16 or Q8_0; see [`GgmlType::can_quantize`]).
///
/// Byte for byte what gguf-py's `gguf.quants.quantize` (and ggml's reference quantizers) make:
/// F16 rounds to nearest even, BF16 as `ggml_compute_fp32_to_bf16`, Q8_0 as
/// `quantize_row_q8_0_ref`. NaN and infinite inputs are refused ([`QuantError::NonFinite`]), as
/// are finite values that would overflow to infinity ([`QuantError::OutOfRange`]), where
/// gguf-py would silently store infinities.
pub fn quantize(ty: GgmlType, data: &[f32]) -> Result<Vec<u8>, QuantError> {
    use GgmlType as T;
    if !ty.can_quantize() {
        return Err(QuantError::Unsupported {
            ty,
            op: "quantizing to",
            supported: QUANTIZE_SUPPORTED,
        });
    }
    let n_elements = data.len() as u64;
    if !data.len().is_multiple_of(ty.block_size()) {
        return Err(QuantError::BlockMultiple {
            ty,
            n_elements,
            block_size: ty.block_size(),
        });
    }
    // Cannot overflow: these types take at most 4 bytes per value, and an `[f32]` holds at most
    // `isize::MAX` bytes.
    let mut out = vec![0u8; data.len() / ty.block_size() * ty.type_size()];
    let result = match ty {
        T::F32 => par_encode(ty, data, &mut out, encode_f32),
        T::F16 => par_encode(ty, data, &mut out, encode_f16),
        T::BF16 => par_encode(ty, data, &mut out, encode_bf16),
        T::Q8_0 => par_encode(ty, data, &mut out, |d, o| {
            encode_blocks(d, o, block_enc_q8_0)
        }),
        _ => {
            return Err(QuantError::Unsupported {
                ty,
                op: "quantizing to",
                supported: QUANTIZE_SUPPORTED,
            });
        }
    };
    result.map(|()| out)
}

// ---------------------------------------------------------------------------------------------
// Drivers

/// Runs `f` over matching chunks of `data` and `out` (whole blocks, [`CHUNK_ELEMS`] values
/// each), in parallel when there is more than one chunk. Lengths are already checked.
fn par_decode(ty: GgmlType, data: &[u8], out: &mut [f32], f: impl Fn(&[u8], &mut [f32]) + Sync) {
    if out.len() <= CHUNK_ELEMS {
        f(data, out);
        return;
    }
    let chunk_bytes = CHUNK_ELEMS / ty.block_size() * ty.type_size();
    data.par_chunks(chunk_bytes)
        .zip(out.par_chunks_mut(CHUNK_ELEMS))
        .for_each(|(d, o)| f(d, o));
}

/// Decodes whole blocks of `TS` bytes into `BS` values each.
#[inline(always)]
fn decode_blocks<const TS: usize, const BS: usize>(
    data: &[u8],
    out: &mut [f32],
    block: impl Fn(&[u8; TS], &mut [f32; BS]),
) {
    let (blocks, _) = data.as_chunks::<TS>();
    let (outs, _) = out.as_chunks_mut::<BS>();
    for (b, o) in blocks.iter().zip(outs) {
        block(b, o);
    }
}

/// A value [`quantize`] refuses, located within the slice an encoder was given.
struct Bad {
    index: usize,
    value: f32,
    /// `None`: not finite; `Some(limit)`: overflows from magnitude `limit`.
    limit: Option<f32>,
}

impl Bad {
    fn into_error(self, ty: GgmlType) -> QuantError {
        match self.limit {
            None => QuantError::NonFinite {
                ty,
                index: self.index,
                value: self.value,
            },
            Some(limit) => QuantError::OutOfRange {
                ty,
                index: self.index,
                value: self.value,
                limit,
            },
        }
    }
}

/// Runs `f` over matching chunks of `data` and `out`, in parallel when there is more than one,
/// and reports the first bad value of the whole input.
fn par_encode(
    ty: GgmlType,
    data: &[f32],
    out: &mut [u8],
    f: impl Fn(&[f32], &mut [u8]) -> Result<(), Bad> + Sync,
) -> Result<(), QuantError> {
    let first_bad = if data.len() <= CHUNK_ELEMS {
        f(data, out).err()
    } else {
        let chunk_bytes = CHUNK_ELEMS / ty.block_size() * ty.type_size();
        data.par_chunks(CHUNK_ELEMS)
            .zip(out.par_chunks_mut(chunk_bytes))
            .enumerate()
            .filter_map(|(i, (d, o))| {
                f(d, o).err().map(|bad| Bad {
                    index: bad.index + i * CHUNK_ELEMS,
                    ..bad
                })
            })
            .min_by_key(|bad| bad.index)
    };
    match first_bad {
        None => Ok(()),
        Some(bad) => Err(bad.into_error(ty)),
    }
}

/// Encodes whole blocks of `BS` values into `TS` bytes each.
#[inline(always)]
fn encode_blocks<const BS: usize, const TS: usize>(
    data: &[f32],
    out: &mut [u8],
    block: impl Fn(&[f32; BS], &mut [u8; TS]) -> Result<(), Bad>,
) -> Result<(), Bad> {
    let (blocks, _) = data.as_chunks::<BS>();
    let (outs, _) = out.as_chunks_mut::<TS>();
    for (i, (b, o)) in blocks.iter().zip(outs).enumerate() {
        block(b, o).map_err(|bad| Bad {
            index: bad.index + i * BS,
            ..bad
        })?;
    }
    Ok(())
}

/// `|x|` as bits. For non-negative floats the bit order is the numeric order, and every NaN and
/// infinity is at least `0x7F80_0000`, so one integer comparison (or max) tests for both.
#[inline(always)]
fn abs_bits(x: f32) -> u32 {
    x.to_bits() & 0x7fff_ffff
}

/// The largest [`abs_bits`] of `x`, in eight independent lanes so that it vectorizes.
#[inline(always)]
fn max_abs_bits(x: &[f32]) -> u32 {
    let mut lanes = [0u32; 8];
    let (chunks, rest) = x.as_chunks::<8>();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = (*m).max(abs_bits(v));
        }
    }
    let m = rest.iter().fold(0, |m, &v| m.max(abs_bits(v)));
    lanes.iter().fold(m, |a, &b| a.max(b))
}

/// First value that is not finite, or whose magnitude reaches `limit` (positive; infinity to
/// look for non-finite values only).
fn first_bad(data: &[f32], limit: f32) -> Option<Bad> {
    let limit_bits = limit.to_bits();
    // A branch-free max pass (it vectorizes); the search only runs when something is wrong.
    if max_abs_bits(data) < limit_bits {
        return None;
    }
    let index = data.iter().position(|&v| abs_bits(v) >= limit_bits)?;
    let value = data[index];
    Some(Bad {
        index,
        value,
        limit: value.is_finite().then_some(limit),
    })
}

// ---------------------------------------------------------------------------------------------
// Plain types

/// An f16 stored little-endian, as f32.
#[inline(always)]
fn f16_le(b0: u8, b1: u8) -> f32 {
    f16::from_bits(u16::from_le_bytes([b0, b1])).to_f32()
}

fn decode_f32(data: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(data.as_chunks::<4>().0) {
        *o = f32::from_le_bytes(*b);
    }
}

/// Values converted per batch through half's SIMD slice conversion.
const F16_BATCH: usize = 512;

fn decode_f16(data: &[u8], out: &mut [f32]) {
    let mut buf = [f16::ZERO; F16_BATCH];
    for (src, dst) in data
        .as_chunks::<2>()
        .0
        .chunks(F16_BATCH)
        .zip(out.chunks_mut(F16_BATCH))
    {
        let buf = &mut buf[..src.len()];
        for (h, b) in buf.iter_mut().zip(src) {
            *h = f16::from_bits(u16::from_le_bytes(*b));
        }
        buf.convert_to_f32_slice(dst);
    }
}

fn decode_bf16(data: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
        *o = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
    }
}

fn encode_f32(data: &[f32], out: &mut [u8]) -> Result<(), Bad> {
    if let Some(bad) = first_bad(data, f32::INFINITY) {
        return Err(bad);
    }
    for (o, v) in out.as_chunks_mut::<4>().0.iter_mut().zip(data) {
        *o = v.to_le_bytes();
    }
    Ok(())
}

/// Smallest magnitude that rounds to infinity in f16: halfway between 65504 (the largest f16)
/// and 65536, where round-to-nearest-even goes up.
const F16_OVERFLOW: f32 = 65520.0;

fn encode_f16(data: &[f32], out: &mut [u8]) -> Result<(), Bad> {
    if let Some(bad) = first_bad(data, F16_OVERFLOW) {
        return Err(bad);
    }
    let mut buf = [f16::ZERO; F16_BATCH];
    for (src, dst) in data
        .chunks(F16_BATCH)
        .zip(out.as_chunks_mut::<2>().0.chunks_mut(F16_BATCH))
    {
        let buf = &mut buf[..src.len()];
        // Round to nearest even, like numpy's `astype(np.float16)`.
        buf.convert_from_f32_slice(src);
        for (o, h) in dst.iter_mut().zip(buf.iter()) {
            *o = h.to_bits().to_le_bytes();
        }
    }
    Ok(())
}

/// Smallest magnitude that rounds to infinity in bf16 (bits 0x7F7F8000: halfway between the
/// largest bf16 0x7F7F and 0x7F80, an odd one, so the tie goes up).
const BF16_OVERFLOW: f32 = f32::from_bits(0x7F7F_8000);

/// f32 to bf16 bits as `ggml_compute_fp32_to_bf16` (and gguf-py): NaNs are made quiet and keep
/// their upper bits, everything else rounds to nearest even.
#[inline(always)]
fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    // No overflow: the largest non-NaN pattern is 0xFF80_0000.
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

fn encode_bf16(data: &[f32], out: &mut [u8]) -> Result<(), Bad> {
    if let Some(bad) = first_bad(data, BF16_OVERFLOW) {
        return Err(bad);
    }
    for (o, &v) in out.as_chunks_mut::<2>().0.iter_mut().zip(data) {
        *o = f32_to_bf16_bits(v).to_le_bytes();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Blocks of 32 (ggml-quants.c `dequantize_row_q*_0/1`, `quantize_row_q8_0_ref`)

/// Q8_0: `d: f16, qs: [i8; 32]`; `y = qs * d`.
#[inline(always)]
fn block_q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    for (o, &q) in y.iter_mut().zip(&b[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

/// Q4_0: `d: f16, qs: [u8; 16]`; value j is the low nibble of `qs[j]`, value j + 16 the high
/// one, both minus 8, times `d`.
#[inline(always)]
fn block_q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let (lo, hi) = y.split_at_mut(16);
    for ((&q, l), h) in b[2..].iter().zip(lo).zip(hi) {
        *l = f32::from(i16::from(q & 0x0F) - 8) * d;
        *h = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]`; `y = q * d + m`.
#[inline(always)]
fn block_q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    let (lo, hi) = y.split_at_mut(16);
    for ((&q, l), h) in b[4..].iter().zip(lo).zip(hi) {
        *l = f32::from(q & 0x0F) * d + m;
        *h = f32::from(q >> 4) * d + m;
    }
}

/// The 5-bit values of a Q5 block: nibbles from `qs`, bit 4 of value j from bit j of `qh`.
#[inline(always)]
fn q5_values(qh: u32, qs: &[u8], mut put: impl FnMut(usize, u8, u8)) {
    for (j, &q) in qs.iter().enumerate().take(16) {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        put(j, (q & 0x0F) | h0, (q >> 4) | h1);
    }
}

/// Q5_0: `d: f16, qh: u32, qs: [u8; 16]`; `y = (q - 16) * d`.
#[inline(always)]
fn block_q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    q5_values(qh, &b[6..], |j, x0, x1| {
        y[j] = f32::from(i16::from(x0) - 16) * d;
        y[j + 16] = f32::from(i16::from(x1) - 16) * d;
    });
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; `y = q * d + m`.
#[inline(always)]
fn block_q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    q5_values(qh, &b[8..], |j, x0, x1| {
        y[j] = f32::from(x0) * d + m;
        y[j + 16] = f32::from(x1) * d + m;
    });
}

/// 2^23: adding it to a float in `[0, 2^23)` rounds to an integer (nearest, ties to even) held
/// in the low mantissa bits.
const ROUND_MAGIC: f32 = 8_388_608.0;

/// Q8_0 as `quantize_row_q8_0_ref`: `d = max|x| / 127`, `q = roundf(x / d)` (computed as
/// `x * (1 / d)`, halves away from zero).
#[inline(always)]
fn block_enc_q8_0(x: &[f32; 32], y: &mut [u8; 34]) -> Result<(), Bad> {
    let amax_bits = max_abs_bits(x);
    if amax_bits >= f32::INFINITY.to_bits() {
        let index = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Bad {
            index,
            value: x[index],
            limit: None,
        });
    }
    let amax = f32::from_bits(amax_bits);
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let dh = f16::from_f32(d);
    if dh.is_infinite() {
        let index = x
            .iter()
            .position(|&v| abs_bits(v) == amax_bits)
            .unwrap_or(0);
        return Err(Bad {
            index,
            value: x[index],
            limit: Some(127.0 * F16_OVERFLOW),
        });
    }
    let (dst_d, dst_q) = y.split_at_mut(2);
    dst_d.copy_from_slice(&dh.to_bits().to_le_bytes());
    if id.is_infinite() {
        // `1 / d` overflows only when d is below 2^-128, far under the smallest f16, so the
        // stored scale is 0. gguf-py then gets inf or NaN for x * id and numpy casts those to
        // int8 as 0 (x86); store the same zeros to stay byte for byte equal.
        dst_q.fill(0);
        return Ok(());
    }
    for (q, &v) in dst_q.iter_mut().zip(x) {
        // roundf (halves away from zero) in float and integer operations that vectorize:
        // |s| <= 127 + a few ulps, so adding 2^23 rounds it to nearest, ties to even, and leaves
        // the integer in the low bits; `rounded - a` is exact and is -0.5 exactly when a tie
        // went down, which roundf takes up.
        let s = v * id;
        let a = s.abs();
        let m = a + ROUND_MAGIC;
        let rne = m.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
        let tie_down = (m - ROUND_MAGIC) - a == -0.5;
        let n = rne.wrapping_add(u32::from(tie_down)) as u8;
        *q = if s < 0.0 { n.wrapping_neg() } else { n };
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// K-quants (ggml-quants.c `dequantize_row_q4_K`, `_q5_K`, `_q6_K`)

/// Scale and minimum of sub-block `j` (0..8) from the 12 packed bytes (`get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// The 12 packed scale bytes of a Q4_K/Q5_K block (bytes 4..16).
#[inline(always)]
fn k4_scales(b: &[u8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    s.copy_from_slice(&b[4..16]);
    s
}

/// Q4_K: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`. Each 32 bytes of `qs` hold two
/// sub-blocks of 32 (low nibbles, then high); `y = d * sc * q - dmin * m`.
#[inline(always)]
fn block_q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let dmin = f16_le(b[2], b[3]);
    let scales = k4_scales(b);
    for (j, (qs, y)) in b[16..]
        .chunks_exact(32)
        .zip(y.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * j, &scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, &scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (lo, hi) = y.split_at_mut(32);
        for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
            *l = d1 * f32::from(q & 0x0F) - m1;
            *h = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K: `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`; as Q4_K, with bit
/// `i` of `qh[l]` the fifth bit of value `l` of sub-block `i`.
#[inline(always)]
fn block_q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let dmin = f16_le(b[2], b[3]);
    let scales = k4_scales(b);
    let qh = &b[16..48];
    for (j, (qs, y)) in b[48..]
        .chunks_exact(32)
        .zip(y.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * j, &scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, &scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * j), 1u8 << (2 * j + 1));
        let (lo, hi) = y.split_at_mut(32);
        for (((&q, &h), l), hv) in qs.iter().zip(qh).zip(lo).zip(hi) {
            let h1 = if h & u1 != 0 { 16 } else { 0 };
            let h2 = if h & u2 != 0 { 16 } else { 0 };
            *l = d1 * f32::from((q & 0x0F) + h1) - m1;
            *hv = d2 * f32::from((q >> 4) + h2) - m2;
        }
    }
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Each half of 128 values
/// takes 64 bytes of `ql`, 32 of `qh` and 8 scales; `y = d * sc * (q - 32)`.
#[inline(always)]
fn block_q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let d = f16_le(b[208], b[209]);
    let halves = b[..128]
        .chunks_exact(64)
        .zip(b[128..192].chunks_exact(32))
        .zip(b[192..208].chunks_exact(8))
        .zip(y.chunks_exact_mut(128));
    for (((ql, qh), sc), y) in halves {
        // ggml: y = d * sc[is] * q, evaluated as (d * sc) * q.
        let ds: [f32; 8] = std::array::from_fn(|k| d * f32::from(sc[k] as i8));
        for l in 0..32 {
            let is = l / 16;
            let h = qh[l];
            let q1 = i16::from((ql[l] & 0x0F) | ((h & 3) << 4)) - 32;
            let q2 = i16::from((ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
            let q3 = i16::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let q4 = i16::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            y[l] = ds[is] * f32::from(q1);
            y[l + 32] = ds[is + 2] * f32::from(q2);
            y[l + 64] = ds[is + 4] * f32::from(q3);
            y[l + 96] = ds[is + 6] * f32::from(q4);
        }
    }
}
