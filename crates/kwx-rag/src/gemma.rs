//! The default [`crate::Embedder`]: pooled hidden states of a kwx Gemma model.
