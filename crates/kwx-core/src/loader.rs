//! Loading a Hugging Face model folder: `config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, in f32, f16 or bf16.
//!
//! Files are memory-mapped; each tensor is converted to f32 straight from the mapping into the
//! buffer the device tensor is made from, so the only full copy is the model's own. Names follow
//! transformers' `Gemma*ForCausalLM` state dict; [`WeightSource`] lets other formats (GGUF) reuse
//! the same assembly.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::config::{Family, GemmaConfig};
use crate::error::{Error, Result};
use crate::model::{Attention, DecoderLayer, Gemma, Mlp, RmsNorm};

/// Where weights come from: tensors by Hugging Face name, as row-major f32.
pub trait WeightSource {
    /// Whether a tensor of this name exists.
    fn contains(&self, name: &str) -> bool;
    /// The shape of a tensor (Hugging Face order), if present.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Reads `name`, checking its shape (Hugging Face order) against `expected`.
    fn read(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>>;
    /// Reads the RMSNorm `name` as the scale `1 + w` the model holds. Sources that store the
    /// scale itself (GGUF) override this to avoid rounding `w` on the way.
    fn read_norm_scale(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let mut w = self.read(name, expected)?;
        w.iter_mut().for_each(|v| *v += 1.0);
        Ok(w)
    }
    /// Names present in the source that were never read.
    fn unused(&self) -> Vec<String>;
    /// All names present.
    fn names(&self) -> Vec<String>;
}

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// One or more memory-mapped safetensors files.
pub struct SafetensorsSource {
    paths: Vec<PathBuf>,
    maps: Vec<Mmap>,
    entries: BTreeMap<String, Entry>,
    used: BTreeSet<String>,
}

impl std::fmt::Debug for SafetensorsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsSource")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl SafetensorsSource {
    /// Opens the weights of a model folder: `model.safetensors`, or the shards listed in
    /// `model.safetensors.index.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: index.clone(),
                    source,
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Config {
                    path: index.clone(),
                    field: "weight_map".into(),
                    message: "missing or not an object".into(),
                })?;
            let mut files = BTreeSet::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| Error::Config {
                    path: index.clone(),
                    field: format!("weight_map.{name}"),
                    message: "expected a file name".into(),
                })?;
                files.insert(dir.join(file));
            }
            Self::open(files.into_iter().collect())
        } else {
            Self::open(vec![dir.join("model.safetensors")])
        }
    }

    /// Opens the given safetensors files; a tensor name may appear in only one of them.
    pub fn open(paths: Vec<PathBuf>) -> Result<Self> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut entries = BTreeMap::new();
        for (file, path) in paths.iter().enumerate() {
            let handle = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the mapping is read-only and kwx never writes to model files; as with every
            // mmap-based loader, another process truncating the file while it is mapped is outside
            // what the program can guard against.
            #[allow(unsafe_code)]
            let map = unsafe { Mmap::map(&handle) }.map_err(|e| Error::io(path, e))?;
            let corrupt = |message: String| Error::Safetensors {
                path: path.clone(),
                message,
            };
            let (header_len, metadata) = SafeTensors::read_metadata(&map)
                .map_err(|e| corrupt(format!("{e} (truncated or corrupt file?)")))?;
            let data_start = 8 + header_len;
            let data_len = map.len().saturating_sub(data_start);
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                if end > data_len || start > end {
                    return Err(corrupt(format!(
                        "tensor `{name}` needs bytes {start}..{end} but the data section has {data_len} (truncated file?)"
                    )));
                }
                let numel: usize = info.shape.iter().product();
                if numel * info.dtype.bitsize() / 8 != end - start {
                    return Err(corrupt(format!(
                        "tensor `{name}`: byte size does not match shape"
                    )));
                }
                let entry = Entry {
                    file,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + start,
                    end: data_start + end,
                };
                if entries.insert(name.clone(), entry).is_some() {
                    return Err(corrupt(format!(
                        "tensor `{name}` appears in more than one file"
                    )));
                }
            }
            maps.push(map);
        }
        Ok(Self {
            paths,
            maps,
            entries,
            used: BTreeSet::new(),
        })
    }

    /// The dtype and shape of a tensor, if present.
    pub fn info(&self, name: &str) -> Option<(Dtype, &[usize])> {
        self.entries
            .get(name)
            .map(|e| (e.dtype, e.shape.as_slice()))
    }
}

