//! [`LoraConfig`]: PEFT's `LoraConfig`, field for field, with PEFT's matching rules.
//!
//! The struct reads and writes `adapter_config.json` as PEFT 0.21 does. Fields kwx does not model
//! are kept verbatim in [`LoraConfig::extra`], so a config survives a round trip; the ones that
//! would change the computation (DoRA, `fan_in_fan_out`, LoRA biases, …) are refused by
//! [`LoraConfig::validate`] with the field's name rather than silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The linear layers of a Gemma decoder layer, by their transformers names.
pub const LINEAR_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// `target_modules`: a list of names (matched as the whole module name or its last components)
/// or one string, which PEFT treats as a regular expression over the full name, except the
/// special value `"all-linear"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names such as `["q_proj", "v_proj"]`.
    List(Vec<String>),
    /// A regular expression matched against the full module name, or `"all-linear"`.
    Pattern(String),
}

impl TargetModules {
    /// Every linear layer except the output head.
    pub fn all_linear() -> Self {
        Self::Pattern("all-linear".into())
    }

    /// A list of module names.
    pub fn names<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self::List(names.into_iter().map(Into::into).collect())
    }

    fn describe(&self) -> Vec<String> {
        match self {
            Self::List(v) => v.clone(),
            Self::Pattern(p) => vec![p.clone()],
        }
    }
}

/// `trainable_token_indices`: embedding rows to train, for `embed_tokens` (a list) or per module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIndices {
    /// Rows of `embed_tokens`.
    List(Vec<u32>),
    /// Rows per embedding module; kwx's Gemma has one, `embed_tokens`.
    PerModule(BTreeMap<String, Vec<u32>>),
}

/// `layers_to_transform`: one layer index or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerSelection {
    /// One layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

/// PEFT's `LoraConfig` (peft 0.21), as stored in `adapter_config.json`.
///
/// ```
/// use kwx_peft::{LoraConfig, TargetModules};
/// let config = LoraConfig::new(8, 16.0)
///     .with_target_modules(TargetModules::names(["q_proj", "v_proj"]))
///     .with_rslora(true);
/// assert_eq!(config.scaling_for("model.layers.0.self_attn.q_proj"), 16.0 / 8f64.sqrt());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always `"LORA"`.
    #[serde(default = "lora_type")]
    pub peft_type: String,
    /// `"CAUSAL_LM"` for kwx's models.
    #[serde(default)]
    pub task_type: Option<String>,
    /// Rank of the update (PEFT's default: 8).
    #[serde(default = "eight")]
    pub r: usize,
    /// Scaling numerator: the update is scaled by `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    /// PEFT's default: 8.
    #[serde(serialize_with = "number_as_written", default = "eight_f64")]
    pub lora_alpha: f64,
    /// Which linear layers get adapters; `None` means PEFT's default for Gemma (`q_proj`, `v_proj`).
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Modules never adapted, with the same matching rules.
    #[serde(default)]
    pub exclude_modules: Option<TargetModules>,
    /// Dropout on the adapter's input during training (PEFT applies it before `A`).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Bias training: only `"none"` (Gemma's linear layers have no bias).
    #[serde(default = "none_str")]
    pub bias: String,
    /// Rank-stabilised scaling `lora_alpha / sqrt(r)`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Modules trained in full and saved whole (`embed_tokens`, `lm_head`).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Embedding rows trained on their own (new domain tokens), keeping the tie with `lm_head`.
    #[serde(default)]
    pub trainable_token_indices: Option<TokenIndices>,
    /// `true` (A Kaiming-uniform, B zero), `"gaussian"` (A normal with std 1/r, B zero) or `false`
    /// (both random: tests only).
    #[serde(default = "init_true")]
    pub init_lora_weights: Value,
    /// Only these decoder layers get adapters.
    #[serde(default)]
    pub layers_to_transform: Option<LayerSelection>,
    /// The name of the layer list (`"layers"`).
    #[serde(default)]
    pub layers_pattern: Option<Value>,
    /// Per-module rank overrides: regular expression → rank.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha overrides: regular expression → alpha.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Where the base model came from (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Whether the adapter was saved for inference.
    #[serde(default)]
    pub inference_mode: bool,
    /// Every other field of `adapter_config.json`, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

