//! Prompt context: retrieve, de-duplicate by term, pack into a token budget.

use crate::error::{RagError, Result};
use crate::index::{Hit, Mode, RagIndex, SearchRequest};

/// Counts tokens the way the model will see them.
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text`, without special tokens.
    fn count_tokens(&self, text: &str) -> Result<usize>;
}

impl TokenCounter for tokenizers::Tokenizer {
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.encode(text, false)
            .map(|e| e.len())
            .map_err(|e| RagError::Tokenizer(e.to_string()))
    }
}

impl TokenCounter for kwx_core::GemmaTokenizer {
    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.encode(text, false)
            .map(|ids| ids.len())
            .map_err(|e| RagError::Tokenizer(e.to_string()))
    }
}

/// One definition in a [`Context`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContextEntry {
    /// The chunk's key.
    pub key: String,
    /// The dictionary term, when the chunk has one.
    pub term: Option<String>,
    /// The category, when known.
    pub category: Option<String>,
    /// The line as it appears in the context.
    pub line: String,
    /// Retrieval score.
    pub score: f32,
}

/// What [`ContextBuilder::build`] returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Context {
    /// The header and one line per entry, ready to paste into a prompt (empty when nothing
    /// was retrieved or nothing fits).
    pub text: String,
    /// The dictionary terms the context defines, most relevant first.
    pub terms: Vec<String>,
    /// The entries included, most relevant first.
    pub entries: Vec<ContextEntry>,
    /// Tokens of `text`, measured with the model's tokenizer (≤ the budget).
    pub tokens: usize,
    /// Keys of retrieved entries left out because they did not fit.
    pub dropped: Vec<String>,
}

/// Builds prompt context for input sentences from a [`RagIndex`].
///
/// Entries are taken most relevant first; an entry whose term an earlier entry already
/// defines is skipped (de-duplication by term: one definition per term, and one piece per
/// document field about a term, so a long leaflet field split with overlap appears once;
/// chunks without a term are told apart by key); an entry that
/// does not fit in the remaining budget is dropped and smaller later ones may still fit. The
/// token count of the assembled text, not a sum of per-line counts, is what must fit.
pub struct ContextBuilder<'a> {
    index: &'a RagIndex,
    counter: &'a dyn TokenCounter,
    budget: usize,
    candidates: usize,
    mode: Mode,
    categories: Vec<String>,
    header: String,
}

impl<'a> ContextBuilder<'a> {
    /// A builder over `index` that measures with `counter` and fits `budget` tokens.
    pub fn new(index: &'a RagIndex, counter: &'a dyn TokenCounter, budget: usize) -> Self {
        Self {
            index,
            counter,
            budget,
            candidates: 8,
            mode: Mode::Lexical,
            categories: Vec::new(),
            header: "참고 정의:".to_owned(),
        }
    }

    /// How many hits to retrieve before de-duplication and packing (default 8).
    #[must_use]
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = n;
        self
    }

    /// Lexical (default), dense or hybrid retrieval.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Only entries of these categories.
    #[must_use]
    pub fn categories<I, S>(mut self, categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.categories = categories.into_iter().map(Into::into).collect();
        self
    }

    /// The first line of the context (default `참고 정의:`; empty for none).
    #[must_use]
    pub fn header(mut self, header: impl Into<String>) -> Self {
        self.header = header.into();
        self
    }

    /// Retrieves and packs context for `sentence`.
    pub fn build(&self, sentence: &str) -> Result<Context> {
        if self.candidates == 0 {
            return Err(RagError::Config {
                field: "candidates",
                reason: "must be at least 1".into(),
            });
        }
        let hits = self.index.search(
            &SearchRequest::new(sentence, self.candidates)
                .mode(self.mode)
                .categories(self.categories.clone()),
        )?;
        self.pack(hits)
    }

    /// Packs already retrieved `hits` (best first).
    pub fn pack(&self, hits: Vec<Hit>) -> Result<Context> {
        let mut seen = std::collections::HashSet::new();
        let mut entries: Vec<ContextEntry> = Vec::new();
        let mut dropped = Vec::new();
        let mut text = String::new();
        let mut tokens = 0;
        for hit in hits {
            let dedup_key = match (&hit.chunk.term, &hit.chunk.field) {
                (Some(term), None) => format!("term:{term}"),
                (Some(term), Some(field)) => format!("term:{term}:{field}"),
                (None, _) => format!("key:{}", hit.chunk.key),
            };
            if !seen.insert(dedup_key) {
                continue;
            }
            let line = hit.chunk.context_line();
            let candidate = if text.is_empty() {
                if self.header.is_empty() {
                    line.clone()
                } else {
                    format!("{}\n{line}", self.header)
                }
            } else {
                format!("{text}\n{line}")
            };
            let n = self.counter.count_tokens(&candidate)?;
            if n <= self.budget {
                text = candidate;
                tokens = n;
                entries.push(ContextEntry {
                    key: hit.chunk.key,
                    term: hit.chunk.term,
                    category: hit.chunk.category,
                    line,
                    score: hit.score,
                });
            } else {
                dropped.push(hit.chunk.key);
            }
        }
        let mut terms: Vec<String> = Vec::new();
        for t in entries.iter().filter_map(|e| e.term.as_ref()) {
            if !terms.contains(t) {
                terms.push(t.clone());
            }
        }
        Ok(Context {
            text,
            terms,
            entries,
            tokens,
            dropped,
        })
    }
}

/// A [`kwx_core::extract::ContextProvider`] over a shared index: the RAG strategy's context,
/// built per text by a [`ContextBuilder`] with the model's tokenizer and a token budget.
#[derive(Clone)]
pub struct RagContext {
    index: std::sync::Arc<RagIndex>,
    tokenizer: kwx_core::GemmaTokenizer,
    budget: usize,
    candidates: usize,
    mode: Mode,
}

impl std::fmt::Debug for RagContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagContext")
            .field("budget", &self.budget)
            .field("candidates", &self.candidates)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl RagContext {
    /// Context from `index` in at most `budget` tokens of `tokenizer` (8 candidates, lexical).
    pub fn new(
        index: std::sync::Arc<RagIndex>,
        tokenizer: kwx_core::GemmaTokenizer,
        budget: usize,
    ) -> Self {
        Self {
            index,
            tokenizer,
            budget,
            candidates: 8,
            mode: Mode::Lexical,
        }
    }

    /// Hits retrieved before packing.
    #[must_use]
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = n;
        self
    }

    /// Retrieval mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The packed context for `text`.
    pub fn build(&self, text: &str) -> Result<Context> {
        ContextBuilder::new(&self.index, &self.tokenizer, self.budget)
            .candidates(self.candidates)
            .mode(self.mode)
            .header("")
            .build(text)
    }
}

impl kwx_core::extract::ContextProvider for RagContext {
    fn context(&self, text: &str) -> kwx_core::Result<String> {
        self.build(text)
            .map(|c| c.text)
            .map_err(|e| kwx_core::Error::Context(e.to_string()))
    }
}
