//! Teaching an existing tokenizer (Gemma's, or any `tokenizer.json`) domain tokens.
//!
//! Terms become non-special, non-normalized added tokens, matched anywhere in the raw text
//! (파스형 → 파스 + 형). Either they get new ids after the vocabulary (the model's embedding must
//! grow: `kwx_core::Gemma::resize_token_embeddings`), or they take over the tokenizer's
//! `<unused*>` tokens in id order and the vocabulary size stays (re-initialise those rows:
//! `kwx_core::Gemma::init_token_rows`). Each new token carries the ids the old tokenizer split
//! the term into, which is what a mean-of-pieces initialisation needs.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::trainer::check_symbol;

/// Where new tokens go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtendMode {
    /// New ids after the current vocabulary; the model's embedding grows.
    AddTokens,
    /// Take over `<unusedN>` tokens (lowest ids first); the vocabulary size does not change.
    RepurposeUnused,
}

/// One term that is now a single token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewToken {
    /// The term.
    pub term: String,
    /// Its id in the extended tokenizer.
    pub id: u32,
    /// The ids the original tokenizer split it into.
    pub pieces: Vec<u32>,
    /// What the id held before: `None` for a fresh id, `Some("<unused12>")` for a repurposed
    /// one, `Some(term)` when the term already was a vocabulary entry that encoding never
    /// produced whole (its row is already trained; nothing to initialise).
    pub replaced: Option<String>,
}

/// The result of [`extend`].
#[derive(Debug, Clone)]
pub struct Extension {
    /// The extended tokenizer.
    pub tokenizer: Tokenizer,
    /// Terms that are single tokens now, in the order given.
    pub added: Vec<NewToken>,
    /// Terms that already encoded to one token, with that id; left as they were.
    pub already_single: Vec<(String, u32)>,
    /// Vocabulary size before (added tokens included).
    pub old_vocab_size: usize,
    /// Vocabulary size after.
    pub new_vocab_size: usize,
}

impl Extension {
    /// The new tokens whose embedding rows need initialising (fresh or repurposed ids).
    pub fn rows_to_initialise(&self) -> impl Iterator<Item = &NewToken> {
        self.added
            .iter()
            .filter(|t| t.replaced.as_deref() != Some(t.term.as_str()))
    }
}

/// The name pattern of tokens [`ExtendMode::RepurposeUnused`] takes over.
pub const UNUSED_PATTERN: &str = "<unused*>";

fn is_unused(content: &str) -> bool {
    content
        .strip_prefix("<unused")
        .and_then(|s| s.strip_suffix('>'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Adds `terms` to `tokenizer` as whole tokens. Terms that already encode to one token are
/// reported and left alone. Errors: an empty, whitespace or duplicate term (named with its
/// position), too few `<unused*>` tokens, or a tokenizer whose JSON kwx cannot edit.
pub fn extend<S: AsRef<str>>(
    tokenizer: &Tokenizer,
    terms: &[S],
    mode: ExtendMode,
) -> Result<Extension> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, term) in terms.iter().enumerate() {
        let term = term.as_ref();
        check_symbol("term", index, term)?;
        if let Some(first) = seen.insert(term, index) {
            return Err(Error::Symbol {
                kind: "term",
                symbol: term.to_owned(),
                index,
                message: format!("duplicate of term #{first}"),
            });
        }
    }
    let old_vocab_size = tokenizer.get_vocab_size(true);
    let mut already_single = Vec::new();
    // (term, old pieces, id when already a vocabulary entry)
    let mut todo: Vec<(String, Vec<u32>, Option<u32>)> = Vec::new();
    for term in terms {
        let term = term.as_ref();
        let ids = encode_ids(tokenizer, term)?;
        if ids.len() == 1 {
            already_single.push((term.to_owned(), ids[0]));
        } else {
            todo.push((term.to_owned(), ids, tokenizer.token_to_id(term)));
        }
    }

    let mut added = Vec::with_capacity(todo.len());
    let mut out = match mode {
        ExtendMode::AddTokens => tokenizer.clone(),
        ExtendMode::RepurposeUnused => {
            let need: Vec<&str> = todo
                .iter()
                .filter(|(_, _, existing)| existing.is_none())
                .map(|(t, _, _)| t.as_str())
                .collect();
            let (repurposed, slots) = repurpose(tokenizer, &need)?;
            let mut slots = slots.into_iter();
            for (term, pieces, existing) in &todo {
                if existing.is_none() {
                    let (id, old) = slots.next().ok_or_else(|| {
                        Error::tokenizers("repurposing", "fewer slots than terms")
                    })?;
                    added.push(NewToken {
                        term: term.clone(),
                        id,
                        pieces: pieces.clone(),
                        replaced: Some(old),
                    });
                }
            }
            repurposed
        }
    };
    // Fresh ids (AddTokens), and vocabulary entries that encoding never produced whole (both
    // modes): the added vocabulary points those at their existing id.
    let extra: Vec<AddedToken> = todo
        .iter()
        .filter(|(_, _, existing)| mode == ExtendMode::AddTokens || existing.is_some())
        .map(|(term, _, _)| AddedToken::from(term.clone(), false).normalized(false))
        .collect();
    out.add_tokens(extra)
        .map_err(|e| Error::tokenizers("adding the terms", e))?;
    for (term, pieces, existing) in &todo {
        if mode == ExtendMode::RepurposeUnused && existing.is_none() {
            continue;
        }
        let id = out.token_to_id(term).ok_or_else(|| {
            Error::tokenizers("adding tokens", format!("{term:?} has no id after adding"))
        })?;
        added.push(NewToken {
            term: term.clone(),
            id,
            pieces: pieces.clone(),
            replaced: existing.map(|_| term.clone()),
        });
    }
    // Keep the caller's order.
    let order: HashMap<&str, usize> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_ref(), i))
        .collect();
    added.sort_by_key(|t| order[t.term.as_str()]);
    for token in &added {
        let ids = encode_ids(&out, &token.term)?;
        if ids != [token.id] {
            return Err(Error::tokenizers(
                "checking the extended tokenizer",
                format!(
                    "{:?} encodes to {ids:?}, expected [{}]",
                    token.term, token.id
                ),
            ));
        }
    }
    let new_vocab_size = out.get_vocab_size(true);
    Ok(Extension {
        tokenizer: out,
        added,
        already_single,
        old_vocab_size,
        new_vocab_size,
    })
}

