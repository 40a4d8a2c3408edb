//! A Gemma from a GGUF: the config from `{arch}.*` metadata, and llama.cpp tensor names mapped
//! to transformers names (norms stored as `1 + w` there, dims listed fastest-first).

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::Device;

use super::{GgufFile, MetadataValue};
use crate::config::{
    AttentionType, Family, GemmaConfig, Rope, gemma2_layer_types, gemma3_layer_types,
};
use crate::error::{Error, Result};
use crate::loader::WeightSource;
use crate::model::Gemma;

/// The architectures kwx reads, as `general.architecture` names them.
const ARCHITECTURES: [(&str, Family); 3] = [
    ("gemma", Family::Gemma1),
    ("gemma2", Family::Gemma2),
    ("gemma3", Family::Gemma3),
];

/// The `general.architecture` name of a family.
pub(crate) fn arch_name(family: Family) -> &'static str {
    match family {
        Family::Gemma1 => "gemma",
        Family::Gemma2 => "gemma2",
        Family::Gemma3 => "gemma3",
    }
}

/// The attention scale llama.cpp uses for a Gemma, which it derives instead of reading
/// `query_pre_attn_scalar`: `n_embd / n_head` for the 27B models, `head_dim` otherwise.
pub(crate) fn llama_cpp_query_scalar(
    family: Family,
    layers: usize,
    hidden: usize,
    heads: usize,
    head_dim: usize,
) -> f64 {
    let is_27b = matches!(
        (family, layers),
        (Family::Gemma2, 46) | (Family::Gemma3, 62)
    );
    if is_27b {
        (hidden / heads.max(1)) as f64
    } else {
        head_dim as f64
    }
}

