//! Free documents (drug leaflets) split into chunks by field and by length.
//!
//! A [`Document`] is a titled list of fields (`효능효과`, `용법용량`, `주의사항`, …). It comes from
//! a leaflet text file ([`Document::parse_leaflet`], [`Document::from_path`]) or from a JSONL
//! file ([`documents_from_jsonl`]); [`Document::chunks`] cuts it into [`Chunk`]s of kind
//! [`ChunkKind::Document`], one per field, or several overlapping pieces for a long field.
//!
//! # Leaflet format
//!
//! ```text
//! # 아세트아미노펜정 500밀리그램
//! @term 아세트아미노펜
//! @category ingredient
//!
//! [효능·효과]
//! 두통, 치통, 생리통의 진통 및 해열.
//!
//! 용법용량:
//! 1회 1~2정, 1일 3~4회 복용한다.
//! 저장방법: 실온보관
//! ```
//!
//! - The first non-blank line is the title, `# 제품명`.
//! - Between the title and the first field, blank lines and metadata lines: `@term 값` (the
//!   dictionary term the document is about) and `@category 값`, each at most once (`@term: 값`
//!   also reads). Any other `@key` is an error.
//! - A field starts at a header line: `[이름]` for any name, or `이름:` for a known name
//!   (효능효과, 용법용량, 주의사항, 사용상의 주의사항, 성분, 원료약품 및 분량, 저장방법, 성상,
//!   포장단위, 유효기간). Text after the colon of `이름: 본문` is the field's first body line.
//!   Known names are matched ignoring spaces and interpuncts (`·`, `ㆍ`, `・`), so `효능·효과`,
//!   `효능ㆍ효과` and `효능 효과` are all the field `효능효과`. Other `[이름]` headers are kept
//!   as written; other `이름:` lines are body text.
//! - Body lines run to the next header; each line is trimmed, the body is joined with `\n` and
//!   trimmed. Inside a body, `#` and `@` lines are plain text.
//!
//! Errors are [`RagError::Parse`] with the 1-based line: text before the first header, an empty
//! field (at its header), a duplicate field (at the second header), no fields (at the last
//! line), an unknown or repeated `@` key, a missing or empty title.
//!
//! # Splitting
//!
//! A field of at most [`ChunkOptions::max_chars`] characters (Unicode scalar values, so a Hangul
//! syllable counts one and is never cut) is one chunk. A longer field is cut greedily, in the
//! spirit of LangChain's `RecursiveCharacterTextSplitter`
//! (`langchain_text_splitters/character.py`: sentences, then words, then characters):
//! - A piece ends at the last sentence end that leaves it at least a third of `max_chars` long
//!   (`.`/`?`/`!` before whitespace, `다.` even without a space, `。`, a line break; a `.` after
//!   a digit, as in `1. `, is not a sentence end), else at the last word end, else at any
//!   earlier sentence or word end, else hard at `max_chars`.
//! - The next piece starts about [`ChunkOptions::overlap_chars`] before the previous end: at the
//!   last sentence start at least that far back if the overlap stays within twice
//!   `overlap_chars` and half of `max_chars`; else, less than `overlap_chars` back, at the first
//!   sentence start that keeps half the overlap, else at the first word start, else mid-word.
//! - Pieces are trimmed, so the whitespace between two pieces that do not overlap belongs to
//!   neither; every other character is in some piece.
//! - A trailing piece that adds fewer than [`ChunkOptions::min_chars`] new characters is merged
//!   into the previous piece, which then may hold up to `max_chars + min_chars` characters: the
//!   one exception to the `max_chars` bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, ChunkKind};
use crate::error::{RagError, Result};

/// The known leaflet fields: the name without spaces and interpuncts, and the name used.
const KNOWN_FIELDS: [(&str, &str); 10] = [
    ("효능효과", "효능효과"),
    ("용법용량", "용법용량"),
    ("주의사항", "주의사항"),
    ("사용상의주의사항", "사용상의 주의사항"),
    ("성분", "성분"),
    ("원료약품및분량", "원료약품 및 분량"),
    ("저장방법", "저장방법"),
    ("성상", "성상"),
    ("포장단위", "포장단위"),
    ("유효기간", "유효기간"),
];

/// Middle dots Korean text writes between paired words: U+00B7, U+318D (the araea jamo, often
/// typed for it), U+30FB, U+FF65, U+2027, U+2219.
const INTERPUNCTS: [char; 6] = ['·', 'ㆍ', '・', '･', '‧', '∙'];

/// The name a known field goes by (`효능·효과` → `효능효과`), or `None` for other names.
fn known_field(name: &str) -> Option<&'static str> {
    let key: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !INTERPUNCTS.contains(c))
        .collect();
    KNOWN_FIELDS
        .iter()
        .find(|(bare, _)| *bare == key)
        .map(|(_, used)| *used)
}

/// One field of a document: a leaflet section such as `효능효과` or `주의사항`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocField {
    /// The field name; known names are normalised (`효능·효과` → `효능효과`).
    pub name: String,
    /// The body: lines trimmed and joined with `\n`.
    pub text: String,
    /// The 1-based line of the field's header in its file (in JSONL, the record's line).
    pub line: usize,
}

/// A free document, such as a drug leaflet: a title and named fields in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// A name unique among the documents of one index (a leaflet's file stem); chunk keys start
    /// with `doc:{id}:`.
    pub id: String,
    /// The title (product name).
    pub title: String,
    /// Where the document came from (a path or a name).
    pub source: String,
    /// The dictionary term the document is about (`@term`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    /// The document's category (`@category`), a `kwx_data::Category` name or any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The fields, in file order, names unique.
    pub fields: Vec<DocField>,
}

fn parse_error(path: &Path, line: usize, reason: impl Into<String>) -> RagError {
    RagError::Parse {
        path: path.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// The file at `path` as UTF-8 text; invalid UTF-8 is a parse error naming the line and byte
/// column of the first bad byte.
fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| RagError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let column = valid.len() - line_start + 1;
        parse_error(path, line, format!("invalid UTF-8 at byte column {column}"))
    })
}

/// A header line's field name and the body text after its colon, if any.
fn header(line: &str) -> Option<(String, Option<&str>)> {
    if let Some(inner) = line.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let inner = inner.trim();
        if inner.is_empty() || inner.contains(['[', ']']) {
            return None;
        }
        let name = known_field(inner).map_or_else(|| inner.to_owned(), str::to_owned);
        return Some((name, None));
    }
    let (name, rest) = line.split_once([':', '：'])?;
    let name = known_field(name)?;
    let rest = rest.trim();
    Some((name.to_owned(), (!rest.is_empty()).then_some(rest)))
}

