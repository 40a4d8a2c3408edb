//! Writing GGUF: a general writer ([`GgufWriter`]) and the export of a [`Gemma`] with the
//! metadata llama.cpp needs ([`write_gemma`]).
//!
//! Files are written to a temporary file beside the target and renamed into place once
//! complete and synced, so an interrupted export never leaves a half-written model.

use std::io::{BufWriter, Write};
use std::path::Path;

use burn::tensor::Tensor;

use super::quant::{self, GgmlType};
use super::tokenizer::GgufVocab;
use super::weights::{arch_name, hf_names, llama_cpp_query_scalar};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MetadataValue, ValueType};
use crate::config::{AttentionType, Family, gemma2_layer_types, gemma3_layer_types};
use crate::error::{Error, Result};
use crate::model::{Gemma, RmsNorm};

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    n_bytes: u64,
}

/// A GGUF v3 file under construction: metadata and a tensor table, with data supplied tensor
/// by tensor while the file is written (so a model is never held twice in memory).
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metadata value (replacing an earlier value of the same key).
    pub fn set(&mut self, key: impl Into<String>, value: MetadataValue) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Declares a tensor: GGUF dims (fastest-varying first) and its type. Its bytes are asked
    /// for by [`GgufWriter::write`].
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        ggml_type: GgmlType,
    ) -> Result<&mut Self> {
        let name = name.into();
        let bad = |message: String| Error::GgufTensor {
            path: "<writer>".into(),
            tensor: name.clone(),
            message,
        };
        if dims.is_empty() || dims.len() > 4 {
            return Err(bad(format!("{} dimensions (1 to 4 allowed)", dims.len())));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(bad("added twice".into()));
        }
        let n: u64 = dims.iter().product();
        let n_bytes = ggml_type
            .bytes_for(n)
            .filter(|_| dims[0].is_multiple_of(ggml_type.block_size() as u64))
            .ok_or_else(|| {
                bad(format!(
                    "rows of {} values are not whole {} blocks of {}",
                    dims[0],
                    ggml_type.name(),
                    ggml_type.block_size()
                ))
            })?;
        self.tensors.push(PendingTensor {
            name,
            dims,
            ggml_type,
            n_bytes,
        });
        Ok(self)
    }

    /// Writes the file atomically. `data(i, name)` returns the bytes of the `i`-th declared
    /// tensor; a wrong length is an error and nothing is left at `path`.
    pub fn write(
        &self,
        path: impl AsRef<Path>,
        mut data: impl FnMut(usize, &str) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kwx-gguf-");
        // A normal file's mode (0644 less the umask), not the temporary file's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
        let io = |e: std::io::Error| Error::io(path, e);
        {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
            let alignment = match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
                Some((_, v)) => v.as_u64().unwrap_or(DEFAULT_ALIGNMENT),
                None => DEFAULT_ALIGNMENT,
            };
            w.write_all(&GGUF_MAGIC).map_err(io)?;
            w.write_all(&3u32.to_le_bytes()).map_err(io)?;
            w.write_all(&(self.tensors.len() as u64).to_le_bytes())
                .map_err(io)?;
            w.write_all(&(self.metadata.len() as u64).to_le_bytes())
                .map_err(io)?;
            let mut header = Vec::new();
            for (key, value) in &self.metadata {
                put_string(&mut header, key);
                header.extend_from_slice(&value.value_type().id().to_le_bytes());
                put_value(&mut header, value);
            }
            let mut offset = 0u64;
            let mut offsets = Vec::with_capacity(self.tensors.len());
            for t in &self.tensors {
                put_string(&mut header, &t.name);
                header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
                for d in &t.dims {
                    header.extend_from_slice(&d.to_le_bytes());
                }
                header.extend_from_slice(&t.ggml_type.id().to_le_bytes());
                header.extend_from_slice(&offset.to_le_bytes());
                offsets.push(offset);
                offset = (offset + t.n_bytes).div_ceil(alignment) * alignment;
            }
            w.write_all(&header).map_err(io)?;
            let mut pos = 24 + header.len() as u64;
            let pad = |w: &mut BufWriter<_>, pos: &mut u64| -> Result<()> {
                let target = pos.div_ceil(alignment) * alignment;
                w.write_all(&vec![0u8; (target - *pos) as usize])
                    .map_err(io)?;
                *pos = target;
                Ok(())
            };
            pad(&mut w, &mut pos)?;
            let data_start = pos;
            for (i, t) in self.tensors.iter().enumerate() {
                let bytes = data(i, &t.name)?;
                if bytes.len() as u64 != t.n_bytes {
                    return Err(Error::GgufTensor {
                        path: path.to_path_buf(),
                        tensor: t.name.clone(),
                        message: format!("{} bytes supplied, {} declared", bytes.len(), t.n_bytes),
                    });
                }
                debug_assert_eq!(pos - data_start, offsets[i]);
                w.write_all(&bytes).map_err(io)?;
                pos += t.n_bytes;
                pad(&mut w, &mut pos)?;
            }
            w.flush().map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetadataValue) {
    match v {
        MetadataValue::U8(x) => out.push(*x),
        MetadataValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Bool(x) => out.push(u8::from(*x)),
        MetadataValue::String(s) => put_string(out, s),
        MetadataValue::Array(elem, values) => {
            out.extend_from_slice(&elem.id().to_le_bytes());
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            for x in values {
                put_value(out, x);
            }
        }
    }
}

