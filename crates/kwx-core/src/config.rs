//! Model configuration: a serde mirror of Hugging Face's `config.json` ([`HfConfig`]) and the
//! config the burn model is built from ([`GemmaConfig`]).
//!
//! One [`GemmaConfig`] describes Gemma 1 (`GemmaConfig` in transformers'
//! `models/gemma/configuration_gemma.py`), Gemma 2 (`configuration_gemma2.py`) and the Gemma 3
//! text model (`configuration_gemma3.py`, `Gemma3TextConfig`). Both spellings of config.json are
//! read: transformers 4.x (`rope_theta`, `rope_local_base_freq`, `sliding_window_pattern`,
//! `rope_scaling`) and 5.x (`rope_parameters`, `layer_types`).

use std::path::{Path, PathBuf};

use burn::config::Config;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Which Gemma generation a config describes; it decides the block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    /// Gemma 1: pre-norm blocks, `post_attention_layernorm` is the pre-MLP norm.
    Gemma1,
    /// Gemma 2: sandwich norms, attention and final logit softcapping.
    Gemma2,
    /// Gemma 3: sandwich norms, qk-norm, separate local and global RoPE bases.
    Gemma3,
}

/// What a decoder layer's attention sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttentionType {
    /// Every earlier token (`full_attention`).
    Full,
    /// The token itself and the `sliding_window - 1` tokens before it (`sliding_attention`).
    Sliding,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `gelu_pytorch_tanh`: the tanh approximation every released Gemma uses.
    GeluTanh,
    /// `gelu`: the exact erf form.
    Gelu,
}

/// Rotary embedding parameters for one attention type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rope {
    /// Base frequency (`rope_theta`).
    pub theta: f64,
    /// Linear position scaling (`rope_type: "linear"`, `factor`); 1.0 means none.
    pub linear_factor: f64,
}

impl Rope {
    /// Plain RoPE with the given base.
    pub fn new(theta: f64) -> Self {
        Self {
            theta,
            linear_factor: 1.0,
        }
    }
}

/// Everything needed to build a Gemma decoder.
#[derive(Config, Debug, PartialEq)]
pub struct GemmaConfig {
    /// Block layout and numerics family.
    pub family: Family,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (equal to query heads for MHA, 1 for MQA).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Attention scores are multiplied by `query_pre_attn_scalar^-0.5`.
    pub query_pre_attn_scalar: f64,
    /// RMSNorm epsilon.
    #[config(default = 1e-6)]
    pub rms_norm_eps: f64,
    /// MLP activation.
    #[config(default = "Activation::GeluTanh")]
    pub activation: Activation,
    /// `tanh(s / cap) * cap` on attention scores (Gemma 2).
    #[config(default = "None")]
    pub attn_logit_softcapping: Option<f64>,
    /// `tanh(l / cap) * cap` on the output logits (Gemma 2, optional in Gemma 3).
    #[config(default = "None")]
    pub final_logit_softcapping: Option<f64>,
    /// Window of sliding layers.
    #[config(default = "None")]
    pub sliding_window: Option<usize>,
    /// One entry per layer.
    pub layer_types: Vec<AttentionType>,
    /// RoPE of full-attention layers.
    pub rope_global: Rope,
    /// RoPE of sliding layers (equal to `rope_global` before Gemma 3).
    pub rope_local: Rope,
    /// Whether `lm_head` shares the embedding matrix.
    #[config(default = true)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id.
    #[config(default = 2)]
    pub bos_token_id: u32,
    /// End-of-sequence ids (generation stops on any).
    #[config(default = "vec![1]")]
    pub eos_token_ids: Vec<u32>,
    /// Padding id.
    #[config(default = 0)]
    pub pad_token_id: u32,
    /// Longest context the model was trained for (`max_position_embeddings`; GGUF
    /// `{arch}.context_length`). Informational: kwx does not cut prompts at it.
    #[config(default = 8192)]
    pub max_position_embeddings: usize,
}

impl GemmaConfig {
    /// Gemma 3 270M (`google/gemma-3-270m`), the model kwx ships recipes for.
    pub fn gemma3_270m() -> Self {
        let layer_types = gemma3_layer_types(18, 6);
        Self::new(
            Family::Gemma3,
            262_144,
            640,
            2048,
            18,
            4,
            1,
            256,
            256.0,
            layer_types,
            Rope::new(1_000_000.0),
            Rope::new(10_000.0),
        )
        .with_sliding_window(Some(512))
        .with_eos_token_ids(vec![1, 106])
        .with_max_position_embeddings(32_768)
    }

