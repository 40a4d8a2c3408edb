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
    /// A [`crate::extract::ContextProvider`] failed (retrieval for a RAG prompt).
    #[error("retrieving context for the prompt: {0}")]
    Context(String),
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
    /// A precision the device's backend does not compute in.
    #[error(
        "precision {precision} is not supported by the backend of device {device}; use f32 or another device"
    )]
    UnsupportedPrecision {
        /// The precision's name (`bf16`, `f16`).
        precision: &'static str,
        /// The device, as burn prints it.
        device: String,
    },
    /// A precision name that is not one of `f32`, `bf16`, `f16`.
    #[error("precision `{0}` is not one of f32, bf16, f16")]
    UnknownPrecision(String),
    /// Reading a tensor back from the device failed.
    #[error("reading a tensor from the device: {0}")]
    Device(String),
    /// Resizing or re-initialising token embeddings was refused ([`crate::resize`]).
    #[error("token embeddings: {0}")]
    Resize(#[from] ResizeError),
}

/// Why [`Gemma::resize_token_embeddings`](crate::Gemma::resize_token_embeddings) or
/// [`Gemma::init_token_rows`](crate::Gemma::init_token_rows) refused its input. Nothing was
/// changed: the model is only rebuilt once every check has passed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// The requested size is below the current vocabulary.
    #[error(
        "new_vocab_size {requested} is smaller than the current vocabulary size {current}: \
         shrinking the vocabulary is not supported (it would drop token ids the tokenizer uses)"
    )]
    Shrink {
        /// The model's vocabulary size.
        current: usize,
        /// `new_vocab_size` as given.
        requested: usize,
    },
    /// `pad_to_multiple_of` is 0, or rounding up to it overflows.
    #[error(
        "pad_to_multiple_of = {pad_to_multiple_of}: new_vocab_size {new_vocab_size} cannot be \
         rounded up to a multiple of it (use None for no padding)"
    )]
    PadToMultipleOf {
        /// The option as given.
        pad_to_multiple_of: usize,
        /// `new_vocab_size` as given.
        new_vocab_size: usize,
    },
    /// The vocabulary would hold ids that do not fit a `u32` token id.
    #[error("vocabulary size {vocab_size} exceeds the u32 token-id range")]
    VocabTooLarge {
        /// The (padded) size asked for.
        vocab_size: usize,
    },
    /// `noise_variance_scale` is negative or not finite.
    #[error("noise_variance_scale = {value}: expected a finite value >= 0")]
    NoiseScale {
        /// The option as given.
        value: f64,
    },
    /// A row id in `rows` is outside the (resized) vocabulary.
    #[error("rows: row id {id} is outside the vocabulary of size {vocab_size}")]
    RowOutOfRange {
        /// The row id.
        id: u32,
        /// The vocabulary size after resizing.
        vocab_size: usize,
    },
    /// The same row id appears twice in `rows`.
    #[error("rows: row id {id} is given more than once")]
    DuplicateRow {
        /// The row id.
        id: u32,
    },
    /// A `RowInit::MeanOf` list is empty.
    #[error("rows: row {row}: RowInit::MeanOf has no ids to average")]
    EmptyMeanOf {
        /// The row being initialised.
        row: u32,
    },
    /// A `RowInit::MeanOf` id is not a row of the vocabulary before resizing.
    #[error(
        "rows: row {row}: RowInit::MeanOf id {id} is outside the original vocabulary of size \
         {vocab_size}"
    )]
    MeanOfOutOfRange {
        /// The row being initialised.
        row: u32,
        /// The offending source id.
        id: u32,
        /// The vocabulary size before resizing.
        vocab_size: usize,
    },
    /// The embedding or head carries a reparameterization (a LoRA adapter, trainable token
    /// rows) that would be lost by rebuilding the matrix.
    #[error(
        "`{param}` carries a reparameterization (a LoRA adapter or trainable token rows): \
         resize the base model before attaching adapters, or merge them first"
    )]
    Reparameterized {
        /// The parameter, by its transformers name.
        param: &'static str,
    },
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
