//! Errors of kwx-rag.

use std::path::PathBuf;

/// What went wrong while building, opening or querying an index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RagError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A document or chunk file that does not parse; `line` counts from 1.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A folder that holds no kwx-rag index (no `manifest.json`).
    #[error("{path} is not a kwx-rag index (no manifest.json): build one with IndexBuilder")]
    NotAnIndex {
        /// The folder.
        path: PathBuf,
    },
    /// An index written in another on-disk format version.
    #[error(
        "{path} was written in kwx-rag index format {found} (by {written_by}); this build reads format {expected}: rebuild the index"
    )]
    Version {
        /// The folder.
        path: PathBuf,
        /// The format version found.
        found: u32,
        /// The format version this build reads.
        expected: u32,
        /// The crate version that wrote it.
        written_by: String,
    },
    /// An index whose files do not match its manifest (truncated, edited, partly copied).
    #[error("{path}: corrupt index: {detail}")]
    Corrupt {
        /// The file (or folder) found corrupt.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// The build target already exists.
    #[error("{path} already exists: remove it or build with overwrite(true)")]
    Exists {
        /// The folder.
        path: PathBuf,
    },
    /// An error from the tantivy engine.
    #[error("tantivy: {context}: {source}")]
    Tantivy {
        /// What kwx-rag was doing.
        context: String,
        /// The engine's error.
        source: tantivy::TantivyError,
    },
    /// An embedder failed.
    #[error("embedder {embedder}: {reason}")]
    Embedder {
        /// The embedder's id.
        embedder: String,
        /// Why.
        reason: String,
    },
    /// A vector of the wrong length, or an embedder that does not match the index.
    #[error("{what}: expected dimension {expected}, got {found}")]
    Dimension {
        /// Which vector or embedder.
        what: String,
        /// The index's dimension.
        expected: usize,
        /// The dimension given.
        found: usize,
    },
    /// An embedder other than the one the index's vectors came from.
    #[error(
        "the index's vectors come from embedder {expected}, the query embedder is {found}: attach the same embedder or rebuild"
    )]
    EmbedderMismatch {
        /// The embedder recorded in the manifest.
        expected: String,
        /// The embedder given.
        found: String,
    },
    /// Dense or hybrid search on an index without vectors, or without an attached embedder.
    #[error("{0}")]
    NoDense(String),
    /// A setting out of range; names the field.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Counting tokens with the model's tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl RagError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tantivy(context: impl Into<String>, source: tantivy::TantivyError) -> Self {
        Self::Tantivy {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with [`RagError`].
pub type Result<T, E = RagError> = std::result::Result<T, E>;