    /// Gemma 1 2B (`google/gemma-2b`).
    pub fn gemma_2b() -> Self {
        Self::new(
            Family::Gemma1,
            256_000,
            2048,
            16_384,
            18,
            8,
            1,
            256,
            256.0,
            vec![AttentionType::Full; 18],
            Rope::new(10_000.0),
            Rope::new(10_000.0),
        )
    }

    /// Gemma 2 2B (`google/gemma-2-2b`).
    pub fn gemma2_2b() -> Self {
        Self::new(
            Family::Gemma2,
            256_000,
            2304,
            9216,
            26,
            8,
            4,
            256,
            256.0,
            gemma2_layer_types(26),
            Rope::new(10_000.0),
            Rope::new(10_000.0),
        )
        .with_attn_logit_softcapping(Some(50.0))
        .with_final_logit_softcapping(Some(30.0))
        .with_sliding_window(Some(4096))
    }

    /// Reads `config.json` (either transformers 4.x or 5.x spelling).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses config.json text; `path` only labels errors.
    pub fn from_json_str(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = |source| Error::Json {
            path: path.to_path_buf(),
            source,
        };
        let mut value: Value = serde_json::from_str(text).map_err(json)?;
        // Gemma 3 multimodal checkpoints nest the text model's config.
        if value.get("model_type").and_then(Value::as_str) == Some("gemma3")
            && let Some(text_config) = value.get_mut("text_config").map(Value::take)
        {
            value = text_config;
            value["model_type"] = Value::from("gemma3_text");
        }
        let hf: HfConfig = serde_json::from_value(value).map_err(json)?;
        hf.into_config(path)
    }

    /// Number of query heads sharing one key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Checks the invariants the model relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| Error::Config {
            path: PathBuf::from("<config>"),
            field: field.into(),
            message,
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
        ] {
            if v == 0 {
                return Err(bad(field, "must be positive".into()));
            }
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                format!("{} must be positive and even", self.head_dim),
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(bad(
                "layer_types",
                format!(
                    "{} entries for {} layers",
                    self.layer_types.len(),
                    self.num_hidden_layers
                ),
            ));
        }
        if self.layer_types.contains(&AttentionType::Sliding)
            && !matches!(self.sliding_window, Some(w) if w > 0)
        {
            return Err(bad(
                "sliding_window",
                "sliding layers need a positive window".into(),
            ));
        }
        for (field, cap) in [
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ] {
            if matches!(cap, Some(c) if c <= 0.0 || !c.is_finite()) {
                return Err(bad(field, "must be positive".into()));
            }
        }
        if self.query_pre_attn_scalar.is_nan() || self.query_pre_attn_scalar <= 0.0 {
            return Err(bad("query_pre_attn_scalar", "must be positive".into()));
        }
        Ok(())
    }
}

/// Gemma 2's default: even layers slide, odd layers are global.
pub fn gemma2_layer_types(n: usize) -> Vec<AttentionType> {
    (0..n)
        .map(|i| {
            if (i + 1) % 2 != 0 {
                AttentionType::Sliding
            } else {
                AttentionType::Full
            }
        })
        .collect()
}

/// Gemma 3's default: `pattern - 1` sliding layers, then one global.
pub fn gemma3_layer_types(n: usize, pattern: usize) -> Vec<AttentionType> {
    (0..n)
        .map(|i| {
            if pattern > 0 && (i + 1) % pattern == 0 {
                AttentionType::Full
            } else {
                AttentionType::Sliding
            }
        })
        .collect()
}

/// `eos_token_id` is an int or a list of ints in config.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

/// A serde mirror of Gemma's `config.json`, field for field (transformers 4.x and 5.x).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct HfConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub hidden_act: Option<String>,
    pub hidden_activation: Option<String>,
    pub query_pre_attn_scalar: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub sliding_window: Option<usize>,
    pub sliding_window_pattern: Option<usize>,
    pub layer_types: Option<Vec<String>>,
    pub rope_theta: Option<f64>,
    pub rope_local_base_freq: Option<f64>,
    pub rope_scaling: Option<Value>,
    pub rope_parameters: Option<Value>,
    pub tie_word_embeddings: Option<bool>,
    pub bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    pub pad_token_id: Option<u32>,
    pub max_position_embeddings: Option<usize>,
    pub attention_bias: Option<bool>,
    pub use_bidirectional_attention: Option<bool>,
}