fn lora_type() -> String {
    "LORA".into()
}
fn eight() -> usize {
    8
}
fn eight_f64() -> f64 {
    8.0
}

/// `peft_type` of PEFT's `TrainableTokensConfig`: only chosen embedding rows are trained.
pub const TRAINABLE_TOKENS: &str = "TRAINABLE_TOKENS";

/// The module PEFT names as a Gemma trainable-tokens target.
const EMBED_MODULE: &str = "model.embed_tokens";

/// The fields PEFT 0.21 writes for a `TrainableTokensConfig` besides those kwx models.
fn trainable_tokens_defaults() -> serde_json::Map<String, Value> {
    let v = serde_json::json!({
        "auto_mapping": null,
        "peft_version": "0.21.2",
        "revision": null,
        "init_weights": true
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
fn none_str() -> String {
    "none".into()
}
fn init_true() -> Value {
    Value::Bool(true)
}

fn number_as_written<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    // PEFT writes an integer alpha as an integer; keep files identical in spirit.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// The remaining fields PEFT 0.21 writes, at their defaults, so a kwx-written config reads in PEFT
/// exactly as one PEFT wrote.
pub(crate) fn peft_defaults() -> serde_json::Map<String, Value> {
    let v = serde_json::json!({
        "auto_mapping": null,
        "peft_version": "0.21.2",
        "revision": null,
        "fan_in_fan_out": false,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "loftq_config": {},
        "eva_config": null,
        "corda_config": null,
        "lora_ga_config": null,
        "use_dora": false,
        "velora_config": null,
        "alora_invocation_tokens": null,
        "use_qalora": false,
        "qalora_group_size": 16,
        "monteclora_config": null,
        "layer_replication": null,
        "lora_bias": false,
        "target_parameters": null,
        "use_bdlora": null,
        "arrow_config": null,
        "kasa_config": null,
        "ensure_weight_tying": false
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

impl LoraConfig {
    /// A config with rank `r` and `lora_alpha`, targeting every linear layer, no dropout.
    pub fn new(r: usize, lora_alpha: f64) -> Self {
        Self {
            peft_type: lora_type(),
            task_type: Some("CAUSAL_LM".into()),
            r,
            lora_alpha,
            target_modules: Some(TargetModules::all_linear()),
            exclude_modules: None,
            lora_dropout: 0.0,
            bias: none_str(),
            use_rslora: false,
            modules_to_save: None,
            trainable_token_indices: None,
            init_lora_weights: init_true(),
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            base_model_name_or_path: None,
            inference_mode: false,
            extra: peft_defaults(),
        }
    }

    /// Sets `target_modules`.
    #[must_use]
    pub fn with_target_modules(mut self, targets: TargetModules) -> Self {
        self.target_modules = Some(targets);
        self
    }

    /// Sets `use_rslora`.
    #[must_use]
    pub fn with_rslora(mut self, on: bool) -> Self {
        self.use_rslora = on;
        self
    }

    /// Sets `lora_dropout`.
    #[must_use]
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.lora_dropout = p;
        self
    }

    /// Sets `trainable_token_indices` (rows of `embed_tokens`).
    #[must_use]
    pub fn with_trainable_tokens(mut self, ids: Vec<u32>) -> Self {
        self.trainable_token_indices = Some(TokenIndices::List(ids));
        self
    }

    /// PEFT's `TrainableTokensConfig`: only the embedding rows `ids` are trained (new domain
    /// tokens after `kwx_core::Gemma::resize_token_embeddings`), the tie with `lm_head` kept; no
    /// linear layer is adapted. Saved as PEFT saves it (`peft_type: "TRAINABLE_TOKENS"`).
    pub fn trainable_tokens_only(ids: Vec<u32>) -> Self {
        let mut config = Self::new(8, 8.0);
        config.peft_type = TRAINABLE_TOKENS.into();
        config.target_modules = Some(TargetModules::names(Vec::<String>::new()));
        config.trainable_token_indices = Some(TokenIndices::List(ids));
        config.extra = trainable_tokens_defaults();
        config
    }

    /// Whether this trains embedding rows only: `peft_type` `"TRAINABLE_TOKENS"`, or a LoRA
    /// config with an empty `target_modules` list and `trainable_token_indices` (which PEFT
    /// cannot load as LoRA, so kwx saves it as a `TrainableTokensConfig`).
    pub fn is_trainable_tokens_only(&self) -> bool {
        self.peft_type == TRAINABLE_TOKENS
            || (matches!(&self.target_modules, Some(TargetModules::List(v)) if v.is_empty())
                && self.trainable_tokens().is_some()
                && self.modules_to_save.as_ref().is_none_or(Vec::is_empty))
    }

    /// Parses `adapter_config.json` text: a LoRA config, or PEFT's `TrainableTokensConfig`
    /// (`token_indices`, `target_modules` naming the embedding). Not validated.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let json_err = |source| Error::Json {
            path: path.to_path_buf(),
            source,
        };
        let mut value: Value = serde_json::from_str(text).map_err(json_err)?;
        if let Value::Object(map) = &mut value
            && map.get("peft_type").and_then(Value::as_str) == Some(TRAINABLE_TOKENS)
        {
            let location = path.display().to_string();
            match map.remove("target_modules") {
                None | Some(Value::Null) => {}
                Some(Value::String(t)) if t.ends_with("embed_tokens") => {}
                Some(Value::Array(a))
                    if a.iter()
                        .all(|t| t.as_str().is_some_and(|t| t.ends_with("embed_tokens"))) => {}
                Some(other) => {
                    return Err(Error::config(
                        location,
                        "target_modules",
                        format!("{other}: Gemma's only embedding is `{EMBED_MODULE}`"),
                    ));
                }
            }
            map.insert("target_modules".into(), Value::Array(Vec::new()));
            let ids = map.remove("token_indices").unwrap_or(Value::Null);
            map.insert("trainable_token_indices".into(), ids);
        } else {
            // Straight from the text, so errors carry line and column.
            return serde_json::from_str(text).map_err(json_err);
        }
        serde_json::from_value(value).map_err(json_err)
    }

    /// Sets `modules_to_save`.
    #[must_use]
    pub fn with_modules_to_save<S: Into<String>>(
        mut self,
        modules: impl IntoIterator<Item = S>,
    ) -> Self {
        self.modules_to_save = Some(modules.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `init_lora_weights` (`true`, `false` or `"gaussian"`).
    #[must_use]
    pub fn with_init(mut self, init: Value) -> Self {
        self.init_lora_weights = init;
        self
    }

    /// Reads `adapter_config.json` and validates it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config = Self::from_json_str(&text, path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// The JSON PEFT writes: every PEFT field, kwx's values first. A trainable-tokens-only
    /// config is written as PEFT's `TrainableTokensConfig`.
    pub fn to_json(&self) -> Result<String> {
        if self.is_trainable_tokens_only() {
            let mut map = trainable_tokens_defaults();
            let lora_only = peft_defaults();
            for (k, v) in &self.extra {
                if !lora_only.contains_key(k) || map.contains_key(k) {
                    map.insert(k.clone(), v.clone());
                }
            }
            map.insert("peft_type".into(), TRAINABLE_TOKENS.into());
            map.insert("task_type".into(), self.task_type.clone().into());
            map.insert("target_modules".into(), EMBED_MODULE.into());
            map.insert(
                "token_indices".into(),
                self.trainable_tokens().unwrap_or_default().into(),
            );
            map.insert(
                "base_model_name_or_path".into(),
                self.base_model_name_or_path.clone().into(),
            );
            map.insert("inference_mode".into(), self.inference_mode.into());
            return serde_json::to_string_pretty(&Value::Object(map)).map_err(|source| {
                Error::Json {
                    path: "adapter_config.json".into(),
                    source,
                }
            });
        }
        let mut value = serde_json::to_value(self).map_err(|source| Error::Json {
            path: "adapter_config.json".into(),
            source,
        })?;
        if let Value::Object(map) = &mut value {
            for (k, v) in peft_defaults() {
                map.entry(k).or_insert(v);
            }
        }
        serde_json::to_string_pretty(&value).map_err(|source| Error::Json {
            path: "adapter_config.json".into(),
            source,
        })
    }

    /// Refuses settings kwx would compute differently from PEFT; `location` names the file.
    pub fn validate(&self, location: &str) -> Result<()> {
        let bad = |field: &str, message: String| Err(Error::config(location, field, message));
        if self.peft_type == TRAINABLE_TOKENS {
            if self.trainable_tokens().is_none() {
                return bad("token_indices", "no token ids to train".into());
            }
            let no_targets = match &self.target_modules {
                None => true,
                Some(TargetModules::List(v)) => v.is_empty(),
                Some(TargetModules::Pattern(_)) => false,
            };
            if !no_targets || self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
                return bad(
                    "peft_type",
                    "TRAINABLE_TOKENS trains embedding rows only: no target_modules or \
                     modules_to_save"
                        .into(),
                );
            }
            if let Some(init) = self.extra.get("init_weights")
                && init != &Value::Bool(true)
            {
                return bad(
                    "init_weights",
                    format!("{init}: kwx starts trainable tokens from the model's rows (true)"),
                );
            }
            return Ok(());
        }
        if self.peft_type != "LORA" {
            return bad(
                "peft_type",
                format!(
                    "`{}`: kwx reads LoRA and TRAINABLE_TOKENS adapters only",
                    self.peft_type
                ),
            );
        }
        if self.r == 0 {
            return bad("r", "the rank must be at least 1".into());
        }
        if !self.lora_alpha.is_finite() {
            return bad("lora_alpha", format!("{} is not a number", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(
                "lora_dropout",
                format!("{} is not a probability in [0, 1)", self.lora_dropout),
            );
        }
        if self.bias != "none" {
            return bad(
                "bias",
                format!(
                    "`{}`: Gemma's linear layers have no bias; use \"none\"",
                    self.bias
                ),
            );
        }
        match &self.init_lora_weights {
            Value::Bool(_) => {}
            Value::String(s) if s == "gaussian" => {}
            other => {
                return bad(
                    "init_lora_weights",
                    format!("{other}: kwx initialises with true, false or \"gaussian\""),
                );
            }
        }
        match &self.layers_pattern {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "layers" => {}
            Some(Value::Array(a)) if a.len() == 1 && a[0] == "layers" => {}
            Some(other) => {
                return bad(
                    "layers_pattern",
                    format!("{other}: Gemma's layer list is called \"layers\""),
                );
            }
        }
        for (field, unsupported) in [
            ("use_dora", "DoRA"),
            ("fan_in_fan_out", "fan_in_fan_out (Conv1D weights)"),
            ("lora_bias", "LoRA biases"),
            ("use_qalora", "QA-LoRA"),
            ("use_bdlora", "BD-LoRA"),
        ] {
            if self.extra.get(field).is_some_and(truthy) {
                return bad(field, format!("{unsupported} is not supported by kwx"));
            }
        }
        for field in [
            "layer_replication",
            "target_parameters",
            "alora_invocation_tokens",
        ] {
            if self.extra.get(field).is_some_and(truthy) {
                return bad(field, "not supported by kwx; leave it null".into());
            }
        }
        for pattern in self.rank_pattern.keys().chain(self.alpha_pattern.keys()) {
            pattern_regex(pattern).map_err(|m| Error::config(location, "rank_pattern", m))?;
        }
        if let Some(TargetModules::Pattern(p)) = &self.target_modules
            && p != "all-linear"
        {
            full_regex(p).map_err(|m| Error::config(location, "target_modules", m))?;
        }
        if let Some(modules) = &self.modules_to_save {
            for m in modules {
                if !matches!(m.as_str(), "embed_tokens" | "lm_head") {
                    return bad(
                        "modules_to_save",
                        format!("`{m}`: kwx saves whole `embed_tokens` or `lm_head` only"),
                    );
                }
            }
        }
        if let Some(TokenIndices::PerModule(map)) = &self.trainable_token_indices
            && let Some(m) = map.keys().find(|m| m.as_str() != "embed_tokens")
        {
            return bad(
                "trainable_token_indices",
                format!("`{m}`: Gemma's only embedding is `embed_tokens`"),
            );
        }
        if self.trainable_tokens().is_some() && self.saves("embed_tokens") {
            return bad(
                "trainable_token_indices",
                "embed_tokens is already in modules_to_save (trained whole)".into(),
            );
        }
        Ok(())
    }

    /// The embedding rows trained on their own, if any.
    pub fn trainable_tokens(&self) -> Option<&[u32]> {
        match &self.trainable_token_indices {
            None => None,
            Some(TokenIndices::List(v)) => Some(v.as_slice()),
            Some(TokenIndices::PerModule(m)) => m.get("embed_tokens").map(Vec::as_slice),
        }
        .filter(|v| !v.is_empty())
    }

    /// Whether `module` (`embed_tokens` or `lm_head`) is trained and saved whole.
    pub fn saves(&self, module: &str) -> bool {
        self.modules_to_save
            .as_ref()
            .is_some_and(|m| m.iter().any(|x| x == module))
    }

    /// Whether the linear layer with transformers name `module` (`model.layers.3.mlp.up_proj`)
    /// gets an adapter, by PEFT's rules.
    pub fn targets(&self, module: &str) -> bool {
        if self.peft_type == TRAINABLE_TOKENS {
            return false;
        }
        let default = TargetModules::names(["q_proj", "v_proj"]);
        let targets = self.target_modules.as_ref().unwrap_or(&default);
        if !matches_modules(targets, module) {
            return false;
        }
        if let Some(ex) = &self.exclude_modules
            && matches_modules(ex, module)
        {
            return false;
        }
        if let Some(sel) = &self.layers_to_transform {
            let layer = module
                .split('.')
                .skip_while(|p| *p != "layers")
                .nth(1)
                .and_then(|s| s.parse::<usize>().ok());
            let keep = match (sel, layer) {
                (_, None) => false,
                (LayerSelection::One(l), Some(x)) => *l == x,
                (LayerSelection::Many(ls), Some(x)) => ls.contains(&x),
            };
            if !keep {
                return false;
            }
        }
        true
    }

    /// The rank for `module`, after `rank_pattern`.
    pub fn rank_for(&self, module: &str) -> usize {
        pattern_value(&self.rank_pattern, module).unwrap_or(self.r)
    }

    /// The scale applied to `B·A` for `module`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling_for(&self, module: &str) -> f64 {
        let r = self.rank_for(module) as f64;
        let alpha = pattern_value(&self.alpha_pattern, module).unwrap_or(self.lora_alpha);
        if self.use_rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }

    /// The targets as written, for error messages.
    pub(crate) fn describe_targets(&self) -> Vec<String> {
        self.target_modules.as_ref().map_or_else(
            || vec!["q_proj".into(), "v_proj".into()],
            TargetModules::describe,
        )
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn full_regex(p: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("`{p}` is not a valid pattern: {e}"))
}

fn pattern_regex(p: &str) -> Result<Regex, String> {
    // PEFT's get_pattern_key: re.match(rf"(^|.*\.){pattern}$", key)
    Regex::new(&format!("^(?:|.*\\.)(?:{p})$"))
        .map_err(|e| format!("`{p}` is not a valid pattern: {e}"))
}

fn matches_modules(targets: &TargetModules, module: &str) -> bool {
    match targets {
        TargetModules::Pattern(p) if p == "all-linear" => LINEAR_MODULES
            .iter()
            .any(|m| module.ends_with(&format!(".{m}"))),
        TargetModules::Pattern(p) => full_regex(p).is_ok_and(|re| re.is_match(module)),
        TargetModules::List(names) => names
            .iter()
            .any(|t| module == t || module.ends_with(&format!(".{t}"))),
    }
}

fn pattern_value<T: Copy>(patterns: &BTreeMap<String, T>, module: &str) -> Option<T> {
    patterns
        .iter()
        .find(|(p, _)| pattern_regex(p).is_ok_and(|re| re.is_match(module)))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test helpers
    use super::*;

    #[test]
    fn peft_matching_rules() {
        let c = LoraConfig::new(4, 8.0);
        assert!(c.targets("model.layers.0.mlp.down_proj"));
        assert!(!c.targets("lm_head"));
        let c = c.with_target_modules(TargetModules::names(["q_proj"]));
        assert!(c.targets("model.layers.2.self_attn.q_proj"));
        assert!(!c.targets("model.layers.2.self_attn.k_proj"));
        let mut c = c.with_target_modules(TargetModules::Pattern(r".*\.1\..*(q|v)_proj".into()));
        assert!(c.targets("model.layers.1.self_attn.v_proj"));
        assert!(!c.targets("model.layers.0.self_attn.v_proj"));
        c.target_modules = Some(TargetModules::all_linear());
        c.layers_to_transform = Some(LayerSelection::Many(vec![0, 2]));
        assert!(c.targets("model.layers.2.mlp.up_proj"));
        assert!(!c.targets("model.layers.1.mlp.up_proj"));
        c.rank_pattern.insert("q_proj".into(), 16);
        c.alpha_pattern
            .insert(r"layers\.0\.self_attn\.q_proj".into(), 32.0);
        assert_eq!(c.rank_for("model.layers.0.self_attn.q_proj"), 16);
        assert_eq!(c.rank_for("model.layers.0.self_attn.k_proj"), 4);
        assert_eq!(c.scaling_for("model.layers.0.self_attn.q_proj"), 2.0);
        assert_eq!(c.scaling_for("model.layers.1.self_attn.q_proj"), 0.5);
    }

    #[test]
    fn refuses_what_it_would_compute_differently() {
        let mut c = LoraConfig::new(4, 8.0);
        c.extra.insert("use_dora".into(), Value::Bool(true));
        let e = c.validate("adapter_config.json").unwrap_err().to_string();
        assert!(e.contains("use_dora") && e.contains("DoRA"), "{e}");
        let mut c = LoraConfig::new(4, 8.0);
        c.bias = "all".into();
        assert!(c.validate("x").unwrap_err().to_string().contains("`bias`"));
        let c = LoraConfig::new(0, 8.0);
        assert!(c.validate("x").unwrap_err().to_string().contains("`r`"));
    }

    #[test]
    fn json_round_trip_keeps_unknown_fields() {
        let mut c = LoraConfig::new(4, 8.0).with_trainable_tokens(vec![5, 6]);
        c.extra
            .insert("future_field".into(), serde_json::json!({"a": 1}));
        let text = c.to_json().unwrap();
        assert!(text.contains("\"lora_alpha\": 8,"), "{text}");
        let back: LoraConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
