//! The text pipeline shared by training and encoding: user-defined symbols split out, optional
//! NFKC, then SentencePiece's whitespace handling (`▁`) — built from `tokenizers`' own pieces so
//! the words the trainer counts are exactly the words the saved tokenizer hands to its model.

use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::normalizers::unicode::NFKC;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
#[cfg(test)]
use tokenizers::tokenizer::pattern::Pattern;
use tokenizers::{NormalizedString, Normalizer};
#[cfg(test)]
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
};

use crate::error::{Error, Result};

/// The whitespace marker SentencePiece and Gemma use.
pub const SPACE_MARKER: char = '▁';

/// Text normalization, chosen explicitly: there is no default, because it decides whether
/// `decode(encode(x)) == x` (identity) or full-width and compatibility forms are folded (NFKC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// Text is left as written; decoding gives back exactly the input.
    Identity,
    /// Unicode NFKC (SentencePiece's `nmt_nfkc` without its extra whitespace rules).
    Nfkc,
}

impl Normalization {
    /// Normalizes `text` the way the trained tokenizer will.
    pub fn apply(self, text: &str) -> String {
        match self {
            Self::Identity => text.to_owned(),
            Self::Nfkc => {
                let mut normalized = NormalizedString::from(text);
                // NFKC on a NormalizedString cannot fail.
                let _ = NFKC.normalize(&mut normalized);
                normalized.get().to_owned()
            }
        }
    }
}

/// Leftmost-longest symbol matches, the rule `tokenizers`' added vocabulary applies.
#[derive(Debug, Clone)]
pub(crate) struct SymbolMatcher(AhoCorasick);

impl SymbolMatcher {
    pub(crate) fn new(symbols: &[String]) -> Result<Option<Self>> {
        if symbols.is_empty() {
            return Ok(None);
        }
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(symbols)
            .map(|ac| Some(Self(ac)))
            .map_err(|e| Error::tokenizers("building the symbol matcher", e))
    }
}

#[cfg(test)]
impl Pattern for &SymbolMatcher {
    fn find_matches(&self, inside: &str) -> tokenizers::Result<Vec<(tokenizers::Offsets, bool)>> {
        let mut out = Vec::new();
        let mut at = 0;
        for m in self.0.find_iter(inside) {
            if m.start() > at {
                out.push(((at, m.start()), false));
            }
            out.push(((m.start(), m.end()), true));
            at = m.end();
        }
        if at < inside.len() || out.is_empty() {
            out.push(((at, inside.len()), false));
        }
        Ok(out)
    }
}

/// Splits lines into the words a trainer counts.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    normalization: Normalization,
    symbols: Option<SymbolMatcher>,
    add_dummy_prefix: bool,
    split_by_whitespace: bool,
}

impl Pipeline {
    pub(crate) fn new(
        normalization: Normalization,
        symbols: &[String],
        add_dummy_prefix: bool,
        split_by_whitespace: bool,
    ) -> Result<Self> {
        Ok(Self {
            normalization,
            symbols: SymbolMatcher::new(symbols)?,
            add_dummy_prefix,
            split_by_whitespace,
        })
    }

    /// Calls `word` for every word of `line`: what [`Pipeline::words`] returns, computed with
    /// plain string operations (the trainer's hot loop; the two are tested equal). `buf` is
    /// scratch space reused across calls.
    pub(crate) fn for_each_word(&self, line: &str, buf: &mut String, mut word: impl FnMut(&str)) {
        let normalized;
        let text = match self.normalization {
            Normalization::Identity => line,
            Normalization::Nfkc => {
                normalized = self.normalization.apply(line);
                normalized.as_str()
            }
        };
        let mut segment = |start: usize, end: usize| {
            if start == end {
                return;
            }
            buf.clear();
            if self.add_dummy_prefix && start == 0 && !text.starts_with([' ', SPACE_MARKER]) {
                buf.push(SPACE_MARKER);
            }
            for c in text[start..end].chars() {
                buf.push(if c == ' ' { SPACE_MARKER } else { c });
            }
            if !self.split_by_whitespace {
                word(buf);
                return;
            }
            // Split before every marker, the marker staying with what follows.
            let mut from = 0;
            for (at, _) in buf.match_indices(SPACE_MARKER) {
                if at > from {
                    word(&buf[from..at]);
                }
                from = at;
            }
            if from < buf.len() {
                word(&buf[from..]);
            }
        };
        let mut at = 0;
        if let Some(symbols) = &self.symbols {
            for m in symbols.0.find_iter(text) {
                segment(at, m.start());
                at = m.end();
            }
        }
        segment(at, text.len());
    }

