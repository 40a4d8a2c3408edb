//! Errors of `kwx-core`. Every variant names what a user has to fix: the file, the tensor,
//! the field or the token.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Gemma model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A JSON file (config.json, index.json) is not valid or misses a field.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error; its message names the field, line and column.
        source: serde_json::Error,
    },
    /// A config.json parsed but describes something kwx cannot build.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        /// The config file (or `<memory>` for configs built in code).
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// `model_type` names a model that is not Gemma 1, 2 or 3.
    #[error(
        "{path}: unknown model_type `{model_type}`; kwx supports gemma, gemma2, gemma3_text and gemma3"
    )]
    UnknownModelType {
        /// The config file.
        path: PathBuf,
        /// The model_type found.
        model_type: String,
    },
    /// A safetensors file is truncated or corrupt.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// A tensor the model needs is in none of the weight files.
    #[error("missing tensor `{name}`{hint}")]
    MissingTensor {
        /// The Hugging Face name that was looked up.
        name: String,
        /// A suggestion such as a similar name that is present, or empty.
        hint: String,
    },
    /// A tensor the model needs has the wrong shape.
    #[error("tensor `{name}`: expected shape {expected:?}, found {got:?}")]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// The shape the config implies (Hugging Face order).
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// A tensor is stored in a dtype kwx cannot convert to f32.
    #[error("tensor `{name}`: unsupported dtype {dtype}; kwx reads F32, F16 and BF16")]
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// Weight files hold tensors the model does not use (usually a naming problem).
    #[error(
        "{count} unused tensor(s) in the weights, first `{first}`: is this a different architecture?"
    )]
    UnusedTensors {
        /// How many.
        count: usize,
        /// The first one, alphabetically.
        first: String,
    },
    /// A token id is outside the model's vocabulary.
    #[error("token id {id} at position {position} is out of the vocabulary (size {vocab_size})")]
    TokenOutOfVocab {
        /// The id.
        id: u32,
        /// Its position in the input.
        position: usize,
        /// The vocabulary size of the model.
        vocab_size: usize,
    },
    /// Inputs that cannot be run together (empty prompt, ragged batch, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A generation setting is out of range.
    #[error("generation option `{option}`: {message}")]
    InvalidOption {
        /// The option name.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed to load, encode or decode.
    #[error("tokenizer{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The tokenizer file, when the error is about loading.
        path: Option<PathBuf>,
        /// What the tokenizers crate reported.
        message: String,
    },
    /// A chat conversation that the Gemma template cannot render.
    #[error("chat message {index}: {message}")]
    Chat {
        /// The message index.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A GGUF file is malformed: bad magic, truncated, impossible sizes, invalid UTF-8.
    #[error("{path}: not a valid GGUF file (at byte {offset}): {message}")]
    GgufFormat {
        /// The file.
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A GGUF metadata key that kwx needs is missing or has the wrong type or value.
    #[error("{path}: GGUF metadata `{key}`: {message}")]
    GgufMetadata {
        /// The file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A GGUF tensor cannot be decoded or written (unsupported type, size, data out of range).
    #[error("{path}: GGUF tensor `{tensor}`: {message}")]
    GgufTensor {
        /// The file.
        path: PathBuf,
        /// The tensor (GGUF name).
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading a tensor from the device: {0}")]
    Device(String),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
