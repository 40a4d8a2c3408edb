//! Rule-based stripping of Korean particles (조사), predicate endings and compound suffixes.
//!
//! Korean writes a noun and its particles as one word (`임산부에게`, `파스를`) and glues nouns
//! into compounds (`파스형`, `해열진통제`). A morphological analyzer (MeCab-ko, Kiwi) would split
//! these properly; kwx only needs the dictionary noun back, so a suffix list does: strip the
//! longest known particle or ending, up to three times (`임산부들에게는` → `임산부들에게` →
//! `임산부들` → `임산부`), and, where a caller asks for it, one compound suffix (`파스형` →
//! `파스`). The retrieval analyzer (`kwx_rag::analyzer`) indexes these stems and the evaluation
//! ([`crate::eval`]) compares keywords through [`strip_particles`].
//!
//! ```
//! use kwx_data::korean::{stems, strip_particles};
//!
//! assert_eq!(strip_particles("임산부들에게는"), "임산부");
//! assert_eq!(strip_particles("파스형"), "파스형"); // compound suffixes stay
//! assert!(stems("파스형을").contains(&"파스".to_owned()));
//! ```

/// Particles (조사), longest first within each length so the longest match strips first.
const PARTICLES: &[&str] = &[
    "에게서는",
    "으로서는",
    "으로써는",
    "에게서",
    "으로서",
    "으로써",
    "에서는",
    "에게는",
    "에게도",
    "한테서",
    "으로는",
    "이라도",
    "이라는",
    "까지는",
    "부터는",
    "에서도",
    "에서의",
    "에게의",
    "처럼",
    "까지",
    "부터",
    "에게",
    "한테",
    "께서",
    "에서",
    "으로",
    "이나",
    "이며",
    "이고",
    "이랑",
    "하고",
    "보다",
    "마다",
    "만큼",
    "에는",
    "에도",
    "과는",
    "와는",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "과",
    "와",
    "의",
    "에",
    "도",
    "만",
    "로",
    "나",
    "랑",
    "들",
];

/// Predicate endings after a noun (`적합합니다` → `적합`, `사용하는` → `사용`).
const ENDINGS: &[&str] = &[
    "하였습니다",
    "되었습니다",
    "했습니다",
    "됐습니다",
    "합니다",
    "됩니다",
    "입니다",
    "하세요",
    "하십시오",
    "해야",
    "하는",
    "하고",
    "하며",
    "하여",
    "하면",
    "한다",
    "했다",
    "된다",
    "되는",
    "되고",
    "되며",
    "이다",
    "이며",
    "시키는",
    "적인",
    "적으로",
    "한",
    "된",
    "할",
    "함",
    "적",
];

/// Compound suffixes, stripped by [`stems`] after particles (`파스형` → `파스`, `해열제` →
/// `해열`) and never by [`strip_particles`].
const SUFFIXES: &[&str] = &["형", "용", "제", "류", "성", "계", "약", "군", "증"];

/// The longest stem chain strip rounds (particles can stack: `임산부들에게는`).
const MAX_STRIPS: usize = 3;

