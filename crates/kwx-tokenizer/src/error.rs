//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training, extending or measuring a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a corpus or writing a tokenizer failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A corpus line is not UTF-8.
    #[error("{}:{line}: not valid UTF-8 ({source})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The cause.
        source: std::str::Utf8Error,
    },
    /// The corpus held no text to learn from.
    #[error("the corpus is empty: {what}")]
    EmptyCorpus {
        /// What was read (files, lines).
        what: String,
    },
    /// A trainer setting is out of range.
    #[error("invalid setting `{field}`: {message}")]
    Config {
        /// The setting's name.
        field: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// The vocabulary cannot hold the reserved pieces and the alphabet.
    #[error(
        "vocab_size {vocab_size} is too small: {reserved} reserved pieces (control symbols, 256 \
         byte pieces, user-defined symbols) + {alphabet} characters needed for character_coverage \
         {coverage} = {needed}; raise vocab_size to at least {needed} or lower character_coverage"
    )]
    VocabTooSmall {
        /// The requested size.
        vocab_size: usize,
        /// Control symbols + byte pieces + user-defined symbols.
        reserved: usize,
        /// Characters kept by the coverage rule.
        alphabet: usize,
        /// The coverage asked for.
        coverage: f64,
        /// `reserved + alphabet`.
        needed: usize,
    },
    /// A symbol or term is unusable.
    #[error("{kind} {symbol:?} (#{index}): {message}")]
    Symbol {
        /// `user-defined symbol`, `control symbol` or `term`.
        kind: &'static str,
        /// The offending text.
        symbol: String,
        /// 0-based position in the list given.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A word occurred more often than the Unigram trainer's `u32` counts hold.
    #[error("word {word:?} occurs {count} times, more than the Unigram trainer's u32 counts hold")]
    CountOverflow {
        /// The word.
        word: String,
        /// Its count.
        count: u64,
    },
    /// The `tokenizers` library refused something.
    #[error("tokenizers: {context}: {message}")]
    Tokenizers {
        /// What kwx was doing.
        context: String,
        /// The library's message.
        message: String,
    },
    /// A tokenizer.json is not what kwx expects.
    #[error("{}: {message}", path.display())]
    TokenizerJson {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What is wrong, naming the JSON field.
        message: String,
    },
    /// The tokenizer has too few `<unused*>` tokens to repurpose.
    #[error(
        "{needed} terms need a slot but the tokenizer has only {available} unused tokens matching {pattern:?}"
    )]
    NotEnoughUnused {
        /// Terms to place.
        needed: usize,
        /// Unused tokens found.
        available: usize,
        /// The pattern searched.
        pattern: String,
    },
}

impl Error {
    pub(crate) fn tokenizers(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Tokenizers {
            context: context.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
