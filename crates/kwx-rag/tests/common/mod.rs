//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

/// The real Gemma 3 270M `tokenizer.json` that `scripts/fetch_model.sh` puts in the kwx cache
/// (`$KWX_HOME`, else `~/.cache/kwx`); CI fetches it before the tests.
pub fn gemma_tokenizer_path() -> std::path::PathBuf {
    let home = std::env::var_os("KWX_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/kwx"))
        })
        .expect("HOME or KWX_HOME");
    let path = home.join("gemma-3-270m/tokenizer.json");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch_model.sh",
        path.display()
    );
    path
}