/// A field whose body is still being read.
struct OpenField<'a> {
    name: String,
    line: usize,
    body: Vec<&'a str>,
}

impl OpenField<'_> {
    fn finish(self, path: &Path) -> Result<DocField> {
        let text = self.body.join("\n").trim().to_owned();
        if text.is_empty() {
            return Err(parse_error(
                path,
                self.line,
                format!(
                    "empty field `{}`: give it a body or remove the header",
                    self.name
                ),
            ));
        }
        Ok(DocField {
            name: self.name,
            text,
            line: self.line,
        })
    }
}

impl Document {
    /// Parses a leaflet (see the [module docs](self) for the format); `source` names the text in
    /// errors and in the chunks.
    ///
    /// ```
    /// use kwx_rag::Document;
    ///
    /// let text = "# 케토프로펜 파스\n@term 케토프로펜\n\n효능·효과:\n요통, 근육통의 진통, 소염\n\
    ///             [용법용량]\n1일 1~2회 환부에 붙인다.\n";
    /// let doc = Document::parse_leaflet(text, "ketoprofen", "ketoprofen.txt")?;
    /// assert_eq!(doc.term.as_deref(), Some("케토프로펜"));
    /// assert_eq!(doc.fields[0].name, "효능효과");
    /// assert_eq!(doc.fields[1].line, 6);
    /// # Ok::<(), kwx_rag::RagError>(())
    /// ```
    pub fn parse_leaflet(
        text: &str,
        id: impl Into<String>,
        source: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let path = PathBuf::from(&source);
        let path = path.as_path();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut title: Option<String> = None;
        let mut term: Option<String> = None;
        let mut category: Option<String> = None;
        let mut fields: Vec<DocField> = Vec::new();
        let mut open: Option<OpenField<'_>> = None;
        let mut last_line = 1;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            last_line = number;
            let line = raw.trim();
            if title.is_none() {
                if line.is_empty() {
                    continue;
                }
                let Some(rest) = line.strip_prefix('#') else {
                    return Err(parse_error(
                        path,
                        number,
                        "no title: a leaflet starts with a `# 제품명` line",
                    ));
                };
                let rest = rest.trim_start_matches('#').trim();
                if rest.is_empty() {
                    return Err(parse_error(path, number, "empty title after `#`"));
                }
                title = Some(rest.to_owned());
                continue;
            }
            if let Some((name, inline)) = header(line) {
                if let Some(done) = open.take() {
                    fields.push(done.finish(path)?);
                }
                if let Some(first) = fields.iter().find(|f| f.name == name) {
                    return Err(parse_error(
                        path,
                        number,
                        format!("duplicate field `{name}` (first at line {})", first.line),
                    ));
                }
                open = Some(OpenField {
                    name,
                    line: number,
                    body: inline.into_iter().collect(),
                });
                continue;
            }
            if let Some(field) = &mut open {
                field.body.push(line);
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let Some(meta) = line.strip_prefix('@') else {
                return Err(parse_error(
                    path,
                    number,
                    "text before the first field header: start a field with `[효능효과]` or \
                     `효능효과:`",
                ));
            };
            let key_end = meta
                .find(|c: char| c.is_whitespace() || c == ':')
                .unwrap_or(meta.len());
            let (key, value) = meta.split_at(key_end);
            let value = value
                .trim_start_matches(|c: char| c.is_whitespace() || c == ':')
                .trim();
            let slot = match key {
                "term" => &mut term,
                "category" => &mut category,
                other => {
                    return Err(parse_error(
                        path,
                        number,
                        format!(
                            "unknown metadata key `@{other}`: a leaflet takes @term and @category"
                        ),
                    ));
                }
            };
            if slot.is_some() {
                return Err(parse_error(path, number, format!("`@{key}` given twice")));
            }
            if value.is_empty() {
                return Err(parse_error(
                    path,
                    number,
                    format!("`@{key}` without a value"),
                ));
            }
            *slot = Some(value.to_owned());
        }
        let Some(title) = title else {
            return Err(parse_error(
                path,
                1,
                "no title: a leaflet starts with a `# 제품명` line",
            ));
        };
        if let Some(done) = open.take() {
            fields.push(done.finish(path)?);
        }
        if fields.is_empty() {
            return Err(parse_error(
                path,
                last_line,
                "no fields: add a header such as `[효능효과]` or `효능효과:` after the title",
            ));
        }
        Ok(Self {
            id: id.into(),
            title,
            source,
            term,
            category,
            fields,
        })
    }

    /// Reads and parses a UTF-8 leaflet file; the id is the file stem, the source the path.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_utf8(path)?;
        let id = path
            .file_stem()
            .map_or_else(|| path.to_string_lossy(), |s| s.to_string_lossy())
            .into_owned();
        Self::parse_leaflet(&text, id, path.display().to_string())
    }

    /// The field called `name` (a known name in any spelling: `효능·효과` finds `효능효과`).
    pub fn field(&self, name: &str) -> Option<&DocField> {
        let name = known_field(name).unwrap_or(name);
        self.fields.iter().find(|f| f.name == name)
    }

    /// The document's chunks, field by field, pieces in order (see the [module docs](self) for
    /// the splitting rules).
    ///
    /// Each chunk has the key `doc:{id}:{field}:{piece}` (piece from 0), the document's term and
    /// category, `field` set, and the metadata `title`, `piece`, `pieces` (the field's piece
    /// count), `start_char` and `end_char` (the piece's character range in the field text). A
    /// field that is only whitespace gives no chunk.
    ///
    /// # Errors
    /// [`RagError::Config`] for invalid options; [`RagError::Parse`] (at the second field's line)
    /// when two fields share a name, since their keys would collide.
    pub fn chunks(&self, opts: &ChunkOptions) -> Result<Vec<Chunk>> {
        opts.validate()?;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for field in &self.fields {
            if let Some(first) = seen.insert(&field.name, field.line) {
                return Err(parse_error(
                    Path::new(&self.source),
                    field.line,
                    format!("duplicate field `{}` (first at line {first})", field.name),
                ));
            }
            let chars: Vec<char> = field.text.chars().collect();
            let pieces = split(&chars, opts);
            let count = pieces.len();
            for (piece, range) in pieces.into_iter().enumerate() {
                let metadata = BTreeMap::from([
                    ("title".to_owned(), self.title.clone()),
                    ("piece".to_owned(), piece.to_string()),
                    ("pieces".to_owned(), count.to_string()),
                    ("start_char".to_owned(), range.start.to_string()),
                    ("end_char".to_owned(), range.end.to_string()),
                ]);
                out.push(Chunk {
                    key: format!("doc:{}:{}:{piece}", self.id, field.name),
                    kind: ChunkKind::Document,
                    source: self.source.clone(),
                    term: self.term.clone(),
                    aliases: Vec::new(),
                    category: self.category.clone(),
                    field: Some(field.name.clone()),
                    text: chars[range].iter().collect(),
                    metadata,
                });
            }
        }
        Ok(out)
    }
}