impl HfConfig {
    /// Converts to a [`GemmaConfig`], filling the family defaults transformers uses.
    pub fn into_config(self, path: &Path) -> Result<GemmaConfig> {
        let bad = |field: &str, message: String| Error::Config {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        let family = match self.model_type.as_str() {
            "gemma" => Family::Gemma1,
            "gemma2" => Family::Gemma2,
            "gemma3_text" | "gemma3" => Family::Gemma3,
            other => {
                return Err(Error::UnknownModelType {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                });
            }
        };
        let n = self.num_hidden_layers;
        let heads = self.num_attention_heads;
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if heads > 0 => self.hidden_size / heads,
            None => 0,
        };
        // transformers 5 reads `hidden_act` for Gemma 1 and maps its legacy "gelu" to the tanh
        // form (`GemmaConfig.__post_init__`); Gemma 2 and 3 read `hidden_activation` as written.
        let activation = match family {
            Family::Gemma1 => match self.hidden_act.as_deref().unwrap_or("gelu_pytorch_tanh") {
                "gelu" => "gelu_pytorch_tanh".to_string(),
                other => other.to_string(),
            },
            _ => self
                .hidden_activation
                .clone()
                .unwrap_or_else(|| "gelu_pytorch_tanh".into()),
        };
        let activation = match activation.as_str() {
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            other => {
                let field = if family == Family::Gemma1 {
                    "hidden_act"
                } else {
                    "hidden_activation"
                };
                return Err(bad(field, format!("unsupported activation `{other}`")));
            }
        };
        if self.attention_bias == Some(true) {
            return Err(bad(
                "attention_bias",
                "Gemma attention has no bias; true is unsupported".into(),
            ));
        }
        if self.use_bidirectional_attention == Some(true) {
            return Err(bad(
                "use_bidirectional_attention",
                "kwx runs causal decoders only".into(),
            ));
        }

        let layer_types = match &self.layer_types {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(AttentionType::Full),
                    "sliding_attention" => Ok(AttentionType::Sliding),
                    other => Err(bad("layer_types", format!("unknown layer type `{other}`"))),
                })
                .collect::<Result<Vec<_>>>()?,
            None => match family {
                Family::Gemma1 => vec![AttentionType::Full; n],
                Family::Gemma2 => gemma2_layer_types(n),
                Family::Gemma3 => gemma3_layer_types(n, self.sliding_window_pattern.unwrap_or(6)),
            },
        };

        let default_theta = match family {
            Family::Gemma3 => 1_000_000.0,
            _ => 10_000.0,
        };
        let (rope_global, rope_local) = match &self.rope_parameters {
            Some(params) => parse_rope_parameters(params, family, default_theta, path)?,
            None => {
                let theta = self.rope_theta.unwrap_or(default_theta);
                let mut global = Rope::new(theta);
                if let Some(scaling) = &self.rope_scaling {
                    global = parse_rope_entry(scaling, theta, "rope_scaling", path)?;
                }
                let local = match family {
                    Family::Gemma3 => Rope::new(self.rope_local_base_freq.unwrap_or(10_000.0)),
                    _ => global,
                };
                (global, local)
            }
        };

        // transformers ignores the attention softcap in Gemma 3 and Gemma 1 has none.
        let attn_logit_softcapping = match family {
            Family::Gemma2 => self.attn_logit_softcapping,
            _ => None,
        };
        let final_logit_softcapping = match family {
            Family::Gemma1 => None,
            _ => self.final_logit_softcapping,
        };
        let sliding_window = match family {
            Family::Gemma1 => None,
            _ => self.sliding_window.or(Some(4096)),
        };
        let query_pre_attn_scalar = match family {
            Family::Gemma1 => head_dim as f64,
            _ => self.query_pre_attn_scalar.unwrap_or(head_dim as f64),
        };
        let eos_token_ids = match self.eos_token_id {
            Some(OneOrMany::One(id)) => vec![id],
            Some(OneOrMany::Many(ids)) => ids,
            None => vec![1],
        };
        let config = GemmaConfig {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: n,
            num_attention_heads: heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(heads),
            head_dim,
            query_pre_attn_scalar,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            activation,
            attn_logit_softcapping,
            final_logit_softcapping,
            sliding_window,
            layer_types,
            rope_global,
            rope_local,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(true),
            bos_token_id: self.bos_token_id.unwrap_or(2),
            eos_token_ids,
            pad_token_id: self.pad_token_id.unwrap_or(0),
            max_position_embeddings: self.max_position_embeddings.unwrap_or(8192),
        };
        config.validate().map_err(|e| match e {
            Error::Config { field, message, .. } => Error::Config {
                path: path.into(),
                field,
                message,
            },
            other => other,
        })?;
        Ok(config)
    }
}

