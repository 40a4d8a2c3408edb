//! # kwx-rag
//!
//! Retrieval for strategy 2 (RAG): an index over the domain dictionary and free documents that
//! finds the definitions of the terms in a sentence and fits them into a prompt's token budget.

pub mod chunk;
pub mod document;
pub mod embed;
pub mod error;
pub mod gemma;

pub use chunk::{Chunk, ChunkKind};
pub use embed::{CachedEmbedder, Embedder};
pub use error::{RagError, Result};
