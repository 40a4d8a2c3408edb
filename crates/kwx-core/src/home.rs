//! Where kwx keeps the models `scripts/fetch_model.sh` fetches: `$KWX_HOME`, by default
//! `~/.cache/kwx`. Nothing here downloads; the functions only find files and say how to get
//! them when they are missing.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The cache directory: `$KWX_HOME`, else `$HOME/.cache/kwx`.
pub fn kwx_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("KWX_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("kwx")
}

/// The real Gemma 3 270M (GGUF Q4_K_M) in the cache.
pub fn gemma3_270m_gguf() -> Result<PathBuf> {
    existing(
        kwx_home()
            .join("gemma-3-270m")
            .join("gemma-3-270m-q4_k_m.gguf"),
    )
}

/// The `tokenizer.json` of Gemma 3 in the cache.
pub fn gemma3_270m_tokenizer() -> Result<PathBuf> {
    existing(kwx_home().join("gemma-3-270m").join("tokenizer.json"))
}

fn existing(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not in the kwx cache: run `scripts/fetch_model.sh` (set KWX_HOME to choose the cache directory)",
            ),
        ))
    }
}
