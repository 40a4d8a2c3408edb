//! [`Adapter`]: a LoRA adapter's tensors in PEFT's layout, and PEFT's file format.
//!
//! On disk an adapter is PEFT 0.21's folder: `adapter_config.json` plus
//! `adapter_model.safetensors` with keys such as
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` (`[r, in]`) and `…lora_B.weight`
//! (`[out, r]`); trainable token rows under
//! `base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta` (`[n, hidden]`);
//! whole saved modules under `base_model.model.model.embed_tokens.weight` and
//! `base_model.model.lm_head.weight`. Files are written atomically (temporary file, fsync,
//! rename), tensors always as F32.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use kwx_core::{Gemma, SafetensorsSource, WeightSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr_free::normal;
use serde_json::Value;

use crate::config::LoraConfig;
use crate::error::{Error, Result};
use crate::inject::linears;

/// The adapter config's file name.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter weights' file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

const PREFIX: &str = "base_model.model.";
const TOKEN_ROWS_KEY: &str =
    "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta";
/// PEFT's `TrainableTokensConfig` keys (values of the rows, despite the name); the `lm_head` one
/// repeats the embedding's for a tied model.
const TT_EMBED_KEY: &str = "base_model.model.model.embed_tokens.trainable_tokens_delta";
const TT_HEAD_KEY: &str = "base_model.model.lm_head.trainable_tokens_delta";
const EMBED_KEY: &str = "base_model.model.model.embed_tokens.weight";
const LM_HEAD_KEY: &str = "base_model.model.lm_head.weight";

/// One adapted linear layer: `W' = W + scaling · B·A` in PyTorch's `[out, in]` layout.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `lora_A`, `[r, in]`.
    pub a: Tensor<2>,
    /// `lora_B`, `[out, r]`.
    pub b: Tensor<2>,
}

/// A LoRA adapter for one Gemma model: config and tensors, PEFT's layout.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The PEFT config.
    pub config: LoraConfig,
    /// Factors per adapted linear layer, by transformers module name
    /// (`model.layers.0.self_attn.q_proj`).
    pub layers: BTreeMap<String, LoraPair>,
    /// New values of the embedding rows `config.trainable_tokens()`, `[n, hidden]`.
    pub token_rows: Option<Tensor<2>>,
    /// Whole trained modules (`embed_tokens`, `lm_head`), `[vocab, hidden]`.
    pub saved_modules: BTreeMap<String, Tensor<2>>,
    /// Whether the model's `lm_head` is its embedding (Gemma's tie); PEFT's trainable-tokens
    /// files then repeat the rows under `lm_head`.
    pub tied_head: bool,
}

/// The transformers names and PyTorch shapes `[out, in]` of every linear layer LoRA can adapt.
pub(crate) fn linear_modules(model: &Gemma) -> Vec<(String, [usize; 2])> {
    linears(model)
        .into_iter()
        .map(|(name, lin)| {
            let [inp, out] = lin.weight.dims();
            (name, [out, inp])
        })
        .collect()
}

fn no_targets(config: &LoraConfig, model: &Gemma) -> Error {
    Error::NoTargets {
        targets: config.describe_targets(),
        available: linear_modules(model).into_iter().map(|(n, _)| n).collect(),
    }
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("{e:?}")))
}

fn lora_key(module: &str, factor: &str) -> String {
    format!("{PREFIX}{module}.lora_{factor}.weight")
}

/// Minimal normal sampling (Box–Muller) so init needs no extra crate.
mod rand_distr_free {
    use rand::Rng;
    pub(super) fn normal(rng: &mut impl Rng, std: f64) -> f32 {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
    }
}