/// How [`write_gemma`] stores the model.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Type of the 2-D weights: F32, F16, BF16 or Q8_0. Norms are always F32.
    pub weight_type: GgmlType,
    /// `general.name`.
    pub name: String,
    /// `{arch}.context_length`; `None` uses the config's `max_position_embeddings`.
    pub context_length: Option<usize>,
    /// Refuse models llama.cpp would compute differently from kwx (the default). When false,
    /// such models are written with kwx's extension keys (`{arch}.attention.query_pre_attn_scalar`,
    /// a per-layer `sliding_window_pattern`, Gemma 3's final softcap), which kwx reads back
    /// exactly and llama.cpp ignores.
    pub llama_cpp_compatible: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            weight_type: GgmlType::F32,
            name: "kwx export".into(),
            context_length: None,
            llama_cpp_compatible: true,
        }
    }
}

impl WriteOptions {
    /// Options with this weight type.
    pub fn new(weight_type: GgmlType) -> Self {
        Self {
            weight_type,
            ..Self::default()
        }
    }
}

/// `general.file_type` (llama.cpp's `llama_ftype`) for a weight type.
fn file_type(t: GgmlType) -> Option<u32> {
    Some(match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 7,
        GgmlType::BF16 => 32,
        _ => return None,
    })
}