/// Builds the decoder config from a GGUF's own metadata.
pub fn config_from_gguf(file: &GgufFile) -> Result<GemmaConfig> {
    let arch = file.require_str("general.architecture")?;
    let family = ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            file.meta_error(
                "general.architecture",
                format!("`{arch}` is not a Gemma text model; kwx reads gemma, gemma2 and gemma3"),
            )
        })?;
    let key = |k: &str| format!("{arch}.{k}");
    let opt_usize = |k: &str| -> Result<Option<usize>> {
        match file.get(&key(k)) {
            None => Ok(None),
            Some(_) => file.require_usize(&key(k)).map(Some),
        }
    };
    let opt_f64 = |k: &str| -> Result<Option<f64>> {
        match file.get(&key(k)) {
            None => Ok(None),
            Some(_) => file.require_f64(&key(k)).map(Some),
        }
    };

    let hidden = file.require_usize(&key("embedding_length"))?;
    let layers = file.require_usize(&key("block_count"))?;
    let inter = file.require_usize(&key("feed_forward_length"))?;
    let heads = file.require_usize(&key("attention.head_count"))?;
    let kv_heads = opt_usize("attention.head_count_kv")?.unwrap_or(heads);
    if heads == 0 || hidden == 0 || layers == 0 {
        return Err(file.meta_error(
            &key("attention.head_count"),
            "zero heads, width or layers".into(),
        ));
    }
    let head_dim = opt_usize("attention.key_length")?.unwrap_or(hidden / heads);
    if let Some(v) = opt_usize("attention.value_length")?
        && v != head_dim
    {
        return Err(file.meta_error(
            &key("attention.value_length"),
            format!("{v} differs from key_length {head_dim}; Gemma uses one head width"),
        ));
    }
    let eps = opt_f64("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6);
    let theta = opt_f64("rope.freq_base")?.unwrap_or(10_000.0);
    let mut rope_global = Rope::new(theta);
    match file.get_str(&key("rope.scaling.type")) {
        None | Some("none") => {}
        Some("linear") => {
            rope_global.linear_factor = opt_f64("rope.scaling.factor")?.unwrap_or(1.0);
        }
        Some(other) => {
            return Err(file.meta_error(
                &key("rope.scaling.type"),
                format!("rope scaling `{other}` is not supported (kwx supports linear)"),
            ));
        }
    }

    let vocab = match file.tensor("token_embd.weight") {
        Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
        _ => match file
            .get("tokenizer.ggml.tokens")
            .and_then(MetadataValue::as_array)
        {
            Some(tokens) => tokens.len(),
            None => {
                return Err(Error::GgufTensor {
                    path: file.path().to_path_buf(),
                    tensor: "token_embd.weight".into(),
                    message:
                        "missing or not 2-D, and no tokenizer.ggml.tokens to size the vocabulary"
                            .into(),
                });
            }
        },
    };

    let sliding_window = opt_usize("attention.sliding_window")?;
    let (layer_types, rope_local) = match family {
        Family::Gemma1 => (vec![AttentionType::Full; layers], rope_global),
        Family::Gemma2 | Family::Gemma3 => {
            let default = if family == Family::Gemma2 {
                gemma2_layer_types(layers)
            } else {
                gemma3_layer_types(layers, 6)
            };
            let types = match file.get(&key("attention.sliding_window_pattern")) {
                None => default,
                Some(MetadataValue::Array(_, flags)) => {
                    if flags.len() != layers {
                        return Err(file.meta_error(
                            &key("attention.sliding_window_pattern"),
                            format!("{} entries for {layers} layers", flags.len()),
                        ));
                    }
                    flags
                        .iter()
                        .enumerate()
                        .map(|(i, f)| match f.as_bool() {
                            Some(true) => Ok(AttentionType::Sliding),
                            Some(false) => Ok(AttentionType::Full),
                            None => Err(file.meta_error(
                                &key("attention.sliding_window_pattern"),
                                format!("entry {i} is {f:?}, expected a bool"),
                            )),
                        })
                        .collect::<Result<Vec<_>>>()?
                }
                Some(_) => gemma3_layer_types(
                    layers,
                    file.require_usize(&key("attention.sliding_window_pattern"))?,
                ),
            };
            let local = match family {
                Family::Gemma3 => Rope::new(opt_f64("rope.freq_base_swa")?.unwrap_or(10_000.0)),
                _ => rope_global,
            };
            (types, local)
        }
    };
    if family != Family::Gemma1 && sliding_window.is_none() {
        return Err(file.meta_error(
            &key("attention.sliding_window"),
            "missing; Gemma 2 and 3 need the sliding window size".into(),
        ));
    }

    let query_scalar = match opt_f64("attention.query_pre_attn_scalar")? {
        Some(v) => v,
        None if family == Family::Gemma1 => head_dim as f64,
        None => llama_cpp_query_scalar(family, layers, hidden, heads, head_dim),
    };
    let tied = file.tensor("output.weight").is_none();
    let mut config = GemmaConfig::new(
        family,
        vocab,
        hidden,
        inter,
        layers,
        heads,
        kv_heads,
        head_dim,
        query_scalar,
        layer_types,
        rope_global,
        rope_local,
    )
    .with_rms_norm_eps(eps)
    .with_sliding_window(if family == Family::Gemma1 {
        None
    } else {
        sliding_window
    })
    .with_tie_word_embeddings(tied)
    .with_max_position_embeddings(opt_usize("context_length")?.unwrap_or(8192));
    if family == Family::Gemma2 {
        config = config
            .with_attn_logit_softcapping(opt_f64("attn_logit_softcapping")?.filter(|c| *c > 0.0))
            .with_final_logit_softcapping(opt_f64("final_logit_softcapping")?.filter(|c| *c > 0.0));
    } else if family == Family::Gemma3 {
        config = config
            .with_final_logit_softcapping(opt_f64("final_logit_softcapping")?.filter(|c| *c > 0.0));
    }
    let id = |k: &str| -> Result<Option<u32>> {
        match file.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u32()
                .map(Some)
                .ok_or_else(|| file.meta_error(k, format!("expected a token id, found {v:?}"))),
        }
    };
    if let Some(bos) = id("tokenizer.ggml.bos_token_id")? {
        config = config.with_bos_token_id(bos);
    }
    if let Some(pad) = id("tokenizer.ggml.padding_token_id")? {
        config = config.with_pad_token_id(pad);
    }
    if let Some(eos) = id("tokenizer.ggml.eos_token_id")? {
        let mut eos_ids = vec![eos];
        // Instruction-tuned Gemma ends its turns with <end_of_turn>; stop there too.
        if let Some(eot) = id("tokenizer.ggml.eot_token_id")?
            && eot != eos
        {
            eos_ids.push(eot);
        } else if let Some(tokens) = file
            .get("tokenizer.ggml.tokens")
            .and_then(MetadataValue::as_array)
            && let Some(pos) = tokens
                .iter()
                .position(|t| t.as_str() == Some("<end_of_turn>"))
            && pos as u32 != eos
        {
            eos_ids.push(pos as u32);
        }
        config = config.with_eos_token_ids(eos_ids);
    }
    config.validate()?;
    Ok(config)
}

