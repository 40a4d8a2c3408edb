//! GGUF, the file format of llama.cpp and Ollama: reading (v2 and v3, every metadata type,
//! memory-mapped tensor data, dequantization of the common quant types), building a Gemma from
//! it, a tokenizer from its `tokenizer.ggml.*` metadata, and writing models back.
//!
//! ```no_run
//! use kwx_core::gguf::GgufFile;
//! # fn main() -> kwx_core::Result<()> {
//! let file = GgufFile::open("gemma-3-270m-q4_k_m.gguf")?;
//! println!("{} tensors, architecture {:?}", file.tensors().len(), file.get_str("general.architecture"));
//! let device = burn::tensor::Device::default();
//! let model = kwx_core::Gemma::from_gguf("gemma-3-270m-q4_k_m.gguf", &device)?;
//! # let _ = model; Ok(()) }
//! ```
//!
//! The parser never trusts a length: every count is checked against the bytes that remain
//! before anything is allocated, so a corrupt or hostile file is a typed [`Error::GgufFormat`],
//! never a panic or a multi-gigabyte allocation.

pub mod quant;
pub mod tokenizer;
mod weights;
pub mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
pub use quant::{GgmlType, QuantError};
pub use tokenizer::{GgufVocab, tokenizer_from_gguf};
pub use weights::{GgufSource, config_from_gguf, is_gguf};
pub use writer::{GgufWriter, WriteOptions, write_gemma};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays inside arrays the reader accepts.
const MAX_ARRAY_DEPTH: usize = 4;
/// Most dimensions a GGML tensor can have.
const MAX_DIMS: u32 = 4;

/// The type tag of a metadata value (`gguf_type` in ggml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type for a GGUF type id.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        match self {
            Self::U8 => 0,
            Self::I8 => 1,
            Self::U16 => 2,
            Self::I16 => 3,
            Self::U32 => 4,
            Self::I32 => 5,
            Self::F32 => 6,
            Self::Bool => 7,
            Self::String => 8,
            Self::Array => 9,
            Self::U64 => 10,
            Self::I64 => 11,
            Self::F64 => 12,
        }
    }

    /// Fewest bytes one value of this type occupies in a file (strings: the length prefix;
    /// arrays: type tag and count). Used to bound counts before allocating.
    fn min_size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// An array: the element type (kept so an empty array round-trips) and the values.
    Array(ValueType, Vec<MetadataValue>),
}

impl MetadataValue {
    /// The type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F32(_) => ValueType::F32,
            Self::F64(_) => ValueType::F64,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(..) => ValueType::Array,
        }
    }

    /// Any integer value as `u64`, if it is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value as `i64`, if it fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any integer value as `u32`, if it fits.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// A float (or integer) value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            // GGUF writers store decimals such as 1e-6 as f32: read them back as the shortest
            // decimal that rounds to the stored f32, so a config round-trips exactly.
            Self::F32(v) => Some(v.to_string().parse().unwrap_or(v.into())),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A float value as `f32`.
    pub fn as_f32(&self) -> Option<f32> {
        self.as_f64().map(|v| v as f32)
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array's values.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(_, v) => Some(v),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGUF order: the fastest-varying first (the reverse of PyTorch's shape).
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of data.
    pub fn n_bytes(&self) -> u64 {
        // Checked when the file was parsed.
        self.ggml_type.bytes_for(self.n_elements()).unwrap_or(0)
    }

    /// The shape in PyTorch / row-major order (slowest-varying first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

enum Bytes {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mmap(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata, tensor table and the (memory-mapped) data.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetadataValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file; tensor data stays memory-mapped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only and kwx never writes to the file while it is open.
        // As with every mmap, another process truncating the file underneath is outside what
        // the program can guard against.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.to_path_buf(), Bytes::Mmap(map))
    }