/// How [`Document::chunks`] cuts long fields; lengths count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChunkOptions {
    /// The most characters in one piece (the merged trailing piece excepted). Default 400.
    pub max_chars: usize,
    /// About how many characters consecutive pieces share: less than `max_chars`; more (up to
    /// twice this and half of `max_chars`) only to start the next piece at a whole sentence.
    /// Default 80.
    pub overlap_chars: usize,
    /// A trailing piece adding fewer new characters than this merges into the previous one;
    /// at most `max_chars`. Default 20.
    pub min_chars: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_chars: 400,
            overlap_chars: 80,
            min_chars: 20,
        }
    }
}

impl ChunkOptions {
    /// The defaults: 400 characters, 80 of overlap, trailing pieces under 20 merged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`max_chars`](Self::max_chars).
    #[must_use]
    pub fn max_chars(mut self, max_chars: usize) -> Self {
        self.max_chars = max_chars;
        self
    }

    /// Sets [`overlap_chars`](Self::overlap_chars).
    #[must_use]
    pub fn overlap_chars(mut self, overlap_chars: usize) -> Self {
        self.overlap_chars = overlap_chars;
        self
    }

    /// Sets [`min_chars`](Self::min_chars).
    #[must_use]
    pub fn min_chars(mut self, min_chars: usize) -> Self {
        self.min_chars = min_chars;
        self
    }

    /// Checks the ranges: `max_chars` at least 1, `overlap_chars` below `max_chars`, `min_chars`
    /// at most `max_chars`.
    pub fn validate(&self) -> Result<()> {
        if self.max_chars == 0 {
            return Err(RagError::Config {
                field: "max_chars",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.overlap_chars >= self.max_chars {
            return Err(RagError::Config {
                field: "overlap_chars",
                reason: format!(
                    "{} must be smaller than max_chars ({})",
                    self.overlap_chars, self.max_chars
                ),
            });
        }
        if self.min_chars > self.max_chars {
            return Err(RagError::Config {
                field: "min_chars",
                reason: format!(
                    "{} must be at most max_chars ({})",
                    self.min_chars, self.max_chars
                ),
            });
        }
        Ok(())
    }
}

/// A place where a piece may end or begin, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    Sentence,
    Word,
}

/// Where pieces of one field may end and begin.
struct Boundaries {
    /// `ends[e]`: a piece may end before character `e` (`e` in `0..=len`).
    ends: Vec<Option<Boundary>>,
    /// `starts[p]`: a piece may begin at character `p`.
    starts: Vec<Option<Boundary>>,
}

impl Boundaries {
    fn new(chars: &[char]) -> Self {
        let n = chars.len();
        // newline_ahead[i]: chars[i..] opens with a whitespace run that holds a line break.
        let mut newline_ahead = vec![false; n + 1];
        for i in (0..n).rev() {
            newline_ahead[i] =
                chars[i].is_whitespace() && (chars[i] == '\n' || newline_ahead[i + 1]);
        }
        let mut ends = vec![None; n + 1];
        for e in 1..=n {
            let prev = chars[e - 1];
            if prev.is_whitespace() {
                continue;
            }
            let next = chars.get(e).copied();
            let before = e.checked_sub(2).map(|i| chars[i]);
            let space_after = next.is_none_or(char::is_whitespace);
            let sentence = newline_ahead[e]
                || next.is_none()
                || match prev {
                    '。' | '！' | '？' => true,
                    // `…한다.다음` without a space still ends a sentence.
                    '.' if before == Some('다') => true,
                    // `1. ` numbers a list item; `1.5` is a decimal (no space after).
                    '.' => space_after && !before.is_some_and(|c| c.is_ascii_digit()),
                    '?' | '!' => space_after,
                    _ => false,
                };
            ends[e] = if sentence {
                Some(Boundary::Sentence)
            } else if space_after {
                Some(Boundary::Word)
            } else {
                None
            };
        }
        let mut starts = vec![None; n + 1];
        // The index after the last non-whitespace character seen.
        let mut text_end = 0;
        for p in 0..n {
            if chars[p].is_whitespace() {
                continue;
            }
            if p > 0 {
                starts[p] = match ends[text_end] {
                    Some(Boundary::Sentence) if text_end > 0 => Some(Boundary::Sentence),
                    _ if text_end < p => Some(Boundary::Word),
                    _ => None,
                };
            }
            text_end = p + 1;
        }
        Self { ends, starts }
    }

    /// The last end in `lo..=hi` accepted by `pick`.
    fn last_end(&self, lo: usize, hi: usize, pick: impl Fn(Boundary) -> bool) -> Option<usize> {
        (lo..=hi).rev().find(|&e| self.ends[e].is_some_and(&pick))
    }
}

/// The character ranges of one field's pieces (see the module docs for the rules).
fn split(chars: &[char], opts: &ChunkOptions) -> Vec<std::ops::Range<usize>> {
    let Some(first) = chars.iter().position(|c| !c.is_whitespace()) else {
        return Vec::new();
    };
    let end = chars
        .iter()
        .rposition(|c| !c.is_whitespace())
        .map_or(first + 1, |p| p + 1);
    let max = opts.max_chars.max(1);
    if end - first <= max {
        // One piece: the whole (trimmed) field.
        return std::iter::once(first..end).collect();
    }
    let bounds = Boundaries::new(chars);
    let mut pieces: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = first;
    // Everything before `covered` is in some piece (or whitespace between pieces).
    let mut covered = first;
    loop {
        if end - start <= max {
            let fresh = end - covered.max(start);
            match pieces.last_mut() {
                Some(prev)
                    if fresh < opts.min_chars && end - prev.start <= max + opts.min_chars =>
                {
                    prev.end = end;
                }
                _ => pieces.push(start..end),
            }
            return pieces;
        }
        let limit = start + max;
        // Each piece must reach past the previous one.
        let lo_any = covered + 1;
        // A piece shorter than a third of `max` wastes a chunk; take a worse boundary instead.
        let lo_preferred = lo_any.max(start + max / 3);
        let piece_end = bounds
            .last_end(lo_preferred, limit, |b| b == Boundary::Sentence)
            .or_else(|| bounds.last_end(lo_preferred, limit, |_| true))
            .or_else(|| bounds.last_end(lo_any, limit, |_| true))
            .unwrap_or(limit);
        pieces.push(start..piece_end);
        covered = piece_end;
        // `piece_end < end`, and chars[end - 1] is text.
        let next_text = (piece_end..end)
            .find(|&p| !chars[p].is_whitespace())
            .unwrap_or(end - 1);
        start = overlap_start(chars, &bounds, start, piece_end, opts).unwrap_or(next_text);
        if next_text >= start + max {
            // The overlap would leave no room to reach the next text.
            start = next_text;
        }
    }
}

/// How far back the next piece may start to begin at a whole sentence: twice the overlap, at
/// most half a piece (never less than the overlap itself).
fn overlap_reach(opts: &ChunkOptions) -> usize {
    opts.overlap_chars
        .saturating_mul(2)
        .min(opts.max_chars / 2)
        .max(opts.overlap_chars)
}

/// Where the piece after `start..piece_end` starts; `None` for no overlap.
///
/// Best is the last sentence start at least `overlap` back (within [`overlap_reach`]), then
/// the first sentence start less than `overlap` back if it keeps half the overlap, then the
/// first word start, then the first character, less than `overlap` back.
fn overlap_start(
    chars: &[char],
    bounds: &Boundaries,
    start: usize,
    piece_end: usize,
    opts: &ChunkOptions,
) -> Option<usize> {
    let overlap = opts.overlap_chars;
    let lo = piece_end.saturating_sub(overlap).max(start + 1);
    if overlap == 0 || lo >= piece_end {
        return None;
    }
    let is_sentence = |p: &usize| bounds.starts[*p] == Some(Boundary::Sentence);
    let far = piece_end.saturating_sub(overlap_reach(opts)).max(start + 1);
    if let Some(p) = (far..=lo).rev().find(is_sentence) {
        return Some(p);
    }
    let window = lo..piece_end;
    if let Some(p) = window.clone().find(is_sentence)
        && piece_end - p >= overlap.div_ceil(2)
    {
        return Some(p);
    }
    window
        .clone()
        .find(|&p| bounds.starts[p].is_some())
        .or_else(|| window.clone().find(|&p| !chars[p].is_whitespace()))
}

/// One line of a documents JSONL file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentRecord {
    id: String,
    title: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    term: Option<String>,
    #[serde(default)]
    category: Option<String>,
    fields: FieldList,
}

/// `fields` in file order, from an object (`{"효능효과": "…"}`) or an array of pairs.
///
/// A hand-written visitor keeps an object's key order without serde_json's `preserve_order`
/// feature, and sees repeated keys.
struct FieldList(Vec<(String, String)>);

impl<'de> Deserialize<'de> for FieldList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldListVisitor)
    }
}