/// Whether `c` is a Hangul syllable or a Han (Hanja) character.
pub fn is_syllabic(c: char) -> bool {
    matches!(c, '가'..='힣' | '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// Whether `c` is a middle dot that joins the halves of one Korean term (`효능·효과`,
/// `용법ㆍ용량`): U+00B7, U+318D (ㆍ), U+30FB, U+2027 and U+FF65.
pub fn is_joiner(c: char) -> bool {
    matches!(
        c,
        '\u{00B7}' | '\u{318D}' | '\u{30FB}' | '\u{2027}' | '\u{FF65}'
    )
}

/// `word` without its longest trailing particle or ending, if one strips to a stem that still
/// ends in a Hangul or Han character.
fn strip_once(word: &str) -> Option<&str> {
    PARTICLES
        .iter()
        .chain(ENDINGS)
        .filter(|p| word.len() > p.len() && word.ends_with(**p))
        .max_by_key(|p| p.len())
        .map(|p| &word[..word.len() - p.len()])
        .filter(|stem| stem.chars().next_back().is_some_and(is_syllabic))
}

/// The stems left after stripping one particle or ending per round, up to three rounds, in
/// chain order (longest first): `임산부들에게는` → `[임산부들에게, 임산부들, 임산부]`. Each round
/// strips the longest match; a stem keeps at least one syllable and a stem that would end in a
/// non-Hangul character stops the chain. Compound suffixes stay. The word itself is not
/// included.
pub fn particle_stems(word: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut current = word;
    while out.len() < MAX_STRIPS {
        let Some(stem) = strip_once(current) else {
            break;
        };
        out.push(stem);
        current = stem;
    }
    out
}

/// `word` with its trailing particles and endings removed: the last of [`particle_stems`], or
/// `word` itself when nothing strips. Never empty for a non-empty word, and never strips a
/// compound suffix (`파스형` stays `파스형`).
pub fn strip_particles(word: &str) -> &str {
    particle_stems(word).pop().unwrap_or(word)
}

/// Stems of one Korean word, sorted: the [`particle_stems`], then, from the word and each of
/// those stems, the stem without one compound suffix (`파스형을` → `파스형`, `파스`). The word
/// itself is not included.
pub fn stems(word: &str) -> Vec<String> {
    let chain = particle_stems(word);
    let mut out: Vec<String> = chain.iter().map(|&s| s.to_owned()).collect();
    for stem in std::iter::once(word).chain(chain) {
        for suffix in SUFFIXES {
            if stem.len() > suffix.len() && stem.ends_with(suffix) {
                out.push(stem[..stem.len() - suffix.len()].to_owned());
            }
        }
    }
    out.retain(|s| s != word);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn particles_strip_one_round_at_a_time() {
        // 에게는 beats 는; then 들.
        assert_eq!(particle_stems("임산부들에게는"), ["임산부들", "임산부"]);
        // Longest match first: 에게서는, not 는.
        assert_eq!(particle_stems("노인에게서는"), ["노인"]);
        // Three rounds at most.
        assert_eq!(
            particle_stems("임산부들에게는도만"),
            ["임산부들에게는도", "임산부들에게는", "임산부들"]
        );
        assert_eq!(strip_particles("임산부에게"), "임산부");
        assert_eq!(strip_particles("적합합니다"), "적합");
        assert_eq!(strip_particles("진통과"), "진통");
    }

    #[test]
    fn strip_particles_never_empties_or_strips_compounds() {
        assert_eq!(strip_particles("는"), "는");
        assert_eq!(strip_particles("은는"), "은");
        assert_eq!(strip_particles(""), "");
        assert_eq!(strip_particles("해열"), "해열");
        assert_eq!(strip_particles("파스형"), "파스형");
        assert_eq!(strip_particles("해열제를"), "해열제");
        // The stem must end in a syllable: `500mg을` keeps its particle.
        assert_eq!(strip_particles("500mg을"), "500mg을");
        assert_eq!(strip_particles("GC녹십자의"), "GC녹십자");
    }

    #[test]
    fn stems_add_compound_suffixes() {
        assert_eq!(stems("해열"), Vec::<String>::new());
        assert_eq!(stems("파스형"), ["파스"]);
        assert_eq!(stems("파스형을"), ["파스", "파스형"]);
        assert_eq!(stems("해열진통제는"), ["해열진통", "해열진통제"]);
        // `임산부들에게` → 임산부들 → 임산부; no compound suffix ends any of them.
        assert_eq!(stems("임산부들에게"), ["임산부", "임산부들"]);
        assert_eq!(stems("형"), Vec::<String>::new());
    }

    #[test]
    fn joiners_and_syllables() {
        assert!(is_joiner('·') && is_joiner('ㆍ') && !is_joiner('.'));
        assert!(is_syllabic('가') && is_syllabic('藥') && !is_syllabic('a') && !is_syllabic('ㄱ'));
    }
}