/// transformers 5: either one `{rope_type, rope_theta, …}` for every layer, or one such entry per
/// layer type (`full_attention`, `sliding_attention`).
fn parse_rope_parameters(
    params: &Value,
    family: Family,
    default_theta: f64,
    path: &Path,
) -> Result<(Rope, Rope)> {
    let per_type =
        params.get("full_attention").is_some() || params.get("sliding_attention").is_some();
    if !per_type {
        let rope = parse_rope_entry(params, default_theta, "rope_parameters", path)?;
        return Ok((rope, rope));
    }
    let global = match params.get("full_attention") {
        Some(v) => parse_rope_entry(v, default_theta, "rope_parameters.full_attention", path)?,
        None => Rope::new(default_theta),
    };
    let local = match params.get("sliding_attention") {
        Some(v) => parse_rope_entry(v, 10_000.0, "rope_parameters.sliding_attention", path)?,
        None if family == Family::Gemma3 => Rope::new(10_000.0),
        None => global,
    };
    Ok((global, local))
}

fn parse_rope_entry(entry: &Value, default_theta: f64, field: &str, path: &Path) -> Result<Rope> {
    let bad = |message: String| Error::Config {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let obj = entry
        .as_object()
        .ok_or_else(|| bad("expected an object".into()))?;
    let theta = match obj.get("rope_theta") {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| bad("rope_theta must be a number".into()))?,
        None => default_theta,
    };
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let linear_factor = match kind {
        "default" => 1.0,
        "linear" => obj
            .get("factor")
            .and_then(Value::as_f64)
            .filter(|f| *f > 0.0)
            .ok_or_else(|| bad("linear rope scaling needs a positive `factor`".into()))?,
        other => {
            return Err(bad(format!(
                "unsupported rope_type `{other}` (kwx reads default and linear)"
            )));
        }
    };
    Ok(Rope {
        theta,
        linear_factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_pattern_puts_global_layers_every_sixth() {
        let t = GemmaConfig::gemma3_270m().layer_types;
        let globals: Vec<usize> = t
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == AttentionType::Full)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(globals, vec![5, 11, 17]);
    }

    #[test]
    fn gemma2_even_layers_slide() {
        let t = gemma2_layer_types(4);
        assert_eq!(
            t,
            vec![
                AttentionType::Sliding,
                AttentionType::Full,
                AttentionType::Sliding,
                AttentionType::Full
            ]
        );
    }

    #[test]
    fn missing_field_names_the_field() {
        let err = GemmaConfig::from_json_str(r#"{"model_type":"gemma","vocab_size":10}"#, "c.json")
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Json { .. }), "{msg}");
        assert!(
            msg.contains("c.json") && msg.contains("hidden_size"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_model_type_is_typed() {
        let text = r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2}"#;
        let err = GemmaConfig::from_json_str(text, "c.json").unwrap_err();
        assert!(
            matches!(err, Error::UnknownModelType { ref model_type, .. } if model_type == "llama")
        );
    }

    #[test]
    fn kv_heads_must_divide_heads() {
        let text = r#"{"model_type":"gemma","vocab_size":10,"hidden_size":12,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"head_dim":4}"#;
        let err = GemmaConfig::from_json_str(text, "c.json").unwrap_err();
        assert!(
            matches!(err, Error::Config { ref field, .. } if field == "num_key_value_heads"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_rope_type_is_an_error() {
        let text = r#"{"model_type":"gemma3_text","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"head_dim":4,
            "rope_parameters":{"full_attention":{"rope_type":"yarn","rope_theta":1e6}}}"#;
        let err = GemmaConfig::from_json_str(text, "c.json").unwrap_err();
        assert!(err.to_string().contains("yarn"), "{err}");
    }
}