impl WeightSource for SafetensorsSource {
    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn read(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            hint: String::new(),
        })?;
        if entry.shape != expected {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected: expected.to_vec(),
                got: entry.shape.clone(),
            });
        }
        let bytes = &self.maps[entry.file][entry.start..entry.end];
        let values = match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        self.used.insert(name.to_string());
        Ok(values)
    }

    fn unused(&self) -> Vec<String> {
        self.entries
            .keys()
            .filter(|n| !self.used.contains(*n))
            .cloned()
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}

/// Every tensor the config implies, with its Hugging Face shape.
fn expected_tensors(
    config: &GemmaConfig,
    prefix: &str,
    head_prefix: &str,
) -> Vec<(String, Vec<usize>)> {
    let (h, hd, v) = (config.hidden_size, config.head_dim, config.vocab_size);
    let (nh, nkv, inter) = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
    );
    let mut out = vec![(format!("{prefix}embed_tokens.weight"), vec![v, h])];
    for i in 0..config.num_hidden_layers {
        let p = format!("{prefix}layers.{i}.");
        let mut push =
            |name: &str, shape: Vec<usize>| out.push((format!("{p}{name}.weight"), shape));
        push("self_attn.q_proj", vec![nh * hd, h]);
        push("self_attn.k_proj", vec![nkv * hd, h]);
        push("self_attn.v_proj", vec![nkv * hd, h]);
        push("self_attn.o_proj", vec![h, nh * hd]);
        push("mlp.gate_proj", vec![inter, h]);
        push("mlp.up_proj", vec![inter, h]);
        push("mlp.down_proj", vec![h, inter]);
        if config.family == Family::Gemma3 {
            push("self_attn.q_norm", vec![hd]);
            push("self_attn.k_norm", vec![hd]);
        }
        push("input_layernorm", vec![h]);
        push("post_attention_layernorm", vec![h]);
        if config.family != Family::Gemma1 {
            push("pre_feedforward_layernorm", vec![h]);
            push("post_feedforward_layernorm", vec![h]);
        }
    }
    out.push((format!("{prefix}norm.weight"), vec![h]));
    if !config.tie_word_embeddings {
        out.push((format!("{head_prefix}weight"), vec![v, h]));
    }
    out
}

