//! Chunks: the unit the index stores and returns.

use std::collections::BTreeMap;

use kwx_data::dictionary::Dictionary;
use kwx_data::{Category, Entry};
use serde::{Deserialize, Serialize};

/// Where a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    /// One dictionary entry: term, aliases, category, definition.
    Entry,
    /// A piece of a free document (a leaflet field, split by length).
    Document,
}

/// One retrievable unit with its source and metadata.
///
/// A dictionary entry is one chunk (`term`, `aliases`, `category` set, `text` the definition);
/// a document gives one chunk per field piece (`field` set, `term` when the document is about
/// one dictionary term).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// A stable key, unique in one index: `dict:{term}` or `doc:{document}:{field}:{piece}`.
    pub key: String,
    /// Entry or document piece.
    pub kind: ChunkKind,
    /// The dictionary or document it came from (a path or a name).
    pub source: String,
    /// The dictionary term this chunk defines or is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// Other surfaces of `term`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The category name (`kwx_data::Category::name`), or a document's own category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// A document field (`효능효과`, `용법용량`, `주의사항`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The body: a definition, or the field text.
    pub text: String,
    /// Anything else worth keeping (document title, piece offsets, English gloss).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Chunk {
    /// The chunk of one dictionary entry.
    pub fn from_entry(entry: &Entry, source: &str) -> Self {
        let mut metadata = BTreeMap::new();
        if let Some(english) = &entry.english {
            metadata.insert("english".to_owned(), english.clone());
        }
        Self {
            key: format!("dict:{}", entry.term),
            kind: ChunkKind::Entry,
            source: source.to_owned(),
            term: Some(entry.term.clone()),
            aliases: entry.aliases.clone(),
            category: Some(entry.category.name().to_owned()),
            field: None,
            text: entry.definition.clone(),
            metadata,
        }
    }

    /// One chunk per entry of `dictionary`, in dictionary order.
    pub fn from_dictionary(dictionary: &Dictionary, source: &str) -> Vec<Self> {
        dictionary
            .entries()
            .iter()
            .map(|e| Self::from_entry(e, source))
            .collect()
    }

    /// The category as a dictionary [`Category`], when it is one.
    pub fn dictionary_category(&self) -> Option<Category> {
        self.category.as_deref().and_then(Category::from_name)
    }

    /// The text an embedder sees: `term (alias, …) [field]: body`.
    pub fn embedding_text(&self) -> String {
        let mut out = String::new();
        if let Some(term) = &self.term {
            out.push_str(term);
            if !self.aliases.is_empty() {
                out.push_str(" (");
                out.push_str(&self.aliases.join(", "));
                out.push(')');
            }
        }
        if let Some(field) = &self.field {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('[');
            out.push_str(field);
            out.push(']');
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&self.text);
        out
    }

    /// The line a prompt shows: `- term (alias, …): body` (documents: `- [field] body`).
    pub fn context_line(&self) -> String {
        format!("- {}", self.embedding_text())
    }
}