/// What a transformers tensor name is called in llama.cpp, and whether it is a norm (stored as
/// `1 + w`).
fn gguf_name(family: Family, hf: &str) -> Option<(String, bool)> {
    let hf = hf.strip_prefix("model.").unwrap_or(hf);
    match hf {
        "embed_tokens.weight" => return Some(("token_embd.weight".into(), false)),
        "norm.weight" => return Some(("output_norm.weight".into(), true)),
        "lm_head.weight" => return Some(("output.weight".into(), false)),
        _ => {}
    }
    let rest = hf.strip_prefix("layers.")?;
    let (layer, name) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (g, norm) = match name {
        "self_attn.q_proj.weight" => ("attn_q", false),
        "self_attn.k_proj.weight" => ("attn_k", false),
        "self_attn.v_proj.weight" => ("attn_v", false),
        "self_attn.o_proj.weight" => ("attn_output", false),
        "self_attn.q_norm.weight" => ("attn_q_norm", true),
        "self_attn.k_norm.weight" => ("attn_k_norm", true),
        "mlp.gate_proj.weight" => ("ffn_gate", false),
        "mlp.up_proj.weight" => ("ffn_up", false),
        "mlp.down_proj.weight" => ("ffn_down", false),
        "input_layernorm.weight" => ("attn_norm", true),
        // Gemma 1's post_attention_layernorm is the pre-MLP norm.
        "post_attention_layernorm.weight" if family == Family::Gemma1 => ("ffn_norm", true),
        "post_attention_layernorm.weight" => ("post_attention_norm", true),
        "pre_feedforward_layernorm.weight" => ("ffn_norm", true),
        "post_feedforward_layernorm.weight" => ("post_ffw_norm", true),
        _ => return None,
    };
    Some((format!("blk.{layer}.{g}.weight"), norm))
}

/// The transformers name of every llama.cpp tensor name a Gemma GGUF holds (the inverse of
/// the writer's mapping).
pub(crate) fn hf_names(config: &GemmaConfig) -> Vec<(String, String, bool)> {
    let mut names = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".to_string(),
    ];
    if !config.tie_word_embeddings {
        names.push("lm_head.weight".into());
    }
    let mut per_layer = vec![
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    ];
    if config.family != Family::Gemma1 {
        per_layer.extend([
            "pre_feedforward_layernorm.weight",
            "post_feedforward_layernorm.weight",
        ]);
    }
    if config.family == Family::Gemma3 {
        per_layer.extend(["self_attn.q_norm.weight", "self_attn.k_norm.weight"]);
    }
    for i in 0..config.num_hidden_layers {
        for n in &per_layer {
            names.push(format!("model.layers.{i}.{n}"));
        }
    }
    names
        .into_iter()
        .filter_map(|hf| gguf_name(config.family, &hf).map(|(g, norm)| (hf, g, norm)))
        .collect()
}

/// The tensors of a GGUF, seen under transformers names, dequantized to f32 on read.
pub struct GgufSource<'a> {
    file: &'a GgufFile,
    family: Family,
    used: BTreeSet<String>,
}

impl std::fmt::Debug for GgufSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufSource")
            .field("file", &self.file.path())
            .finish_non_exhaustive()
    }
}

impl<'a> GgufSource<'a> {
    /// Views `file` as a [`WeightSource`] for a model of `family`.
    pub fn new(file: &'a GgufFile, family: Family) -> Self {
        Self {
            file,
            family,
            used: BTreeSet::new(),
        }
    }

    fn map(&self, name: &str) -> Option<(String, bool)> {
        gguf_name(self.family, name).filter(|(g, _)| self.file.tensor(g).is_some())
    }
}

impl GgufSource<'_> {
    /// Dequantizes `name` as stored (norms as `1 + w`), checking its shape.
    fn read_raw(&mut self, name: &str, expected: &[usize]) -> Result<(Vec<f32>, bool)> {
        let (g, norm) = gguf_name(self.family, name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            hint: " (no llama.cpp name for it)".into(),
        })?;
        let info = self.file.tensor(&g).ok_or_else(|| Error::MissingTensor {
            name: format!("{g} (transformers `{name}`)"),
            hint: format!(" in {}", self.file.path().display()),
        })?;
        let shape = info.shape();
        if shape != expected {
            return Err(Error::ShapeMismatch {
                name: format!("{g} (transformers `{name}`)"),
                expected: expected.to_vec(),
                got: shape,
            });
        }
        let values = self.file.dequantize(&g)?;
        self.used.insert(g);
        Ok((values, norm))
    }
}

