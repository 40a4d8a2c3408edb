//! # kwx-rag
//!
//! Retrieval for strategy 2 (RAG): an index over the domain dictionary and free documents that
//! finds the definitions of the terms in a sentence and fits them into a prompt's token budget.

pub mod analyzer;
pub mod ann;
pub mod chunk;
pub mod context;
pub mod document;
pub mod embed;
pub mod error;
pub mod gemma;
pub mod index;

pub use chunk::{Chunk, ChunkKind};
pub use context::{Context, ContextBuilder, ContextEntry, RagContext, TokenCounter};
pub use document::{ChunkOptions, DocField, Document};
pub use embed::{CachedEmbedder, Embedder};
pub use error::{RagError, Result};
pub use gemma::GemmaEmbedder;
pub use index::{
    Analyzer, Boosts, BuildProgress, Hit, IndexBuilder, Mode, RagIndex, SearchRequest,
};
