//! kwx-peft's error type.

use std::path::PathBuf;

/// Everything that can go wrong reading, attaching or training an adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model layer failed (loading, shapes, generation).
    #[error(transparent)]
    Core(#[from] kwx_core::Error),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A JSON file (adapter config, checkpoint state) is malformed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        source: serde_json::Error,
    },

    /// A TOML training config is malformed.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },

    /// A configuration field has a value kwx cannot use.
    #[error("{location}: field `{field}`: {message}")]
    Config {
        /// The file, or `LoraConfig` / `TrainConfig` when built in code.
        location: String,
        /// The field.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// An adapter file lacks a tensor the config implies.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The adapter file.
        path: PathBuf,
        /// The PEFT key.
        name: String,
    },

    /// An adapter file holds tensors nothing in the config or model explains.
    #[error("{path}: {} unexpected tensor(s), e.g. `{}`; is this an adapter for this model and config?", names.len(), names.first().map_or("", String::as_str))]
    UnexpectedTensors {
        /// The adapter file.
        path: PathBuf,
        /// The PEFT keys.
        names: Vec<String>,
    },

    /// A tensor's shape does not fit the model.
    #[error("tensor `{name}`: expected shape {expected:?}, found {got:?}")]
    ShapeMismatch {
        /// The PEFT key.
        name: String,
        /// What the model and config need.
        expected: Vec<usize>,
        /// What the file holds.
        got: Vec<usize>,
    },

    /// A target module matched nothing in the model.
    #[error(
        "target_modules {targets:?} match no linear layer of this model (it has {available:?})"
    )]
    NoTargets {
        /// The configured targets.
        targets: Vec<String>,
        /// The module names that could be targeted.
        available: Vec<String>,
    },

    /// A named adapter is not loaded.
    #[error("no adapter named `{name}` (loaded: {loaded:?})")]
    UnknownAdapter {
        /// The requested name.
        name: String,
        /// The names that are loaded.
        loaded: Vec<String>,
    },

    /// Writing `adapter_model.safetensors` failed.
    #[error("{path}: writing safetensors: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },

    /// The training data cannot be used.
    #[error("training data: {0}")]
    Data(String),

    /// The loss or the gradient norm became NaN or infinite.
    #[error("step {step}: {what} is {loss} (not finite); the last good checkpoint is {}", last_checkpoint.as_ref().map_or("none (no checkpoint was written yet)".to_string(), |p| p.display().to_string()))]
    NonFiniteLoss {
        /// The optimizer step (1-based) whose loss was not finite.
        step: usize,
        /// `"loss"` or `"gradient norm"`.
        what: &'static str,
        /// The value.
        loss: f64,
        /// The last checkpoint written before it, kept on disk.
        last_checkpoint: Option<PathBuf>,
    },

    /// Another training run holds the output folder.
    #[error("{path} is held by another training run{}; give this run its own output folder, or stop that one first", holder.as_ref().map_or(String::new(), |h| format!(" ({h})")))]
    OutputInUse {
        /// The lock file in the output folder.
        path: PathBuf,
        /// What the holder wrote into it (its process id), when readable.
        holder: Option<String>,
    },

    /// A fresh run was started on an output folder that holds another run's checkpoints: its
    /// checkpoints, metrics and best pointer would mix with the new run's.
    #[error("{} already holds a training run (latest checkpoint {}); resume it (`--resume`, `resume = true`) or give this run an empty output folder", path.display(), checkpoint.display())]
    OutputHasRun {
        /// The output folder.
        path: PathBuf,
        /// Its newest checkpoint.
        checkpoint: PathBuf,
    },

    /// A checkpoint cannot be resumed.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A tensor could not be read back from the device.
    #[error("device: {0}")]
    Device(String),
}

/// kwx-peft's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(
        location: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Config {
            location: location.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