impl Adapter {
    /// A fresh adapter for `model` as `config` initialises it (`init_lora_weights`): PEFT's
    /// Kaiming-uniform `A` and zero `B` by default, so the model's output is unchanged until
    /// training moves `B`. Trainable token rows and saved modules start as copies of the model's.
    pub fn init(model: &Gemma, config: &LoraConfig, seed: u64) -> Result<Self> {
        config.validate("LoraConfig")?;
        let device = model.device();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = BTreeMap::new();
        for (name, [out, inp]) in linear_modules(model) {
            if !config.targets(&name) {
                continue;
            }
            let r = config.rank_for(&name);
            let uniform = |rng: &mut ChaCha8Rng, n: usize, fan_in: usize| -> Vec<f32> {
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..n)
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect()
            };
            let (a, b) = match &config.init_lora_weights {
                Value::String(s) if s == "gaussian" => (
                    (0..r * inp)
                        .map(|_| normal(&mut rng, 1.0 / r as f64))
                        .collect(),
                    vec![0.0; out * r],
                ),
                Value::Bool(false) => (
                    uniform(&mut rng, r * inp, inp),
                    uniform(&mut rng, out * r, r),
                ),
                _ => (uniform(&mut rng, r * inp, inp), vec![0.0; out * r]),
            };
            layers.insert(
                name,
                LoraPair {
                    a: Tensor::from_data(TensorData::new(a, [r, inp]), &device),
                    b: Tensor::from_data(TensorData::new(b, [out, r]), &device),
                },
            );
        }
        if layers.is_empty()
            && config.target_modules.is_some()
            && !config.is_trainable_tokens_only()
        {
            return Err(no_targets(config, model));
        }
        let embed = model.embed_tokens.weight.val();
        let token_rows = match config.trainable_tokens() {
            Some(ids) => Some(select_rows(model, embed.clone(), ids)?),
            None => None,
        };
        let mut saved_modules = BTreeMap::new();
        if config.saves("embed_tokens") {
            saved_modules.insert("embed_tokens".to_string(), embed.clone());
        }
        if config.saves("lm_head") {
            let head = match &model.lm_head {
                Some(l) => l.weight.val().transpose(),
                None => embed,
            };
            saved_modules.insert("lm_head".to_string(), head);
        }
        Ok(Self {
            config: config.clone(),
            layers,
            token_rows,
            saved_modules,
            tied_head: model.lm_head.is_none(),
        })
    }

    /// Reads a PEFT adapter folder for `model`: every tensor the config implies must be there
    /// with the model's shapes, and nothing else may be.
    pub fn load(dir: impl AsRef<Path>, model: &Gemma) -> Result<Self> {
        let dir = dir.as_ref();
        let config = LoraConfig::from_file(dir.join(CONFIG_FILE))?;
        let path = dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                " (found adapter_model.bin: re-save with safe_serialization=True)"
            } else {
                ""
            };
            return Err(Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("adapter weights not found{hint}"),
                ),
            ));
        }
        let mut source = SafetensorsSource::open(vec![path.clone()])?;
        let tt_head_copy = model.lm_head.is_none() && source.shape(TT_HEAD_KEY).is_some();
        let device = model.device();
        let mut read = |name: &str, expected: Vec<usize>| -> Result<Tensor<2>> {
            let got = source.shape(name).ok_or_else(|| Error::MissingTensor {
                path: path.clone(),
                name: name.to_string(),
            })?;
            if got != expected {
                return Err(Error::ShapeMismatch {
                    name: name.to_string(),
                    expected,
                    got,
                });
            }
            let values = source.read(name, &expected)?;
            Ok(Tensor::from_data(
                TensorData::new(values, [expected[0], expected[1]]),
                &device,
            ))
        };
        let mut layers = BTreeMap::new();
        for (name, [out, inp]) in linear_modules(model) {
            if !config.targets(&name) {
                continue;
            }
            let r = config.rank_for(&name);
            let a = read(&lora_key(&name, "A"), vec![r, inp])?;
            let b = read(&lora_key(&name, "B"), vec![out, r])?;
            layers.insert(name, LoraPair { a, b });
        }
        let hidden = model.config().hidden_size;
        let vocab = model.config().vocab_size;
        let token_rows = match config.trainable_tokens() {
            Some(ids) => {
                check_ids(model, ids)?;
                if config.is_trainable_tokens_only() {
                    let rows = read(TT_EMBED_KEY, vec![ids.len(), hidden])?;
                    if tt_head_copy {
                        // The tied head's copy: must be the same rows.
                        let head = read(TT_HEAD_KEY, vec![ids.len(), hidden])?;
                        if to_vec(head)? != to_vec(rows.clone())? {
                            return Err(Error::ShapeMismatch {
                                name: format!("{TT_HEAD_KEY} (differs from {TT_EMBED_KEY})"),
                                expected: vec![ids.len(), hidden],
                                got: vec![ids.len(), hidden],
                            });
                        }
                    }
                    Some(rows)
                } else {
                    Some(read(TOKEN_ROWS_KEY, vec![ids.len(), hidden])?)
                }
            }
            None => None,
        };
        let mut saved_modules = BTreeMap::new();
        for (module, key) in [("embed_tokens", EMBED_KEY), ("lm_head", LM_HEAD_KEY)] {
            if config.saves(module) {
                saved_modules.insert(module.to_string(), read(key, vec![vocab, hidden])?);
            }
        }
        if layers.is_empty() && token_rows.is_none() && saved_modules.is_empty() {
            return Err(no_targets(&config, model));
        }
        let unused = source.unused();
        if !unused.is_empty() {
            return Err(Error::UnexpectedTensors {
                path,
                names: unused,
            });
        }
        Ok(Self {
            config,
            layers,
            token_rows,
            saved_modules,
            tied_head: model.lm_head.is_none(),
        })
    }

    /// Writes the adapter as PEFT does; each file is replaced atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (name, pair) in &self.layers {
            for (factor, t) in [("A", &pair.a), ("B", &pair.b)] {
                tensors.push((
                    lora_key(name, factor),
                    t.dims().to_vec(),
                    to_vec(t.clone())?,
                ));
            }
        }
        if let Some(rows) = &self.token_rows {
            let values = to_vec(rows.clone())?;
            if self.config.is_trainable_tokens_only() {
                if self.tied_head {
                    // PEFT writes the tied head's copy too.
                    tensors.push((TT_HEAD_KEY.into(), rows.dims().to_vec(), values.clone()));
                }
                tensors.push((TT_EMBED_KEY.into(), rows.dims().to_vec(), values));
            } else {
                tensors.push((TOKEN_ROWS_KEY.into(), rows.dims().to_vec(), values));
            }
        }
        for (module, t) in &self.saved_modules {
            let key = if module == "lm_head" {
                LM_HEAD_KEY
            } else {
                EMBED_KEY
            };
            tensors.push((key.into(), t.dims().to_vec(), to_vec(t.clone())?));
        }
        let path = dir.join(WEIGHTS_FILE);
        write_safetensors(&path, &tensors)?;
        let mut config = self.config.clone();
        config.inference_mode = true;
        write_atomic(&dir.join(CONFIG_FILE), config.to_json()?.as_bytes())
    }

    /// The number of trainable values.
    pub fn num_params(&self) -> usize {
        let count = |t: &Tensor<2>| t.dims().iter().product::<usize>();
        self.layers
            .values()
            .map(|p| count(&p.a) + count(&p.b))
            .sum::<usize>()
            + self.token_rows.as_ref().map_or(0, count)
            + self.saved_modules.values().map(count).sum::<usize>()
    }
}

fn check_ids(model: &Gemma, ids: &[u32]) -> Result<()> {
    let vocab = model.config().vocab_size;
    if let Some(id) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::config(
            "LoraConfig",
            "trainable_token_indices",
            format!("token id {id} is outside the vocabulary of {vocab}"),
        ));
    }
    let mut seen = ids.to_vec();
    seen.sort_unstable();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::config(
            "LoraConfig",
            "trainable_token_indices",
            format!("token id {} is listed twice", w[0]),
        ));
    }
    Ok(())
}

fn select_rows(model: &Gemma, embed: Tensor<2>, ids: &[u32]) -> Result<Tensor<2>> {
    check_ids(model, ids)?;
    let idx = Tensor::<1, burn::tensor::Int>::from_data(
        TensorData::new(
            ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
            [ids.len()],
        ),
        &embed.device(),
    );
    Ok(embed.select(0, idx))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsync and rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".kwx-tmp-");
    // A normal file's mode (0644 less the umask), not the temporary file's private 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes F32 tensors as safetensors with PEFT's metadata (`format: pt`), atomically.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Safetensors {
                    path: path.to_path_buf(),
                    message: format!("{name}: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    let data = safetensors::serialize(views, metadata).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &data)
}
