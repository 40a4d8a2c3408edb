//! Korean-aware text analysis for the lexical index.
//!
//! Korean writes a noun and its particles as one word (`임산부에게`, `파스를`) and glues nouns
//! into compounds (`파스형`, `해열진통제`), so whitespace tokens miss most dictionary terms. Two
//! analyzers feed two sets of fields:
//!
//! - **word** ([`WordTokenizer`]): each word (split at whitespace and punctuation) lowercased, the
//!   stems left after stripping particles and endings one at a time (`임산부들에게` → `임산부들`
//!   → `임산부`) and common compound suffixes (`파스형` → `파스`), and for mixed-script words each
//!   script run (`GC녹십자` → `gc`, `녹십자`). Exact-form matches, weighted high. The stripping
//!   rules live in [`kwx_data::korean`], which the evaluation shares.
//! - **gram** ([`GramTokenizer`]): character bigrams of every Hangul/Han run (a one-syllable run
//!   is its own unigram) and lowercased Latin/digit runs. Catches compounds and spelling variants
//!   the stripper does not know, weighted lower.
//!
//! Both run the same way on documents and on queries.

use kwx_data::korean::{is_joiner, particle_stems};
use tantivy::tokenizer::{TextAnalyzer, Token, TokenStream, Tokenizer};

pub use kwx_data::korean::{is_syllabic, stems};

/// The tantivy name of the word analyzer.
pub const WORD_ANALYZER: &str = "kwx_ko_word";
/// The tantivy name of the word analyzer's query side (adds compound-suffix stems).
pub const WORD_QUERY_ANALYZER: &str = "kwx_ko_word_query";
/// The tantivy name of the gram analyzer.
pub const GRAM_ANALYZER: &str = "kwx_ko_gram";

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_syllabic(c)
}

/// [`stems`], or without the compound-suffix round the particle stems alone, sorted.
fn stems_with(word: &str, compound_suffixes: bool) -> Vec<String> {
    if compound_suffixes {
        return stems(word);
    }
    let mut out: Vec<String> = particle_stems(word)
        .into_iter()
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

/// Script runs of a word: `(start, end, syllabic)`, byte offsets into the word.
fn runs(word: &str) -> Vec<(usize, usize, bool)> {
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    for (i, c) in word.char_indices() {
        let syl = is_syllabic(c);
        match out.last_mut() {
            Some(last) if last.2 == syl => last.1 = i + c.len_utf8(),
            _ => out.push((i, i + c.len_utf8(), syl)),
        }
    }
    out
}

/// Words of `text`: maximal runs of Hangul, Han, letters and digits; `(byte start, byte end)`.
fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = chars.peek() {
            if is_syllabic(c) || is_word_char(c) {
                break;
            }
            chars.next();
        }
        let (start, _) = *chars.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !(is_syllabic(c) || is_word_char(c) || is_joiner(c)) {
                break;
            }
            if !is_joiner(c) {
                end = i + c.len_utf8();
            }
            chars.next();
        }
        Some((start, end))
    })
}

/// Runs `emit(text, byte_from, byte_to)` for every word-analyzer token of `text` as indexed:
/// words, particle/ending stems and script runs. Compound suffixes are stripped on the query
/// side only ([`query_word_tokens`]): a query `파스형` should find the entry `파스`, but the entry
/// `해열제` should not become an exact match for every sentence that says `해열`.
pub fn word_tokens(text: &str, emit: impl FnMut(String, usize, usize)) {
    word_tokens_with(text, false, emit);
}

/// The query side of the word analyzer: [`word_tokens`] plus compound-suffix stems.
pub fn query_word_tokens(text: &str, emit: impl FnMut(String, usize, usize)) {
    word_tokens_with(text, true, emit);
}

fn word_tokens_with(
    text: &str,
    compound_suffixes: bool,
    mut emit: impl FnMut(String, usize, usize),
) {
    for (start, end) in words(text) {
        let word: String = text[start..end]
            .chars()
            .filter(|&c| !is_joiner(c))
            .flat_map(char::to_lowercase)
            .collect();
        emit(word.clone(), start, end);
        let parts = runs(&word);
        if let Some(&(s, e, true)) = parts.last() {
            for stem in stems_with(&word[s..e], compound_suffixes) {
                // Mixed words keep their prefix: `h2수용체길항제` → `h2수용체길항`.
                emit(format!("{}{stem}", &word[..s]), start, end);
                if s > 0 {
                    emit(stem, start, end);
                }
            }
        }
        if parts.len() > 1 {
            for &(s, e, _) in &parts {
                emit(word[s..e].to_owned(), start, end);
            }
        }
    }
}