pub(crate) fn encode_ids(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    tokenizer
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| Error::tokenizers(format!("encoding {text:?}"), e))
}

/// Renames the first `terms.len()` `<unusedN>` tokens (by id) to `terms`, in the tokenizer's
/// JSON (added token and model vocabulary alike). Returns the new tokenizer and, per term, the
/// id taken and the token it replaced.
fn repurpose(tokenizer: &Tokenizer, terms: &[&str]) -> Result<(Tokenizer, Vec<(u32, String)>)> {
    let path = PathBuf::from("<tokenizer.json>");
    let bad = |message: String| Error::TokenizerJson {
        path: path.clone(),
        message,
    };
    let text = tokenizer
        .to_string(false)
        .map_err(|e| Error::tokenizers("serializing the tokenizer", e))?;
    let mut json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let added = json
        .get_mut("added_tokens")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no `added_tokens` array".into()))?;
    let mut unused: Vec<(u32, usize)> = Vec::new();
    for (i, token) in added.iter().enumerate() {
        let content = token.get("content").and_then(Value::as_str);
        let id = token.get("id").and_then(Value::as_u64);
        if let (Some(content), Some(id)) = (content, id)
            && is_unused(content)
        {
            let id = u32::try_from(id)
                .map_err(|_| bad(format!("added_tokens[{i}].id {id} exceeds u32")))?;
            unused.push((id, i));
        }
    }
    unused.sort_unstable();
    if unused.len() < terms.len() {
        return Err(Error::NotEnoughUnused {
            needed: terms.len(),
            available: unused.len(),
            pattern: UNUSED_PATTERN.into(),
        });
    }
    let mut slots = Vec::with_capacity(terms.len());
    for (&term, &(id, index)) in terms.iter().zip(&unused) {
        let token = &mut added[index];
        let old = token["content"].as_str().unwrap_or_default().to_owned();
        token["content"] = Value::from(term);
        token["special"] = Value::from(false);
        token["normalized"] = Value::from(false);
        token["single_word"] = Value::from(false);
        token["lstrip"] = Value::from(false);
        token["rstrip"] = Value::from(false);
        slots.push((id, old));
    }
    let model = json
        .get_mut("model")
        .ok_or_else(|| bad("no `model`".into()))?;
    let kind = model
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let vocab = model
        .get_mut("vocab")
        .ok_or_else(|| bad("no `model.vocab`".into()))?;
    for (&term, (id, old)) in terms.iter().zip(&slots) {
        match vocab {
            Value::Object(map) => {
                match map.remove(old.as_str()) {
                    Some(v) if v.as_u64() == Some(u64::from(*id)) => {}
                    other => {
                        return Err(bad(format!(
                            "model.vocab[{old:?}] is {other:?}, expected id {id}"
                        )));
                    }
                }
                map.insert(term.to_owned(), Value::from(*id));
            }
            Value::Array(list) => {
                let entry = list
                    .get_mut(*id as usize)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| bad(format!("model.vocab[{id}] is missing ({kind})")))?;
                if entry.first().and_then(Value::as_str) != Some(old.as_str()) {
                    return Err(bad(format!("model.vocab[{id}] is not {old:?}")));
                }
                entry[0] = Value::from(term);
            }
            _ => {
                return Err(bad(format!(
                    "model.vocab of a {kind} model has an unknown shape"
                )));
            }
        }
    }
    let out = serde_json::to_string(&json)
        .map_err(|e| bad(e.to_string()))?
        .parse::<Tokenizer>()
        .map_err(|e| bad(format!("rejected after repurposing: {e}")))?;
    Ok((out, slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_names() {
        assert!(is_unused("<unused0>"));
        assert!(is_unused("<unused6241>"));
        assert!(!is_unused("<unused>"));
        assert!(!is_unused("<unused1a>"));
        assert!(!is_unused("unused1"));
    }
}
