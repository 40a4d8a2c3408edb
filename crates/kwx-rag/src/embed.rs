//! Dense vectors: the [`Embedder`] trait, a caching wrapper, and exact and approximate search.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{RagError, Result};

/// Turns texts into fixed-length vectors for dense retrieval.
///
/// Implementations must be deterministic (the same text gives the same vector) and thread-safe;
/// the index calls [`Embedder::embed`] with batches while building and with one text per query.
pub trait Embedder: Send + Sync {
    /// A fingerprint of the model and settings (`gemma:<model hash>:mean:L18`); an index
    /// refuses query vectors from an embedder with another id.
    fn id(&self) -> String;

    /// The vector length.
    fn dim(&self) -> usize;

    /// One vector per text, in order. Vectors need not be normalised; the index normalises.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// An [`Embedder`] that remembers the vectors of texts it has seen (queries repeat).
///
/// The cache holds at most `capacity` texts; when full it is cleared (a cheap bound, no LRU
/// bookkeeping on the query path).
pub struct CachedEmbedder<E> {
    inner: E,
    capacity: usize,
    cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl<E: Embedder> CachedEmbedder<E> {
    /// Wraps `inner`, keeping up to `capacity` vectors.
    pub fn new(inner: E, capacity: usize) -> Self {
        Self {
            inner,
            capacity,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapped embedder.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// How many vectors are cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }
}

impl<E: Embedder> Embedder for CachedEmbedder<E> {
    fn id(&self) -> String {
        self.inner.id()
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        let mut missing: Vec<usize> = Vec::new();
        {
            let cache = self.cache.lock().map_err(|_| poisoned(&self.inner))?;
            for (i, text) in texts.iter().enumerate() {
                match cache.get(*text) {
                    Some(v) => out[i] = Some(v.clone()),
                    None => missing.push(i),
                }
            }
        }
        if !missing.is_empty() {
            let batch: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
            let vectors = self.inner.embed(&batch)?;
            if vectors.len() != batch.len() {
                return Err(RagError::Embedder {
                    embedder: self.inner.id(),
                    reason: format!("{} vectors for {} texts", vectors.len(), batch.len()),
                });
            }
            let mut cache = self.cache.lock().map_err(|_| poisoned(&self.inner))?;
            if cache.len() + vectors.len() > self.capacity {
                cache.clear();
            }
            for (&i, v) in missing.iter().zip(vectors) {
                if self.capacity > 0 {
                    cache.insert(texts[i].to_owned(), v.clone());
                }
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

fn poisoned<E: Embedder>(e: &E) -> RagError {
    RagError::Embedder {
        embedder: e.id(),
        reason: "cache lock poisoned by a panicking thread".into(),
    }
}
