//! # kwx-tokenizer
//!
//! Strategy 5, tokenizer customization:
//! - [`Trainer`]: SentencePiece-style BPE and Unigram vocabularies on the `tokenizers` crate
//!   (Metaspace whitespace, byte fallback with all 256 byte pieces, explicit identity or NFKC
//!   normalization, user-defined symbols that are never split, character coverage), streamed
//!   from files or iterators, saved as an ordinary `tokenizer.json`;
//! - [`extend`]: domain tokens added to an existing tokenizer such as Gemma's, as new added
//!   tokens or in place of its `<unused*>` tokens, with the pieces each term used to be (what the
//!   model side needs to initialise the new embeddings: `kwx_core::resize`);
//! - [`FragmentationReport`]: tokens per term and corpus length, before and after.
//!
//! It depends on no model code.
//!
//! ```no_run
//! use kwx_tokenizer::{ModelKind, Normalization, Trainer, TrainerConfig, save_tokenizer};
//!
//! let config = TrainerConfig::new(ModelKind::Bpe, 16_000, Normalization::Identity)
//!     .with_user_defined_symbols(["파스", "연고", "주사제"]);
//! let trained = Trainer::new(config)?.train_files(&["corpus.txt"], &mut |_| {})?;
//! save_tokenizer(&trained.tokenizer, "tokenizer.json")?;
//! # Ok::<(), kwx_tokenizer::Error>(())
//! ```

mod error;
pub mod extend;
mod pipeline;
pub mod report;
pub mod trainer;

use std::io::Write;
use std::path::Path;

pub use error::{Error, Result};
pub use extend::{ExtendMode, Extension, NewToken, extend};
pub use pipeline::{Normalization, SPACE_MARKER};
pub use report::{FragmentationReport, TermRow};
pub use tokenizers::Tokenizer;
pub use trainer::{ModelKind, Progress, TrainStats, Trained, Trainer, TrainerConfig, byte_pieces};

/// Writes `tokenizer` as pretty `tokenizer.json` atomically (a temporary file in the same folder,
/// then a rename), so an interrupted run leaves the old file or the new one, never half of one.
pub fn save_tokenizer(tokenizer: &Tokenizer, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let json = tokenizer
        .to_string(true)
        .map_err(|e| Error::tokenizers(format!("serializing {}", path.display()), e))?;
    write_atomic(path, json.as_bytes())
}

/// Loads a `tokenizer.json`; errors name the file.
pub fn load_tokenizer(path: impl AsRef<Path>) -> Result<Tokenizer> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.parse::<Tokenizer>().map_err(|e| Error::TokenizerJson {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".kwx-tmp-");
    // A normal file's mode (0644 less the umask), not the temporary file's private 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