/// Exports `model` with its tokenizer `vocab` to a GGUF that llama.cpp and Ollama load.
///
/// Refuses (typed error) what llama.cpp would compute differently from kwx: a
/// `query_pre_attn_scalar` other than the one llama.cpp derives, a layer pattern llama.cpp
/// cannot express, or Gemma 3 with a final logit softcap.
pub fn write_gemma(
    model: &Gemma,
    vocab: &GgufVocab,
    path: impl AsRef<Path>,
    options: &WriteOptions,
) -> Result<()> {
    let path = path.as_ref();
    let config = model.config();
    let arch = arch_name(config.family);
    let refuse = |key: &str, message: String| Error::GgufMetadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let ftype = file_type(options.weight_type).ok_or_else(|| {
        refuse(
            "general.file_type",
            format!(
                "kwx writes F32, F16, BF16 and Q8_0 weights, not {}",
                options.weight_type.name()
            ),
        )
    })?;
    if vocab.tokens.len() != config.vocab_size {
        return Err(refuse(
            "tokenizer.ggml.tokens",
            format!(
                "{} tokens for a model with a vocabulary of {}",
                vocab.tokens.len(),
                config.vocab_size
            ),
        ));
    }
    let llama_scalar = llama_cpp_query_scalar(
        config.family,
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.head_dim,
    );
    let strict = options.llama_cpp_compatible;
    let scalar_differs =
        config.family != Family::Gemma1 && config.query_pre_attn_scalar != llama_scalar;
    if strict && scalar_differs {
        return Err(refuse(
            &format!("{arch}.attention.key_length"),
            format!(
                "query_pre_attn_scalar {} differs from the {llama_scalar} llama.cpp derives for this shape; llama.cpp would compute different attention",
                config.query_pre_attn_scalar
            ),
        ));
    }

    let mut w = GgufWriter::new();
    let s = |v: &str| MetadataValue::String(v.to_string());
    let u = |v: usize| MetadataValue::U32(v as u32);
    let f = |v: f64| MetadataValue::F32(v as f32);
    w.set("general.architecture", s(arch));
    w.set("general.type", s("model"));
    w.set("general.name", s(&options.name));
    w.set("general.file_type", MetadataValue::U32(ftype));
    w.set("general.quantization_version", MetadataValue::U32(2));
    w.set(
        "general.alignment",
        MetadataValue::U32(DEFAULT_ALIGNMENT as u32),
    );
    let k = |name: &str| format!("{arch}.{name}");
    w.set(
        k("context_length"),
        u(options
            .context_length
            .unwrap_or(config.max_position_embeddings)),
    );
    w.set(k("embedding_length"), u(config.hidden_size));
    w.set(k("block_count"), u(config.num_hidden_layers));
    w.set(k("feed_forward_length"), u(config.intermediate_size));
    w.set(k("attention.head_count"), u(config.num_attention_heads));
    w.set(k("attention.head_count_kv"), u(config.num_key_value_heads));
    w.set(k("attention.key_length"), u(config.head_dim));
    w.set(k("attention.value_length"), u(config.head_dim));
    w.set(
        k("attention.layer_norm_rms_epsilon"),
        f(config.rms_norm_eps),
    );
    w.set(k("rope.freq_base"), f(config.rope_global.theta));
    if config.rope_global.linear_factor != 1.0 {
        w.set(k("rope.scaling.type"), s("linear"));
        w.set(
            k("rope.scaling.factor"),
            f(config.rope_global.linear_factor),
        );
    }
    if scalar_differs {
        w.set(
            k("attention.query_pre_attn_scalar"),
            f(config.query_pre_attn_scalar),
        );
    }
    let n = config.num_hidden_layers;
    let layer_flags = || {
        MetadataValue::Array(
            ValueType::Bool,
            config
                .layer_types
                .iter()
                .map(|t| MetadataValue::Bool(*t == AttentionType::Sliding))
                .collect(),
        )
    };
    match config.family {
        Family::Gemma1 => {
            if config.layer_types.iter().any(|t| *t != AttentionType::Full) {
                return Err(refuse(
                    &k("attention.sliding_window"),
                    "Gemma 1 has no sliding layers".into(),
                ));
            }
        }
        Family::Gemma2 => {
            if config.layer_types != gemma2_layer_types(n) {
                if !strict {
                    w.set(k("attention.sliding_window_pattern"), layer_flags());
                } else {
                    return Err(refuse(
                    &k("attention.sliding_window"),
                    "llama.cpp's gemma2 alternates sliding and full layers; this model does not".into(),
                    ));
                }
            }
            w.set(
                k("attention.sliding_window"),
                u(config.sliding_window.unwrap_or(4096)),
            );
            w.set(
                k("attn_logit_softcapping"),
                f(config.attn_logit_softcapping.unwrap_or(0.0)),
            );
            w.set(
                k("final_logit_softcapping"),
                f(config.final_logit_softcapping.unwrap_or(0.0)),
            );
        }
        Family::Gemma3 => {
            if let Some(cap) = config.final_logit_softcapping {
                if strict {
                    return Err(refuse(
                        &k("final_logit_softcapping"),
                        "llama.cpp's gemma3 applies no final logit softcap".into(),
                    ));
                }
                w.set(k("final_logit_softcapping"), f(cap));
            }
            match (1..=n).find(|&p| gemma3_layer_types(n, p) == config.layer_types) {
                Some(pattern) => w.set(k("attention.sliding_window_pattern"), u(pattern)),
                None if !strict => w.set(k("attention.sliding_window_pattern"), layer_flags()),
                None => {
                    return Err(refuse(
                        &k("attention.sliding_window_pattern"),
                        "layer types do not follow a 'every N-th layer is global' pattern".into(),
                    ));
                }
            };
            w.set(
                k("attention.sliding_window"),
                u(config.sliding_window.unwrap_or(512)),
            );
            w.set(k("rope.freq_base_swa"), f(config.rope_local.theta));
        }
    }
    vocab.write_metadata(&mut w);
    // A second end-of-sequence id (Gemma's <end_of_turn>) is llama.cpp's end-of-turn token.
    if let Some(&eot) = config.eos_token_ids.get(1) {
        w.set("tokenizer.ggml.eot_token_id", MetadataValue::U32(eot));
    }

    // Tensors: llama.cpp names, GGUF dims (reversed PyTorch shape), norms as the scale 1 + w.
    let names = hf_names(config);
    let mut types = Vec::with_capacity(names.len());
    for (hf, g, _norm) in &names {
        let shape = hf_shape(model, hf)?;
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let ty = if dims.len() == 1 {
            GgmlType::F32
        } else {
            options.weight_type
        };
        w.add_tensor(g.clone(), dims, ty)
            .map_err(|e| with_path(e, path))?;
        types.push(ty);
    }
    w.write(path, |i, g| {
        // Norms: the model holds the scale 1 + w, which is what GGUF stores.
        let values = hf_values(model, &names[i].0)?;
        quant::quantize(types[i], &values).map_err(|e| Error::GgufTensor {
            path: path.to_path_buf(),
            tensor: g.to_string(),
            message: e.to_string(),
        })
    })
}

fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::GgufTensor {
            tensor, message, ..
        } => Error::GgufTensor {
            path: path.to_path_buf(),
            tensor,
            message,
        },
        other => other,
    }
}

enum Weight<'a> {
    /// PyTorch `[out, in]` = burn `Linear` `[in, out]` transposed.
    Linear(&'a burn::nn::Linear),
    /// `[vocab, hidden]`.
    Embedding(&'a burn::nn::Embedding),
    Norm(&'a RmsNorm),
}

fn weight<'a>(model: &'a Gemma, hf: &str) -> Result<Weight<'a>> {
    let missing = || Error::MissingTensor {
        name: hf.to_string(),
        hint: " (not part of this model)".into(),
    };
    let name = hf.strip_prefix("model.").unwrap_or(hf);
    match name {
        "embed_tokens.weight" => return Ok(Weight::Embedding(&model.embed_tokens)),
        "norm.weight" => return Ok(Weight::Norm(&model.norm)),
        "lm_head.weight" => {
            return model
                .lm_head
                .as_ref()
                .map(Weight::Linear)
                .ok_or_else(missing);
        }
        _ => {}
    }
    let (layer, rest) = name
        .strip_prefix("layers.")
        .and_then(|r| r.split_once('.'))
        .ok_or_else(missing)?;
    let l = layer
        .parse::<usize>()
        .ok()
        .and_then(|i| model.layers.get(i))
        .ok_or_else(missing)?;
    Ok(match rest {
        "self_attn.q_proj.weight" => Weight::Linear(&l.self_attn.q_proj),
        "self_attn.k_proj.weight" => Weight::Linear(&l.self_attn.k_proj),
        "self_attn.v_proj.weight" => Weight::Linear(&l.self_attn.v_proj),
        "self_attn.o_proj.weight" => Weight::Linear(&l.self_attn.o_proj),
        "mlp.gate_proj.weight" => Weight::Linear(&l.mlp.gate_proj),
        "mlp.up_proj.weight" => Weight::Linear(&l.mlp.up_proj),
        "mlp.down_proj.weight" => Weight::Linear(&l.mlp.down_proj),
        "self_attn.q_norm.weight" => Weight::Norm(l.self_attn.q_norm.as_ref().ok_or_else(missing)?),
        "self_attn.k_norm.weight" => Weight::Norm(l.self_attn.k_norm.as_ref().ok_or_else(missing)?),
        "input_layernorm.weight" => Weight::Norm(&l.input_layernorm),
        "post_attention_layernorm.weight" => Weight::Norm(&l.post_attention_layernorm),
        "pre_feedforward_layernorm.weight" => {
            Weight::Norm(l.pre_feedforward_layernorm.as_ref().ok_or_else(missing)?)
        }
        "post_feedforward_layernorm.weight" => {
            Weight::Norm(l.post_feedforward_layernorm.as_ref().ok_or_else(missing)?)
        }
        _ => return Err(missing()),
    })
}