    /// Parses a GGUF image held in memory (`name` is used in error messages).
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self> {
        Self::parse(name.into(), Bytes::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let header = parse_header(bytes.as_slice()).map_err(|e| match e {
            ParseError::Format { offset, message } => Error::GgufFormat {
                path: path.clone(),
                offset,
                message,
            },
            ParseError::Tensor { tensor, message } => Error::GgufTensor {
                path: path.clone(),
                tensor,
                message,
            },
        })?;
        Ok(Self {
            path,
            bytes,
            version: header.version,
            alignment: header.alignment,
            data_offset: header.data_offset,
            meta_index: header
                .metadata
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect(),
            metadata: header.metadata,
            tensor_index: header
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: header.tensors,
        })
    }

    /// The file (or the name given to [`GgufFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Tensor data alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A string value, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetadataValue::as_str)
    }

    /// A required value, or an error naming the key.
    pub fn require(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key)
            .ok_or_else(|| self.meta_error(key, "missing".into()))
    }

    /// A required non-negative integer that fits `usize`.
    pub fn require_usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                self.meta_error(key, format!("expected an unsigned integer, found {v:?}"))
            })
    }

    /// A required float.
    pub fn require_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64()
            .ok_or_else(|| self.meta_error(key, format!("expected a number, found {v:?}")))
    }

    /// A required string.
    pub fn require_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| self.meta_error(key, format!("expected a string, found {v:?}")))
    }

    /// An error about a metadata key of this file.
    pub fn meta_error(&self, key: &str, message: String) -> Error {
        Error::GgufMetadata {
            path: self.path.clone(),
            key: key.to_string(),
            message,
        }
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's table entry.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were checked when the file was parsed).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.bytes.as_slice()[start..start + info.n_bytes() as usize]
    }

    /// Dequantizes a tensor to f32, row-major (PyTorch order, see [`TensorInfo::shape`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name).ok_or_else(|| Error::GgufTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            message: "no such tensor in the file".into(),
        })?;
        let mut out = vec![0.0f32; info.n_elements() as usize];
        quant::dequantize(info.ggml_type, self.tensor_bytes(info), &mut out).map_err(|e| {
            Error::GgufTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(out)
    }
}

/// What [`parse_header`] found.
#[derive(Debug)]
pub struct GgufHeader {
    /// Format version.
    pub version: u32,
    /// Data alignment.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetadataValue)>,
    /// Tensor table.
    pub tensors: Vec<TensorInfo>,
}

/// Why [`parse_header`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not a well-formed GGUF.
    Format {
        /// Where.
        offset: u64,
        /// What.
        message: String,
    },
    /// A tensor entry is unusable.
    Tensor {
        /// The tensor.
        tensor: String,
        /// What.
        message: String,
    },
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError::Format {
            offset: self.pos as u64,
            message: message.into(),
        }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        if (self.remaining()) < n as u64 {
            return Err(self.err(format!(
                "file truncated: {what} needs {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ParseError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must leave room for `count × min_size` bytes.
    fn count(&mut self, what: &str, min_size: u64) -> Result<usize, ParseError> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n.checked_mul(min_size).is_none_or(|b| b > self.remaining()) {
            return Err(ParseError::Format {
                offset: at as u64,
                message: format!(
                    "{what} {n} is impossible: the file has only {} bytes left",
                    self.remaining()
                ),
            });
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        let at = self.pos;
        let n = self.count(&format!("{what} length"), 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|e| ParseError::Format {
            offset: at as u64 + 8 + e.utf8_error().valid_up_to() as u64,
            message: format!("{what} is not valid UTF-8"),
        })
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType, ParseError> {
        let at = self.pos;
        let id = self.u32(what)?;
        ValueType::from_id(id).ok_or_else(|| ParseError::Format {
            offset: at as u64,
            message: format!("{what}: unknown metadata value type {id}"),
        })
    }

    fn value(
        &mut self,
        ty: ValueType,
        key: &str,
        depth: usize,
    ) -> Result<MetadataValue, ParseError> {
        Ok(match ty {
            ValueType::U8 => MetadataValue::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(self.array(key)?)),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => MetadataValue::U32(self.u32(key)?),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => MetadataValue::U64(self.u64(key)?),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => MetadataValue::Bool(false),
                    1 => MetadataValue::Bool(true),
                    b => {
                        return Err(ParseError::Format {
                            offset: at as u64,
                            message: format!("metadata `{key}`: bool byte is {b}, not 0 or 1"),
                        });
                    }
                }
            }
            ValueType::String => MetadataValue::String(self.string(&format!("metadata `{key}`"))?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem = self.value_type(&format!("metadata `{key}` element type"))?;
                let n = self.count(&format!("metadata `{key}` array length"), elem.min_size())?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.value(elem, key, depth + 1)?);
                }
                MetadataValue::Array(elem, values)
            }
        })
    }
}

