//! Keyword extraction: the [`KeywordExtractor`] trait every strategy implements, and the
//! dictionary baseline.
//!
//! The baseline, [`DictionaryExtractor`], needs no model: one Aho–Corasick automaton over every
//! term and alias of a dictionary, leftmost-longest, so `해열진통제` is one match when it is a
//! term and `파스형` finds `파스`. Korean particles need no stripping on this side: a surface
//! followed by a particle (`임산부에게`) is still a match, and the keyword returned is always the
//! dictionary form (`임신부` → `임산부`). It is the bar every LLM strategy must beat on terms
//! outside the dictionary — it can never find one.

pub mod parse;
pub mod prompt;

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use kwx_data::dictionary::Dictionary;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use parse::{Parsed, parse_keyword_list};
pub use prompt::{
    Constrain, ContextProvider, Example, ExamplePool, PromptConfig, PromptExtractor, Trace,
};

/// A character range of the input text, `start..end`, counted in Unicode scalar values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
}

/// One extracted keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyword {
    /// The keyword in dictionary form when known (`임산부` for `임신부에게`), else as found.
    pub text: String,
    /// Its category when known (a `kwx_data::Category` name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Where it occurs in the input, in order (empty when the strategy cannot tell).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

/// Text in, keywords out. Implementations are shared across threads and async tasks.
pub trait KeywordExtractor: Send + Sync {
    /// A short name for reports (`dictionary`, `few-shot`, …).
    fn name(&self) -> &str;

    /// The keywords of `text`, each once, in order of first appearance.
    fn extract(&self, text: &str) -> Result<Vec<Keyword>>;

    /// [`Self::extract`] for many texts; strategies that batch model calls override it.
    fn extract_batch(&self, texts: &[&str]) -> Result<Vec<Vec<Keyword>>> {
        texts.iter().map(|t| self.extract(t)).collect()
    }
}

/// The dictionary baseline (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct DictionaryExtractor {
    automaton: AhoCorasick,
    /// Pattern index → (term, category).
    patterns: Vec<(String, String)>,
    /// Pattern index → whether the surface starts with an ASCII letter or digit.
    latin_start: Vec<bool>,
    latin_end: Vec<bool>,
}

impl DictionaryExtractor {
    /// Every term and alias of `dictionary`.
    pub fn new(dictionary: &Dictionary) -> Result<Self> {
        Self::without(dictionary, std::iter::empty::<&str>())
    }

    /// Every term and alias of `dictionary` except the entries of `excluded` terms: the
    /// baseline for terms held out of training (it knows only what training saw).
    pub fn without<'a>(
        dictionary: &Dictionary,
        excluded: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self> {
        let excluded: std::collections::HashSet<&str> = excluded.into_iter().collect();
        let mut surfaces: Vec<String> = Vec::new();
        let mut patterns = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for entry in dictionary.entries() {
            if excluded.contains(entry.term.as_str()) {
                continue;
            }
            for surface in entry.surfaces() {
                let surface = surface.trim();
                if surface.is_empty() || seen.contains_key(surface) {
                    continue;
                }
                seen.insert(surface.to_owned(), patterns.len());
                surfaces.push(surface.to_owned());
                patterns.push((entry.term.clone(), entry.category.name().to_owned()));
            }
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&surfaces)
            .map_err(|e| Error::InvalidInput(format!("building the dictionary automaton: {e}")))?;
        let latin = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        Ok(Self {
            automaton,
            latin_start: surfaces.iter().map(|s| latin(s.chars().next())).collect(),
            latin_end: surfaces
                .iter()
                .map(|s| latin(s.chars().next_back()))
                .collect(),
            patterns,
        })
    }

    /// How many surfaces it matches.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether it matches nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl KeywordExtractor for DictionaryExtractor {
    fn name(&self) -> &str {
        "dictionary"
    }

    /// Leftmost-longest, non-overlapping matches. A surface that starts (ends) with an ASCII
    /// letter or digit must not continue one (`SK` is not found in `DSK`, `B1` not in `B12`);
    /// Hangul surfaces match inside words, as Korean compounds and particles require.
    fn extract(&self, text: &str) -> Result<Vec<Keyword>> {
        let mut out: Vec<Keyword> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        // Byte offset → char offset, filled as matches advance.
        let (mut byte, mut chars) = (0usize, 0usize);
        let mut to_char = |b: usize| {
            chars += text[byte..b].chars().count();
            byte = b;
            chars
        };
        for m in self.automaton.find_iter(text) {
            let p = m.pattern().as_usize();
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if (self.latin_start[p] && before.is_some_and(|c| c.is_ascii_alphanumeric()))
                || (self.latin_end[p] && after.is_some_and(|c| c.is_ascii_alphanumeric()))
            {
                continue;
            }
            let start = to_char(m.start());
            let end = to_char(m.end());
            let (term, category) = &self.patterns[p];
            let span = Span { start, end };
            match index.get(term.as_str()) {
                Some(&i) => out[i].spans.push(span),
                None => {
                    index.insert(term, out.len());
                    out.push(Keyword {
                        text: term.clone(),
                        category: Some(category.clone()),
                        spans: vec![span],
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dictionary() -> &'static Dictionary {
        Dictionary::bundled()
    }

    fn texts(k: &[Keyword]) -> Vec<&str> {
        k.iter().map(|k| k.text.as_str()).collect()
    }

    #[test]
    fn the_example_sentence() {
        let x = DictionaryExtractor::new(dictionary()).expect("extractor");
        let text = "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.";
        let found = x.extract(text).expect("extract");
        assert_eq!(texts(&found), ["진통", "해열", "파스", "임산부", "노인"]);
        let chars: Vec<char> = text.chars().collect();
        for k in &found {
            for s in &k.spans {
                let surface: String = chars[s.start..s.end].iter().collect();
                assert_eq!(surface, k.text);
            }
        }
        assert_eq!(found[3].category.as_deref(), Some("population"));
    }

    #[test]
    fn aliases_give_the_term_and_repeats_add_spans() {
        let x = DictionaryExtractor::new(dictionary()).expect("extractor");
        let found = x
            .extract("임신부에게도, 임산부에게도 파스를")
            .expect("extract");
        assert_eq!(texts(&found), ["임산부", "파스"]);
        assert_eq!(
            found[0].spans,
            [Span { start: 0, end: 3 }, Span { start: 8, end: 11 }]
        );
    }

    #[test]
    fn latin_surfaces_respect_word_boundaries() {
        let x = DictionaryExtractor::new(dictionary()).expect("extractor");
        assert_eq!(
            texts(&x.extract("SK케미칼의 제품").expect("extract")),
            ["SK케미칼"]
        );
        assert!(texts(&x.extract("DSK케미칼").expect("extract")).is_empty());
    }

    #[test]
    fn excluded_terms_are_never_found() {
        let x = DictionaryExtractor::without(dictionary(), ["임산부"]).expect("extractor");
        let found = x.extract("임산부와 임신부, 노인").expect("extract");
        assert_eq!(texts(&found), ["노인"]);
    }
}