/// The PyTorch shape of a transformers-named weight of `model`.
fn hf_shape(model: &Gemma, hf: &str) -> Result<Vec<usize>> {
    Ok(match weight(model, hf)? {
        Weight::Linear(l) => {
            let [i, o] = l.weight.dims();
            vec![o, i]
        }
        Weight::Embedding(e) => e.weight.dims().to_vec(),
        Weight::Norm(n) => n.weight.dims().to_vec(),
    })
}

/// A transformers-named weight of `model` as row-major f32 in PyTorch layout (norms as the
/// scale `1 + w` the model holds).
pub(crate) fn hf_values(model: &Gemma, hf: &str) -> Result<Vec<f32>> {
    fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Device(format!("{e:?}")))
    }
    match weight(model, hf)? {
        Weight::Linear(l) => read(l.weight.val().transpose()),
        Weight::Embedding(e) => read(e.weight.val()),
        Weight::Norm(n) => read(n.weight.val()),
    }
}

impl GgufVocab {
    /// Adds the `tokenizer.ggml.*` keys for this vocabulary.
    pub fn write_metadata(&self, w: &mut GgufWriter) {
        let strings = |v: &[String]| {
            MetadataValue::Array(
                ValueType::String,
                v.iter().map(|s| MetadataValue::String(s.clone())).collect(),
            )
        };
        w.set(
            "tokenizer.ggml.model",
            MetadataValue::String(self.model.clone()),
        );
        if let Some(pre) = &self.pre {
            w.set("tokenizer.ggml.pre", MetadataValue::String(pre.clone()));
        }
        w.set("tokenizer.ggml.tokens", strings(&self.tokens));
        if let Some(scores) = &self.scores {
            w.set(
                "tokenizer.ggml.scores",
                MetadataValue::Array(
                    ValueType::F32,
                    scores.iter().map(|&x| MetadataValue::F32(x)).collect(),
                ),
            );
        }
        if let Some(types) = &self.token_types {
            w.set(
                "tokenizer.ggml.token_type",
                MetadataValue::Array(
                    ValueType::I32,
                    types.iter().map(|&x| MetadataValue::I32(x)).collect(),
                ),
            );
        }
        if let Some(merges) = &self.merges {
            w.set("tokenizer.ggml.merges", strings(merges));
        }
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", self.bos_id),
            ("tokenizer.ggml.eos_token_id", self.eos_id),
            ("tokenizer.ggml.unknown_token_id", self.unk_id),
            ("tokenizer.ggml.padding_token_id", self.pad_id),
        ] {
            if let Some(id) = id {
                w.set(key, MetadataValue::U32(id));
            }
        }
        w.set(
            "tokenizer.ggml.add_bos_token",
            MetadataValue::Bool(self.add_bos),
        );
        w.set(
            "tokenizer.ggml.add_eos_token",
            MetadataValue::Bool(self.add_eos),
        );
        w.set(
            "tokenizer.ggml.add_space_prefix",
            MetadataValue::Bool(self.add_space_prefix),
        );
    }
}