    /// The words of one line, symbols removed (they are whole tokens and need no learning),
    /// computed by `tokenizers`' own machinery: the reference [`Pipeline::for_each_word`] is
    /// tested against.
    #[cfg(test)]
    pub(crate) fn words(&self, line: &str) -> Result<Vec<String>> {
        let mut text = PreTokenizedString::from(line);
        let fail = |e| Error::tokenizers("splitting a corpus line", e);
        // Symbols match raw text under identity, normalized text under NFKC, as the added
        // vocabulary does for `normalized: false` / `normalized: true` tokens.
        if self.normalization == Normalization::Nfkc {
            text.normalize(|n| NFKC.normalize(n)).map_err(fail)?;
        }
        if let Some(symbols) = &self.symbols {
            text.split(|_, n| n.split(symbols, SplitDelimiterBehavior::Removed))
                .map_err(fail)?;
        }
        metaspace(self.add_dummy_prefix, self.split_by_whitespace)
            .pre_tokenize(&mut text)
            .map_err(fail)?;
        Ok(text
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(word, _, _)| word.to_owned())
            .filter(|w| !w.is_empty())
            .collect())
    }
}

pub(crate) fn metaspace(add_dummy_prefix: bool, split_by_whitespace: bool) -> Metaspace {
    let scheme = if add_dummy_prefix {
        PrependScheme::First
    } else {
        PrependScheme::Never
    };
    Metaspace::new(SPACE_MARKER, scheme, split_by_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(symbols: &[&str], nfkc: bool) -> Pipeline {
        let symbols: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
        let norm = if nfkc {
            Normalization::Nfkc
        } else {
            Normalization::Identity
        };
        Pipeline::new(norm, &symbols, false, true).expect("pipeline")
    }

    #[test]
    fn the_fast_splitter_equals_the_tokenizers_pipeline() {
        let lines = [
            "파스형 연고를 바르는 파스",
            " leading space and trailing  ",
            "  ",
            "",
            "a▁b ▁ c",
            "파스",
            "파스파스 x파스y",
            "tab\there\u{1}ctl 🙂 𠀀 ＡＢＣ ㎎ mg",
            "e\u{301} 가\u{1100}\u{1161}",
        ];
        for nfkc in [false, true] {
            for prefix in [false, true] {
                for split in [false, true] {
                    let norm = if nfkc {
                        Normalization::Nfkc
                    } else {
                        Normalization::Identity
                    };
                    let symbols = ["파스".to_string(), "mg".to_string(), "▁".to_string()];
                    for syms in [&symbols[..2], &[][..]] {
                        let p = Pipeline::new(norm, syms, prefix, split).expect("pipeline");
                        let mut buf = String::new();
                        for line in lines {
                            let mut fast = Vec::new();
                            p.for_each_word(line, &mut buf, |w| fast.push(w.to_owned()));
                            assert_eq!(
                                fast,
                                p.words(line).expect("words"),
                                "{line:?} nfkc {nfkc} prefix {prefix} split {split}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn symbols_are_cut_out_even_inside_words() {
        let p = pipeline(&["파스", "연고"], false);
        assert_eq!(
            p.words("파스형 연고를 바르는 파스").expect("words"),
            vec!["형", "▁", "를", "▁바르는", "▁"]
        );
    }

    #[test]
    fn whitespace_becomes_the_marker_and_starts_words() {
        let p = pipeline(&[], false);
        assert_eq!(
            p.words("진통과  해열").expect("words"),
            vec!["진통과", "▁", "▁해열"]
        );
    }

    #[test]
    fn nfkc_folds_before_symbols_match() {
        let p = pipeline(&["mg"], true);
        // U+338E SQUARE MG folds to "mg" under NFKC and is then a symbol.
        assert_eq!(p.words("5\u{338E}").expect("words"), vec!["5"]);
        assert_eq!(Normalization::Nfkc.apply("\u{FF21}"), "A");
    }
}