struct FieldListVisitor;

impl<'de> Visitor<'de> for FieldListVisitor {
    type Value = FieldList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of field name to text, or an array of [name, text] pairs")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldList, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry::<String, String>()? {
            fields.push(entry);
        }
        Ok(FieldList(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldList, A::Error> {
        let mut fields = Vec::new();
        while let Some(pair) = seq.next_element::<(String, String)>()? {
            fields.push(pair);
        }
        Ok(FieldList(fields))
    }
}

/// serde_json's message without its ` at line 1 column N` (every record is one line).
fn json_reason(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match message.strip_suffix(&position) {
        Some(bare) => format!("{bare} (column {})", err.column()),
        None => message,
    }
}

/// Reads documents from a JSONL file, one JSON object per line (see
/// [`documents_from_jsonl_str`] for the record format).
pub fn documents_from_jsonl(path: impl AsRef<Path>) -> Result<Vec<Document>> {
    let path = path.as_ref();
    documents_from_jsonl_str(&read_utf8(path)?, path)
}

/// Reads documents from JSONL text; `path` names it in errors and is the default `source`.
///
/// Each non-blank line is one object:
/// `{"id": "…", "title": "…", "source"?: "…", "term"?: "…", "category"?: "…", "fields": …}`,
/// where `fields` is an object `{"효능효과": "…", "용법·용량": "…"}` (read in file order) or an
/// array of `["name", "text"]` pairs. Field names are normalised as in leaflets, texts
/// trimmed; an empty `term` or `category` counts as absent. [`DocField::line`] is the record's
/// line.
///
/// # Errors
/// [`RagError::Parse`] naming the line: malformed JSON or an unknown key, an empty `id` or
/// `title`, an `id` already used, no fields, an empty field name or text, a repeated field.
pub fn documents_from_jsonl_str(text: &str, path: &Path) -> Result<Vec<Document>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let record: DocumentRecord =
            serde_json::from_str(line).map_err(|e| parse_error(path, number, json_reason(&e)))?;
        let id = record.id.trim();
        let title = record.title.trim();
        if id.is_empty() {
            return Err(parse_error(path, number, "empty `id`"));
        }
        if title.is_empty() {
            return Err(parse_error(path, number, "empty `title`"));
        }
        if let Some(first) = ids.insert(id.to_owned(), number) {
            return Err(parse_error(
                path,
                number,
                format!("duplicate id `{id}` (first at line {first})"),
            ));
        }
        if record.fields.0.is_empty() {
            return Err(parse_error(path, number, "no fields"));
        }
        let mut fields: Vec<DocField> = Vec::with_capacity(record.fields.0.len());
        for (name, text) in record.fields.0 {
            let name = name.trim();
            if name.is_empty() {
                return Err(parse_error(path, number, "empty field name"));
            }
            let name = known_field(name).unwrap_or(name).to_owned();
            let text = text.trim();
            if text.is_empty() {
                return Err(parse_error(path, number, format!("empty field `{name}`")));
            }
            if fields.iter().any(|f| f.name == name) {
                return Err(parse_error(
                    path,
                    number,
                    format!("duplicate field `{name}`"),
                ));
            }
            fields.push(DocField {
                name,
                text: text.to_owned(),
                line: number,
            });
        }
        let present = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        documents.push(Document {
            id: id.to_owned(),
            title: title.to_owned(),
            source: present(record.source).unwrap_or_else(|| path.display().to_string()),
            term: present(record.term),
            category: present(record.category),
            fields,
        });
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const LEAFLET: &str = "\u{feff}
# 타이레놀정 500밀리그램
@term 타이레놀
@category: product

[효능·효과]
감기로 인한 발열 및 두통, 치통, 생리통의 진통 및 해열.

용법ㆍ용량:
만 12세 이상 소아 및 성인은 1회 1~2정씩 복용한다.
  1일 최대 8정을 넘지 않는다.  

사용상의 주의사항: 임산부, 노인은 의사와 상의한다.
첨가제: 옥수수전분
# 이 줄은 본문이다

[참고 사항]
@term 은 본문의 글자다.
저장방법 :  실온보관
";

    fn parse(text: &str) -> Result<Document> {
        Document::parse_leaflet(text, "doc", "leaflet.txt")
    }

    fn parse_err(text: &str) -> (usize, String) {
        match parse(text) {
            Err(RagError::Parse { line, reason, path }) => {
                assert_eq!(path, PathBuf::from("leaflet.txt"));
                (line, reason)
            }
            other => panic!("expected a parse error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_leaflet_with_both_header_styles() {
        let doc = parse(LEAFLET).unwrap();
        assert_eq!(doc.id, "doc");
        assert_eq!(doc.title, "타이레놀정 500밀리그램");
        assert_eq!(doc.source, "leaflet.txt");
        assert_eq!(doc.term.as_deref(), Some("타이레놀"));
        assert_eq!(doc.category.as_deref(), Some("product"));
        let got: Vec<(&str, &str, usize)> = doc
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.text.as_str(), f.line))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "효능효과",
                    "감기로 인한 발열 및 두통, 치통, 생리통의 진통 및 해열.",
                    6
                ),
                (
                    "용법용량",
                    "만 12세 이상 소아 및 성인은 1회 1~2정씩 복용한다.\n1일 최대 8정을 넘지 않는다.",
                    9,
                ),
                (
                    "사용상의 주의사항",
                    "임산부, 노인은 의사와 상의한다.\n첨가제: 옥수수전분\n# 이 줄은 본문이다",
                    13,
                ),
                ("참고 사항", "@term 은 본문의 글자다.", 17),
                ("저장방법", "실온보관", 19),
            ]
        );
        assert_eq!(doc.field("효능ㆍ효과").map(|f| f.line), Some(6));
        assert_eq!(doc.field("사용상의주의사항").map(|f| f.line), Some(13));
        assert!(doc.field("성분").is_none());
    }

    #[test]
    fn known_field_names_ignore_interpuncts_and_spaces() {
        for spelling in [
            "효능효과",
            "효능·효과",
            "효능ㆍ효과",
            "효능・효과",
            "효능 · 효과",
            " 효능 효과 ",
        ] {
            assert_eq!(known_field(spelling), Some("효능효과"), "{spelling:?}");
        }
        assert_eq!(known_field("원료약품및분량"), Some("원료약품 및 분량"));
        assert_eq!(known_field("사용상의 주의사항"), Some("사용상의 주의사항"));
        assert_eq!(known_field("효능"), None);
        // `[이름]` keeps unknown names as written; `이름:` needs a known name.
        assert_eq!(
            header("[ 참고·사항 ]"),
            Some(("참고·사항".to_owned(), None))
        );
        assert_eq!(header("[용법·용량]"), Some(("용법용량".to_owned(), None)));
        assert_eq!(
            header("성상：흰색 정제"),
            Some(("성상".to_owned(), Some("흰색 정제")))
        );
        assert_eq!(header("첨가제: 전분"), None);
        assert_eq!(header("[]"), None);
        assert_eq!(header("[a] [b]"), None);
        assert_eq!(header("[효능효과] 두통"), None);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let cases: [(&str, usize, &str); 12] = [
            ("", 1, "no title"),
            ("\n\n  \n", 1, "no title"),
            ("\n[효능효과]\n두통\n", 2, "no title"),
            ("#   \n[효능효과]\n두통", 1, "empty title"),
            (
                "# 약\n\n이 약은\n[효능효과]\n두통",
                3,
                "before the first field",
            ),
            (
                "# 약\n@term 진통\n효능:\n[효능효과]\n두통",
                3,
                "before the first field",
            ),
            (
                "# 약\n[효능효과]\n\n  \n[용법용량]\n1정",
                2,
                "empty field `효능효과`",
            ),
            (
                "# 약\n[효능효과]\n두통\n용법용량:\n\n",
                4,
                "empty field `용법용량`",
            ),
            (
                "# 약\n[효능효과]\n두통\n[성분]\nA\n효능·효과: 치통\n",
                6,
                "duplicate field `효능효과` (first at line 2)",
            ),
            ("# 약\n@term 진통\n\n@category symptom\n\n", 5, "no fields"),
            (
                "# 약\n@term 진통\n@terms 해열\n[효능효과]\n두통",
                3,
                "unknown metadata key `@terms`",
            ),
            (
                "# 약\n@term 진통\n@term: 해열\n[효능효과]\n두통",
                3,
                "`@term` given twice",
            ),
        ];
        for (text, line, reason) in cases {
            let (got_line, got_reason) = parse_err(text);
            assert_eq!(got_line, line, "{text:?}: {got_reason}");
            assert!(got_reason.contains(reason), "{text:?}: {got_reason}");
        }
        let (line, reason) = parse_err("# 약\n@category\n[효능효과]\n두통");
        assert_eq!((line, reason.as_str()), (2, "`@category` without a value"));
        // CRLF files count lines the same way.
        let (line, _) = parse_err("# 약\r\n[효능효과]\r\n두통\r\n[효능효과]\r\n치통\r\n");
        assert_eq!(line, 4);
    }

    #[test]
    fn from_path_reads_id_and_rejects_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("파스_설명서.txt");
        std::fs::write(&good, "# 파스\n[효능효과]\n요통\n").unwrap();
        let doc = Document::from_path(&good).unwrap();
        assert_eq!(doc.id, "파스_설명서");
        assert_eq!(doc.source, good.display().to_string());

        let bad = dir.path().join("bad.txt");
        let mut bytes = "# 파스\n[효능효과]\n요통 ".as_bytes().to_vec();
        bytes.extend([0xED, 0xA0, 0x80]);
        bytes.extend(b"\n");
        std::fs::write(&bad, bytes).unwrap();
        match Document::from_path(&bad) {
            Err(RagError::Parse { path, line, reason }) => {
                assert_eq!(path, bad);
                assert_eq!(line, 3);
                assert_eq!(reason, "invalid UTF-8 at byte column 8");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Document::from_path(dir.path().join("missing.txt")),
            Err(RagError::Io { .. })
        ));
    }

    #[test]
    fn options_validate() {
        assert!(ChunkOptions::default().validate().is_ok());
        assert_eq!(
            ChunkOptions::new(),
            ChunkOptions {
                max_chars: 400,
                overlap_chars: 80,
                min_chars: 20
            }
        );
        let field = |o: ChunkOptions| match o.validate() {
            Err(RagError::Config { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(
                ChunkOptions::new()
                    .max_chars(0)
                    .overlap_chars(0)
                    .min_chars(0)
            ),
            "max_chars"
        );
        assert_eq!(field(ChunkOptions::new().max_chars(80)), "overlap_chars");
        assert_eq!(
            field(
                ChunkOptions::new()
                    .max_chars(50)
                    .overlap_chars(10)
                    .min_chars(51)
            ),
            "min_chars"
        );
        assert!(
            ChunkOptions::new()
                .max_chars(1)
                .overlap_chars(0)
                .min_chars(1)
                .validate()
                .is_ok()
        );
        let doc = parse(LEAFLET).unwrap();
        assert!(matches!(
            doc.chunks(&ChunkOptions::new().overlap_chars(400)),
            Err(RagError::Config {
                field: "overlap_chars",
                ..
            })
        ));
    }

    #[test]
    fn short_fields_are_one_chunk_with_exact_text() {
        let doc = parse(LEAFLET).unwrap();
        let chunks = doc.chunks(&ChunkOptions::default()).unwrap();
        assert_eq!(chunks.len(), doc.fields.len());
        for (chunk, field) in chunks.iter().zip(&doc.fields) {
            assert_eq!(chunk.text, field.text);
            assert_eq!(chunk.key, format!("doc:doc:{}:0", field.name));
            assert_eq!(chunk.kind, ChunkKind::Document);
            assert_eq!(chunk.source, "leaflet.txt");
            assert_eq!(chunk.term.as_deref(), Some("타이레놀"));
            assert_eq!(chunk.category.as_deref(), Some("product"));
            assert_eq!(chunk.field.as_deref(), Some(field.name.as_str()));
            let meta = |k: &str| chunk.metadata.get(k).map(String::as_str);
            assert_eq!(meta("title"), Some("타이레놀정 500밀리그램"));
            assert_eq!(meta("piece"), Some("0"));
            assert_eq!(meta("pieces"), Some("1"));
            assert_eq!(meta("start_char"), Some("0"));
            let chars = field.text.chars().count().to_string();
            assert_eq!(meta("end_char"), Some(chars.as_str()));
            assert_eq!(chunk.metadata.len(), 5);
        }
        assert_eq!(
            chunks[0].embedding_text(),
            "타이레놀 [효능효과]: 감기로 인한 발열 및 두통, 치통, 생리통의 진통 및 해열."
        );
        // Exactly max_chars characters (not bytes) still fits.
        let text = "가".repeat(400);
        let one = single("가", &text)
            .chunks(&ChunkOptions::default())
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].text, text);
    }

    #[test]
    fn whitespace_fields_give_no_chunk_and_duplicates_are_rejected() {
        let mut doc = single("주의사항", " \n ");
        assert!(doc.chunks(&ChunkOptions::default()).unwrap().is_empty());
        doc.fields = vec![
            DocField {
                name: "성분".into(),
                text: "A".into(),
                line: 3,
            },
            DocField {
                name: "성분".into(),
                text: "B".into(),
                line: 7,
            },
        ];
        match doc.chunks(&ChunkOptions::default()) {
            Err(RagError::Parse {
                line: 7, reason, ..
            }) => assert!(reason.contains("duplicate")),
            other => panic!("{other:?}"),
        }
    }

    fn single(field: &str, text: &str) -> Document {
        Document {
            id: "d".into(),
            title: "제목".into(),
            source: "test".into(),
            term: None,
            category: None,
            fields: vec![DocField {
                name: field.into(),
                text: text.into(),
                line: 2,
            }],
        }
    }

    /// The pieces of `text`, checked against the invariants every split keeps; returns ranges.
    fn checked_pieces(text: &str, opts: &ChunkOptions) -> Vec<Range<usize>> {
        let chunks = single("주의사항", text).chunks(opts).unwrap();
        let chars: Vec<char> = text.chars().collect();
        let ranges: Vec<Range<usize>> = chunks
            .iter()
            .map(|c| {
                let at = |k: &str| c.metadata[k].parse::<usize>().unwrap();
                at("start_char")..at("end_char")
            })
            .collect();
        let Some(first) = chars.iter().position(|c| !c.is_whitespace()) else {
            assert!(chunks.is_empty());
            return ranges;
        };
        let last = chars.iter().rposition(|c| !c.is_whitespace()).unwrap() + 1;
        assert_eq!(ranges.first().map(|r| r.start), Some(first));
        assert_eq!(ranges.last().map(|r| r.end), Some(last));
        for (i, (chunk, r)) in chunks.iter().zip(&ranges).enumerate() {
            assert_eq!(chunk.key, format!("doc:d:주의사항:{i}"));
            assert_eq!(chunk.metadata["piece"], i.to_string());
            assert_eq!(chunk.metadata["pieces"], chunks.len().to_string());
            assert!(r.start < r.end && r.end <= chars.len());
            assert_eq!(chunk.text, chars[r.clone()].iter().collect::<String>());
            assert!(!chars[r.start].is_whitespace() && !chars[r.end - 1].is_whitespace());
            let len = r.len();
            if i + 1 < chunks.len() {
                assert!(
                    len <= opts.max_chars,
                    "piece {i}: {len} > {}",
                    opts.max_chars
                );
            } else {
                assert!(len <= opts.max_chars + opts.min_chars, "last piece: {len}");
            }
        }
        for pair in ranges.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a.start < b.start && a.end < b.end, "{a:?} {b:?}");
            if b.start >= a.end {
                // No text lost: only whitespace between pieces that do not overlap.
                assert!(
                    chars[a.end..b.start].iter().all(|c| c.is_whitespace()),
                    "{a:?} {b:?}"
                );
            } else {
                let overlap = a.end - b.start;
                assert!(overlap <= overlap_reach(opts), "overlap {a:?} {b:?}");
                if overlap > opts.overlap_chars {
                    // Only a whole sentence may go past the asked overlap.
                    let gap = chars[..b.start]
                        .iter()
                        .rev()
                        .take_while(|c| c.is_whitespace());
                    let text_end = b.start - gap.clone().count();
                    let after_sentence = gap.clone().any(|&c| c == '\n')
                        || matches!(chars[text_end - 1], '.' | '?' | '!' | '。');
                    assert!(after_sentence, "overlap {overlap} of {opts:?} at {b:?}");
                }
            }
        }
        ranges
    }

    const WORDS: [&str; 24] = [
        "진통",
        "해열",
        "임산부는",
        "노인은",
        "파스를",
        "연고를",
        "의사",
        "약사와",
        "상의한다",
        "복용한다",
        "1.5밀리그램",
        "1일",
        "3~4회",
        "(아세트아미노펜)",
        "간독성이",
        "나타날",
        "수",
        "있으므로",
        "아나필락시스",
        "두드러기",
        "어린이의",
        "손이",
        "닿지",
        "ketoprofen",
    ];

    /// Prose: words of at most 16 characters, sentences of 1 to `max_words` words.
    fn prose(rng: &mut ChaCha8Rng, sentences: usize, max_words: usize) -> String {
        let mut out = String::new();
        for _ in 0..sentences {
            let words = rng.random_range(1..=max_words);
            for w in 0..words {
                if w > 0 {
                    out.push(' ');
                }
                out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            }
            out.push_str(["다.", ".", "?", "!", "。", "", ","][rng.random_range(0..7)]);
            out.push_str([" ", " ", " ", "\n", "  ", "\n\n"][rng.random_range(0..6)]);
        }
        out
    }

    /// Anything: runs without spaces, long whitespace runs, stray punctuation, 4-byte chars.
    fn wild(rng: &mut ChaCha8Rng, len: usize) -> String {
        let mut out = String::new();
        while out.chars().count() < len {
            match rng.random_range(0..10) {
                0 => {
                    let run = rng.random_range(1..300);
                    for _ in 0..run {
                        out.push(char::from_u32(rng.random_range(0xAC00..=0xD7A3)).unwrap());
                    }
                }
                1 => out.push_str(&" ".repeat(rng.random_range(1..200))),
                2 => out.push_str(
                    ["\n", "\r\n", "\t", "。", ".", "다.", "1. ", "🙂", "💊"]
                        [rng.random_range(0..9)],
                ),
                _ => {
                    let n = rng.random_range(1..40);
                    out.push_str(&prose(rng, n, 12));
                }
            }
        }
        out
    }

    fn random_options(rng: &mut ChaCha8Rng) -> ChunkOptions {
        let max_chars = rng.random_range(1..700);
        let overlap_chars = rng.random_range(0..max_chars);
        let min_chars = rng.random_range(0..=max_chars.min(60));
        ChunkOptions {
            max_chars,
            overlap_chars,
            min_chars,
        }
    }

    #[test]
    fn random_prose_splits_keep_invariants() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x6b77_7872);
        let mut multi = 0;
        for round in 0..300 {
            let sentences = rng.random_range(1..80);
            let text = prose(&mut rng, sentences, 25);
            let max_chars = rng.random_range(60..700);
            let overlap_chars = rng.random_range(0..max_chars / 3);
            let min_chars = rng.random_range(0..30);
            let opts = ChunkOptions {
                max_chars,
                overlap_chars,
                min_chars,
            };
            let ranges = checked_pieces(&text, &opts);
            if ranges.len() > 1 {
                multi += 1;
            }
            for pair in ranges.windows(2) {
                let overlap = pair[0].end.saturating_sub(pair[1].start);
                // Whole words of at most 16 characters: close to the asked overlap.
                let floor = overlap_chars
                    .div_ceil(2)
                    .min(overlap_chars.saturating_sub(18))
                    .max(1);
                if overlap_chars > 0 {
                    assert!(
                        overlap >= floor,
                        "round {round}: overlap {overlap} < {floor} ({opts:?})"
                    );
                } else {
                    assert_eq!(overlap, 0);
                }
            }
        }
        assert!(multi > 200, "only {multi} texts split");
    }

    #[test]
    fn random_wild_text_splits_keep_invariants() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..300 {
            let len = rng.random_range(0..3000);
            let text = wild(&mut rng, len);
            let opts = random_options(&mut rng);
            checked_pieces(&text, &opts);
        }
    }

    #[test]
    fn splits_end_at_sentences_when_sentences_are_short() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let ends = ['.', '?', '!', '。'];
        for _ in 0..100 {
            let mut text = String::new();
            for _ in 0..rng.random_range(40..100) {
                // Sentences of at most 8 words of at most 16 characters: under 140 characters.
                let words = rng.random_range(1..=8);
                let sentence: Vec<&str> = (0..words)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                    .collect();
                text.push_str(&sentence.join(" "));
                text.push_str(["다. ", ". ", "? ", "!\n", "。", "다."][rng.random_range(0..6)]);
            }
            let opts = ChunkOptions::new().max_chars(rng.random_range(420..800));
            let ranges = checked_pieces(&text, &opts);
            let chars: Vec<char> = text.chars().collect();
            assert!(ranges.len() > 1);
            for r in &ranges[..ranges.len() - 1] {
                assert!(ends.contains(&chars[r.end - 1]), "{:?}", &chars[r.clone()]);
            }
        }
    }

    #[test]
    fn text_without_spaces_splits_hard_on_char_boundaries() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let text: String = (0..1000)
            .map(|_| char::from_u32(rng.random_range(0xAC00..=0xD7A3)).unwrap())
            .collect();
        let opts = ChunkOptions::new()
            .max_chars(300)
            .overlap_chars(50)
            .min_chars(0);
        let ranges = checked_pieces(&text, &opts);
        // Hard cuts: full pieces, the asked overlap exactly.
        assert_eq!(ranges, [0..300, 250..550, 500..800, 750..1000]);
        let chunks = single("성분", &text).chunks(&opts).unwrap();
        for c in &chunks {
            assert!(c.text.chars().all(|ch| ('가'..='힣').contains(&ch)));
            assert_eq!(c.text.len(), 3 * c.text.chars().count());
        }
    }

    #[test]
    fn short_trailing_piece_merges_into_previous() {
        // 10 sentences of 10 characters ("가나다라마바사아다." + space): 109 characters.
        let text = "가나다라마바사아다. ".repeat(10);
        let text = text.trim_end();
        let opts = ChunkOptions::new()
            .max_chars(100)
            .overlap_chars(0)
            .min_chars(20);
        // Unmerged, the cut at 99 would leave a 9-character tail; it joins the first piece.
        let merged = checked_pieces(text, &opts);
        assert_eq!((merged.len(), merged[0].clone()), (1, 0..109));
        let opts = opts.min_chars(5);
        assert_eq!(checked_pieces(text, &opts), [0..98, 99..109]);
        // With overlap, the tail's new characters count, not its length.
        let opts = ChunkOptions::new()
            .max_chars(100)
            .overlap_chars(30)
            .min_chars(20);
        let merged = checked_pieces(text, &opts);
        assert_eq!((merged.len(), merged[0].clone()), (1, 0..109));
    }

    #[test]
    fn jsonl_reads_objects_in_order_and_pairs() {
        let text = concat!(
            "\u{feff}{\"id\": \"tylenol\", \"title\": \"타이레놀정\", \"term\": \"타이레놀\", ",
            "\"fields\": {\"용법·용량\": \"1회 1~2정\", \"효능효과\": \" 두통, 치통 \", ",
            "\"성분\": \"아세트아미노펜\"}}\n",
            "\n",
            "{\"id\": \"patch\", \"title\": \"파스\", \"source\": \"leaflets/patch.txt\", ",
            "\"category\": \"\", ",
            "\"fields\": [[\"주의사항\", \"임산부는 상의한다.\"], [\"[별첨]\", \"그림\"]]}\n",
        );
        let docs = documents_from_jsonl_str(text, Path::new("docs.jsonl")).unwrap();
        assert_eq!(docs.len(), 2);
        let names: Vec<&str> = docs[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["용법용량", "효능효과", "성분"]);
        assert_eq!(docs[0].fields[1].text, "두통, 치통");
        assert_eq!(docs[0].source, "docs.jsonl");
        assert_eq!(docs[0].term.as_deref(), Some("타이레놀"));
        assert_eq!(docs[1].fields[0].line, 3);
        assert_eq!(docs[1].fields[1].name, "[별첨]");
        assert_eq!(docs[1].source, "leaflets/patch.txt");
        assert_eq!(docs[1].category, None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs.jsonl");
        std::fs::write(&path, text).unwrap();
        let from_file = documents_from_jsonl(&path).unwrap();
        assert_eq!(from_file[1], docs[1]);
        std::fs::write(&path, b"{\"id\": \"a\", \"title\": \"\xff\"}\n").unwrap();
        assert!(matches!(
            documents_from_jsonl(&path),
            Err(RagError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let ok = r#"{"id": "a", "title": "A", "fields": {"성분": "X"}}"#;
        let cases: [(&str, &str); 10] = [
            (
                r#"{"id": "b", "title": "B", "fields": {"성분": "X"}"#,
                "EOF",
            ),
            (
                r#"{"id": "b", "title": "B", "fields": {"성분": "X"}, "extra": 1}"#,
                "unknown field `extra`",
            ),
            (r#"{"id": "b", "title": "B"}"#, "missing field `fields`"),
            (
                r#"{"id": " ", "title": "B", "fields": {"성분": "X"}}"#,
                "empty `id`",
            ),
            (
                r#"{"id": "a", "title": "B", "fields": {"성분": "X"}}"#,
                "duplicate id `a` (first at line 1)",
            ),
            (r#"{"id": "b", "title": "B", "fields": {}}"#, "no fields"),
            (
                r#"{"id": "b", "title": "B", "fields": {"성분": " "}}"#,
                "empty field `성분`",
            ),
            (
                r#"{"id": "b", "title": "B", "fields": {"효능효과": "X", "효능·효과": "Y"}}"#,
                "duplicate field `효능효과`",
            ),
            (
                r#"{"id": "b", "title": "B", "fields": [["성분"]]}"#,
                "invalid length 1",
            ),
            (
                r#"{"id": "b", "title": "B", "fields": "성분"}"#,
                "an object of field name to text",
            ),
        ];
        for (bad, reason) in cases {
            let text = format!("{ok}\n\n{bad}\n{ok}\n");
            match documents_from_jsonl_str(&text, Path::new("d.jsonl")) {
                Err(RagError::Parse {
                    path,
                    line,
                    reason: got,
                }) => {
                    assert_eq!(
                        (path.as_path(), line),
                        (Path::new("d.jsonl"), 3),
                        "{bad}: {got}"
                    );
                    assert!(got.contains(reason), "{bad}: {got}");
                    assert!(!got.contains("at line 1 column"), "{got}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn sample_leaflets_parse_and_split() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/leaflets");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 3);
        let mut long_fields = 0;
        for path in &paths {
            let doc = Document::from_path(path).unwrap();
            assert!(
                (4..=6).contains(&doc.fields.len()),
                "{}: {} fields",
                doc.id,
                doc.fields.len()
            );
            assert!(doc.term.is_some() && doc.category.as_deref() == Some("ingredient"));
            for known in ["효능효과", "용법용량"] {
                assert!(doc.field(known).is_some(), "{}: no {known}", doc.id);
            }
            let opts = ChunkOptions::default();
            let chunks = doc.chunks(&opts).unwrap();
            for field in &doc.fields {
                let pieces: Vec<&Chunk> = chunks
                    .iter()
                    .filter(|c| c.field.as_deref() == Some(&field.name))
                    .collect();
                if field.text.chars().count() > 900 {
                    long_fields += 1;
                    assert!(pieces.len() >= 3, "{}: {} pieces", field.name, pieces.len());
                    checked_pieces(&field.text, &opts);
                } else if field.text.chars().count() <= opts.max_chars {
                    assert_eq!(pieces.len(), 1);
                }
            }
        }
        assert_eq!(long_fields, 1);
        let all: String = paths
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        for term in [
            "진통",
            "해열",
            "파스",
            "임산부",
            "노인",
            "연고",
            "소염",
            "두통",
            "아세트아미노펜",
        ] {
            assert!(all.contains(term), "no {term}");
        }
    }
}