/// Checks names and shapes of every tensor before reading any, so a bad checkpoint fails fast
/// and a misnamed tensor gets a suggestion from the names the model does not expect.
fn check_names(
    config: &GemmaConfig,
    prefix: &str,
    head_prefix: &str,
    source: &impl WeightSource,
) -> Result<()> {
    let expected = expected_tensors(config, prefix, head_prefix);
    let wanted: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let names = source.names();
    for (name, shape) in &expected {
        match source.shape(name) {
            None => {
                let strays = names.iter().filter(|n| !wanted.contains(n.as_str()));
                return Err(Error::MissingTensor {
                    name: name.clone(),
                    hint: hint_for(name, strays),
                });
            }
            Some(got) if &got != shape => {
                return Err(Error::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    got,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Suggests the closest present name, for a missing-tensor error.
fn hint_for<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> String {
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= 6)
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Prefixes under which checkpoints keep the text decoder: `Gemma*ForCausalLM`, and the text
/// tower of `Gemma3ForConditionalGeneration` as written by transformers 4.x and 5.x.
const PREFIXES: [(&str, &str); 4] = [
    ("model.", "lm_head."),
    ("model.language_model.", "lm_head."),
    ("language_model.model.", "language_model.lm_head."),
    ("", "lm_head."),
];

impl Gemma {
    /// Loads `config.json` and the safetensors weights of a Hugging Face model folder.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = GemmaConfig::from_file(dir.join("config.json"))?;
        let mut source = SafetensorsSource::from_dir(dir)?;
        Self::from_source(config, &mut source, device)
    }

    /// Builds the model from any [`WeightSource`] holding transformers-named tensors.
    pub fn from_source(
        config: GemmaConfig,
        source: &mut impl WeightSource,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let (prefix, head_prefix) = PREFIXES
            .iter()
            .copied()
            .find(|(p, _)| source.contains(&format!("{p}embed_tokens.weight")))
            .unwrap_or(PREFIXES[0]);
        let (h, hd, v) = (config.hidden_size, config.head_dim, config.vocab_size);
        let (nh, nkv, inter) = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.intermediate_size,
        );
        let eps = config.rms_norm_eps;
        check_names(&config, prefix, head_prefix, source)?;

        let embed = source.read(&format!("{prefix}embed_tokens.weight"), &[v, h])?;
        let embed_tokens = Embedding {
            weight: Param::from_tensor(tensor2(embed, [v, h], device)),
        };
        let qk = config.family == Family::Gemma3;
        let sandwich = config.family != Family::Gemma1;

        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("{prefix}layers.{i}.");
            let mut lin = |name: &str, out: usize, inp: usize| -> Result<Linear> {
                let w = source.read(&format!("{p}{name}.weight"), &[out, inp])?;
                Ok(linear_from_hf(w, out, inp, device))
            };
            let self_attn_q = lin("self_attn.q_proj", nh * hd, h)?;
            let self_attn_k = lin("self_attn.k_proj", nkv * hd, h)?;
            let self_attn_v = lin("self_attn.v_proj", nkv * hd, h)?;
            let self_attn_o = lin("self_attn.o_proj", h, nh * hd)?;
            let gate = lin("mlp.gate_proj", inter, h)?;
            let up = lin("mlp.up_proj", inter, h)?;
            let down = lin("mlp.down_proj", h, inter)?;
            let mut norm = |name: &str, dim: usize| -> Result<RmsNorm> {
                let w = source.read_norm_scale(&format!("{p}{name}.weight"), &[dim])?;
                Ok(norm_from(w, eps, device))
            };
            let q_norm = qk.then(|| norm("self_attn.q_norm", hd)).transpose()?;
            let k_norm = qk.then(|| norm("self_attn.k_norm", hd)).transpose()?;
            let input_layernorm = norm("input_layernorm", h)?;
            let post_attention_layernorm = norm("post_attention_layernorm", h)?;
            let pre_feedforward_layernorm = sandwich
                .then(|| norm("pre_feedforward_layernorm", h))
                .transpose()?;
            let post_feedforward_layernorm = sandwich
                .then(|| norm("post_feedforward_layernorm", h))
                .transpose()?;
            layers.push(DecoderLayer {
                self_attn: Attention {
                    q_proj: self_attn_q,
                    k_proj: self_attn_k,
                    v_proj: self_attn_v,
                    o_proj: self_attn_o,
                    q_norm,
                    k_norm,
                },
                mlp: Mlp {
                    gate_proj: gate,
                    up_proj: up,
                    down_proj: down,
                },
                input_layernorm,
                post_attention_layernorm,
                pre_feedforward_layernorm,
                post_feedforward_layernorm,
            });
        }
        let norm = norm_from(
            source.read_norm_scale(&format!("{prefix}norm.weight"), &[h])?,
            eps,
            device,
        );
        let head_name = format!("{head_prefix}weight");
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            let w = source.read(&head_name, &[v, h])?;
            Some(linear_from_hf(w, v, h, device))
        };

        // Tensors of other towers (vision, projector) are not ours; anything left under the
        // decoder's own prefix means the checkpoint and the config disagree.
        let stray: Vec<String> = source
            .unused()
            .into_iter()
            .filter(|n| {
                n.starts_with(prefix) && !n.contains("vision") && !n.contains("multi_modal")
            })
            .filter(|n| !(config.tie_word_embeddings && *n == head_name))
            .collect();
        if let Some(first) = stray.first() {
            return Err(Error::UnusedTensors {
                count: stray.len(),
                first: first.clone(),
            });
        }
        Ok(Gemma::from_parts(
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
        ))
    }
}

/// A norm from its scale `1 + w`.
fn norm_from(w: Vec<f32>, eps: f64, device: &Device) -> RmsNorm {
    let dim = w.len();
    RmsNorm {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [dim]), device)),
        eps,
    }
}

fn tensor2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// PyTorch stores a linear weight `[out, in]`; burn's `Linear` holds `[in, out]`.
fn linear_from_hf(w: Vec<f32>, out: usize, inp: usize, device: &Device) -> Linear {
    let mut t = vec![0.0f32; w.len()];
    // Blocked transpose keeps both sides in cache for the 2048×640-sized matrices.
    const B: usize = 32;
    for r0 in (0..out).step_by(B) {
        for c0 in (0..inp).step_by(B) {
            for r in r0..(r0 + B).min(out) {
                for c in c0..(c0 + B).min(inp) {
                    t[c * out + r] = w[r * inp + c];
                }
            }
        }
    }
    Linear {
        weight: Param::from_tensor(tensor2(t, [inp, out], device)),
        bias: None,
    }
}