/// Runs `emit(text, byte_from, byte_to)` for every gram-analyzer token of `text`.
pub fn gram_tokens(text: &str, mut emit: impl FnMut(String, usize, usize)) {
    for (start, end) in words(text) {
        // Characters with their byte offsets in `text`, joiners dropped.
        let chars: Vec<(usize, char)> = text[start..end]
            .char_indices()
            .filter(|&(_, c)| !is_joiner(c))
            .map(|(i, c)| (start + i, c))
            .collect();
        let mut i = 0;
        while i < chars.len() {
            let syllabic = is_syllabic(chars[i].1);
            let mut j = i + 1;
            while j < chars.len() && is_syllabic(chars[j].1) == syllabic {
                j += 1;
            }
            let run = &chars[i..j];
            let run_end = run[run.len() - 1].0 + run[run.len() - 1].1.len_utf8();
            if !syllabic {
                let text: String = run.iter().flat_map(|&(_, c)| c.to_lowercase()).collect();
                emit(text, run[0].0, run_end);
            } else if run.len() == 1 {
                emit(run[0].1.to_string(), run[0].0, run_end);
            } else {
                for pair in run.windows(2) {
                    let (from, a) = pair[0];
                    let (at, b) = pair[1];
                    let mut gram = String::with_capacity(a.len_utf8() + b.len_utf8());
                    gram.push(a);
                    gram.push(b);
                    emit(gram, from, at + b.len_utf8());
                }
            }
            i = j;
        }
    }
}

/// A token stream over precomputed tokens.
pub struct VecTokenStream {
    tokens: Vec<Token>,
    index: usize,
}

impl VecTokenStream {
    fn collect(text: &str, tokens: fn(&str, &mut dyn FnMut(String, usize, usize))) -> Self {
        let mut out = Vec::new();
        tokens(text, &mut |text, from, to| {
            let position = out.len();
            out.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text,
                position_length: 1,
            });
        });
        Self {
            tokens: out,
            index: 0,
        }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        if self.index < self.tokens.len() {
            self.index += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self
            .index
            .saturating_sub(1)
            .min(self.tokens.len().saturating_sub(1))]
    }

    fn token_mut(&mut self) -> &mut Token {
        let i = self
            .index
            .saturating_sub(1)
            .min(self.tokens.len().saturating_sub(1));
        &mut self.tokens[i]
    }
}

/// The word analyzer as a tantivy [`Tokenizer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WordTokenizer;

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::collect(text, |t, emit| word_tokens(t, emit))
    }
}

/// The query side of the word analyzer as a tantivy [`Tokenizer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryWordTokenizer;

impl Tokenizer for QueryWordTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::collect(text, |t, emit| query_word_tokens(t, emit))
    }
}

/// The gram analyzer as a tantivy [`Tokenizer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GramTokenizer;

impl Tokenizer for GramTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::collect(text, |t, emit| gram_tokens(t, emit))
    }
}

/// Registers the analyzers on `index` under [`WORD_ANALYZER`], [`WORD_QUERY_ANALYZER`] and
/// [`GRAM_ANALYZER`].
pub fn register(index: &tantivy::Index) {
    let manager = index.tokenizers();
    manager.register(WORD_ANALYZER, TextAnalyzer::from(WordTokenizer));
    manager.register(WORD_QUERY_ANALYZER, TextAnalyzer::from(QueryWordTokenizer));
    manager.register(GRAM_ANALYZER, TextAnalyzer::from(GramTokenizer));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        word_tokens(text, |t, _, _| out.push(t));
        out
    }

    fn grams_of(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        gram_tokens(text, |t, _, _| out.push(t));
        out
    }

    #[test]
    fn particles_and_endings_strip_to_the_noun() {
        assert!(words_of("임산부에게").contains(&"임산부".to_owned()));
        assert!(words_of("파스를").contains(&"파스".to_owned()));
        assert!(words_of("임산부들에게는").contains(&"임산부".to_owned()));
        assert!(words_of("적합합니다.").contains(&"적합".to_owned()));
        assert!(words_of("진통과 해열").contains(&"진통".to_owned()));
    }

    #[test]
    fn compounds_and_mixed_scripts() {
        let mut query = Vec::new();
        query_word_tokens("파스형 의약품", |t, _, _| query.push(t));
        assert!(query.contains(&"파스".to_owned()));
        // Indexed names keep their compounds whole.
        assert!(!words_of("해열제").contains(&"해열".to_owned()));
        let mixed = words_of("GC녹십자의 H2수용체길항제");
        for t in [
            "gc녹십자",
            "gc",
            "녹십자",
            "h2수용체길항제",
            "h2",
            "수용체길항제",
        ] {
            assert!(mixed.contains(&t.to_owned()), "{t} missing from {mixed:?}");
        }
        assert_eq!(grams_of("파스형"), ["파스", "스형"]);
        assert_eq!(grams_of("삠"), ["삠"]);
        assert_eq!(grams_of("코엔자임Q10"), ["코엔", "엔자", "자임", "q10"]);
    }

    #[test]
    fn middle_dots_join_a_term() {
        assert_eq!(words_of("효능·효과"), words_of("효능효과"));
        assert_eq!(grams_of("용법ㆍ용량"), grams_of("용법용량"));
        assert!(!words_of("효능·효과가").contains(&"효과".to_owned()));
        assert_eq!(grams_of("·"), Vec::<String>::new());
    }

    #[test]
    fn offsets_point_at_the_source() {
        let text = "  노인에게, 파스를!";
        gram_tokens(text, |t, from, to| {
            assert_eq!(t, text[from..to].to_lowercase())
        });
        word_tokens(text, |_, from, to| {
            assert!(text.is_char_boundary(from) && to <= text.len())
        });
    }

    #[test]
    fn token_stream_yields_every_token() {
        let mut tok = WordTokenizer;
        let mut stream = tok.token_stream("임산부에게 파스");
        let mut seen = Vec::new();
        while stream.advance() {
            seen.push(stream.token().text.clone());
        }
        assert_eq!(seen, words_of("임산부에게 파스"));
    }
}