impl WeightSource for GgufSource<'_> {
    fn contains(&self, name: &str) -> bool {
        self.map(name).is_some()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (g, _) = self.map(name)?;
        self.file.tensor(&g).map(|t| t.shape())
    }

    fn read(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (values, norm) = self.read_raw(name, expected)?;
        Ok(if norm {
            values.into_iter().map(|v| v - 1.0).collect()
        } else {
            values
        })
    }

    fn read_norm_scale(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (values, norm) = self.read_raw(name, expected)?;
        if !norm {
            return Err(Error::InvalidInput(format!(
                "`{name}` is not a norm weight"
            )));
        }
        // GGUF stores exactly the scale the model holds.
        Ok(values)
    }

    fn unused(&self) -> Vec<String> {
        self.file
            .tensors()
            .iter()
            .filter(|t| !self.used.contains(&t.name))
            .map(|t| t.name.clone())
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.file.tensors().iter().map(|t| t.name.clone()).collect()
    }
}

impl Gemma {
    /// Loads a Gemma 1/2/3 from a GGUF file (llama.cpp, Ollama), quantized or not; weights are
    /// dequantized to f32.
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let file = GgufFile::open(path)?;
        Self::from_gguf_file(&file, device)
    }

    /// Loads a Gemma from an already opened GGUF.
    pub fn from_gguf_file(file: &GgufFile, device: &Device) -> Result<Self> {
        let config = config_from_gguf(file)?;
        // Name the missing tensor the way the file would (llama.cpp's name), with a hint.
        for (hf, g, _) in hf_names(&config) {
            if file.tensor(&g).is_none() {
                let hint = file
                    .tensors()
                    .iter()
                    .map(|t| (strsim::jaro_winkler(&g, &t.name), &t.name))
                    .filter(|(s, _)| *s > 0.9)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, n)| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err(Error::MissingTensor {
                    name: format!("{g}` (transformers `{hf}`) in `{}", file.path().display()),
                    hint,
                });
            }
        }
        let mut source = GgufSource::new(file, config.family);
        let model = Self::from_source(config, &mut source, device)?;
        // from_source only polices names under "model."; every GGUF tensor must be ours.
        let stray = source.unused();
        if let Some(first) = stray.first() {
            return Err(Error::GgufTensor {
                path: file.path().to_path_buf(),
                tensor: first.clone(),
                message: format!(
                    "{} tensor(s) not part of a {} text model (is this a different architecture or a multimodal projector?)",
                    stray.len(),
                    arch_name(model.config().family)
                ),
            });
        }
        Ok(model)
    }
}

impl Gemma {
    /// Loads a model from a Hugging Face folder or a `.gguf` file, whichever `path` is.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        if is_gguf(path) {
            Self::from_gguf(path, device)
        } else {
            Self::from_pretrained(path, device)
        }
    }
}

impl Gemma {
    /// A model and its tokenizer from a folder or a `.gguf` file, the GGUF parsed once for
    /// both. The tokenizer is `tokenizer` when given (a `tokenizer.json`), else the folder's
    /// `tokenizer.json` or the GGUF's own vocabulary.
    pub fn load_with_tokenizer(
        path: impl AsRef<Path>,
        tokenizer: Option<&Path>,
        device: &Device,
    ) -> Result<(Self, crate::tokenizer::GemmaTokenizer)> {
        use crate::tokenizer::GemmaTokenizer;
        let path = path.as_ref();
        if is_gguf(path) {
            let file = GgufFile::open(path)?;
            let model = Self::from_gguf_file(&file, device)?;
            let tok = match tokenizer {
                Some(json) => GemmaTokenizer::from_file(json)?,
                None => GemmaTokenizer::from_tokenizer(super::tokenizer_from_gguf(&file)?),
            };
            Ok((model, tok))
        } else {
            let model = Self::from_pretrained(path, device)?;
            let tok = match tokenizer {
                Some(json) => GemmaTokenizer::from_file(json)?,
                None => GemmaTokenizer::from_dir(path)?,
            };
            Ok((model, tok))
        }
    }
}

/// Whether `path` is a GGUF file (by its magic; a folder is not).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    if !path.is_file() {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == super::GGUF_MAGIC
}

impl crate::tokenizer::GemmaTokenizer {
    /// The tokenizer stored in a GGUF's metadata.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Self> {
        let file = GgufFile::open(path)?;
        Ok(Self::from_tokenizer(super::tokenizer_from_gguf(&file)?))
    }
}