/// Parses the header, metadata and tensor table of a GGUF image and checks that every tensor's
/// data lies inside `bytes`. This is the whole attack surface of the reader (and the fuzz
/// target); it allocates at most in proportion to `bytes.len()`.
pub fn parse_header(bytes: &[u8]) -> Result<GgufHeader, ParseError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.array::<4>("magic")?;
    if magic != GGUF_MAGIC {
        return Err(ParseError::Format {
            offset: 0,
            message: format!("bad magic {magic:?}: expected \"GGUF\" (is this a GGUF file?)"),
        });
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(
                c.err("GGUF version 1 is obsolete; convert the file with a current llama.cpp")
            );
        }
        v if v.swap_bytes() <= 3 => {
            return Err(c.err("big-endian GGUF is not supported"));
        }
        v => return Err(c.err(format!("unsupported GGUF version {v} (kwx reads 2 and 3)"))),
    }
    // Smallest tensor entry: name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
    let n_tensors = c.count("tensor count", 32)?;
    // Smallest metadata entry: key length (8) + type (4) + one byte.
    let n_kv = c.count("metadata count", 13)?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut seen = HashMap::with_capacity(n_kv);
    for _ in 0..n_kv {
        let at = c.pos as u64;
        let key = c.string("metadata key")?;
        let ty = c.value_type(&format!("metadata `{key}` type"))?;
        let value = c.value(ty, &key, 0)?;
        if seen.insert(key.clone(), ()).is_some() {
            return Err(ParseError::Format {
                offset: at,
                message: format!("metadata key `{key}` appears twice"),
            });
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => {
                return Err(c.err(format!(
                    "general.alignment must be a power of two, found {v:?}"
                )));
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = HashMap::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let at = c.pos as u64;
        let n_dims = c.u32("tensor n_dims")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(ParseError::Format {
                offset: at,
                message: format!(
                    "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                ),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dimension")?);
        }
        let type_at = c.pos as u64;
        let type_id = c.u32("tensor type")?;
        let offset = c.u64("tensor offset")?;
        let tensor_err = |message: String| ParseError::Tensor {
            tensor: name.clone(),
            message,
        };
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            tensor_err(format!(
                "unknown ggml tensor type {type_id} (at byte {type_at}); this file needs a newer reader"
            ))
        })?;
        let n = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| tensor_err(format!("dimensions {dims:?} overflow")))?;
        if ggml_type.bytes_for(n).is_none() {
            return Err(tensor_err(format!(
                "{n} elements is not a whole number of {} blocks of {}",
                ggml_type.name(),
                ggml_type.block_size()
            )));
        }
        if offset % alignment != 0 {
            return Err(tensor_err(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if names.insert(name.clone(), ()).is_some() {
            return Err(tensor_err("tensor name appears twice".into()));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    for t in &tensors {
        let size = t.n_bytes();
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(size));
        if end.is_none_or(|e| e > file_len) {
            return Err(ParseError::Tensor {
                tensor: t.name.clone(),
                message: format!(
                    "data ({size} bytes at offset {}) runs past the end of the file ({file_len} bytes): truncated download?",
                    data_offset.saturating_add(t.offset)
                ),
            });
        }
    }
    Ok(GgufHeader {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}
