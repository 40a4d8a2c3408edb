//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

/// The real Gemma 3 270M `tokenizer.json` that `scripts/fetch_model.sh` puts in the kwx cache;
/// CI fetches it before the tests.
pub fn gemma_tokenizer_path() -> std::path::PathBuf {
    kwx_core::home::gemma3_270m_tokenizer()
        .unwrap_or_else(|e| panic!("{e}: run scripts/fetch_model.sh"))
}
