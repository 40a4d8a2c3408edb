//! A deterministic stand-in for a neural embedder: character bigrams hashed into `dim` buckets
//! (signed, so unrelated texts are near-orthogonal). Tests of the index's dense machinery use
//! it where a real model would make them slow; similar texts get similar vectors.
#![allow(unreachable_pub, dead_code)]

use kwx_rag::{Embedder, Result};

pub struct HashEmbedder {
    pub dim: usize,
    pub salt: u32,
}

impl Embedder for HashEmbedder {
    fn id(&self) -> String {
        format!("hash-bigrams:{}:{}", self.dim, self.salt)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; self.dim];
                let chars: Vec<char> = t.chars().filter(|c| c.is_alphanumeric()).collect();
                for w in chars.windows(2) {
                    let mut bytes = [0u8; 12];
                    bytes[..4].copy_from_slice(&u32::from(w[0]).to_le_bytes());
                    bytes[4..8].copy_from_slice(&u32::from(w[1]).to_le_bytes());
                    bytes[8..].copy_from_slice(&self.salt.to_le_bytes());
                    let h = crc32fast::hash(&bytes);
                    let sign = if h & 1 == 0 { 1.0 } else { -1.0 };
                    v[(h >> 1) as usize % self.dim] += sign;
                }
                // Never the zero vector (a one-character text has no bigram).
                v[0] += 0.01;
                v
            })
            .collect())
    }
}
