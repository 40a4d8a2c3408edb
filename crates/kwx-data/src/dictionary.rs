//! The domain dictionary: one entry per term, with category, a one-sentence Korean definition,
//! aliases and an optional English gloss; loaders and writers for JSONL, TOML and TSV.
//!
//! Every loader applies the rules of [`Dictionary::new`] and reports the 1-based file line of the
//! offending entry, so a curator can jump straight to it. The bundled dictionary
//! (`data/pharma_ko.jsonl`, [`Dictionary::bundled`]) was written for kwx from general knowledge.
//!
//! ```
//! use kwx_data::dictionary::{Category, Dictionary};
//!
//! let dict = Dictionary::bundled();
//! let entry = dict.resolve("임신부").expect("임신부 is an alias of 임산부");
//! assert_eq!(entry.term, "임산부");
//! assert_eq!(entry.category, Category::Population);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// What kind of term an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Symptoms and efficacy (진통, 해열, 소염, 두통, …).
    Symptom,
    /// Diseases and conditions (감기, 관절염, …).
    Disease,
    /// Dosage forms (파스, 정제, 연고, 주사제, 시럽, 캡슐, 점안액, …).
    DosageForm,
    /// Target populations (임산부, 수유부, 노인, 소아, …).
    Population,
    /// Active ingredients (아세트아미노펜, 이부프로펜, …).
    Ingredient,
    /// Manufacturers (신신제약, 유한양행, …).
    Manufacturer,
    /// Product names (타이레놀, …).
    Product,
    /// Drug classes (해열진통제, 항히스타민제, …).
    DrugClass,
    /// Safety terms (병용금기, 부작용, …).
    Safety,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 9] = [
        Category::Symptom,
        Category::Disease,
        Category::DosageForm,
        Category::Population,
        Category::Ingredient,
        Category::Manufacturer,
        Category::Product,
        Category::DrugClass,
        Category::Safety,
    ];

    /// The snake_case name used in files (`dosage_form`).
    pub fn name(self) -> &'static str {
        match self {
            Category::Symptom => "symptom",
            Category::Disease => "disease",
            Category::DosageForm => "dosage_form",
            Category::Population => "population",
            Category::Ingredient => "ingredient",
            Category::Manufacturer => "manufacturer",
            Category::Product => "product",
            Category::DrugClass => "drug_class",
            Category::Safety => "safety",
        }
    }

    /// The category of a file name (`dosage_form`), if known.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dictionary entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The dictionary form, which gold labels use (`임산부`).
    pub term: String,
    /// Its category.
    pub category: Category,
    /// One Korean sentence, usable in a prompt.
    pub definition: String,
    /// Variants that mean the same term (`임신부`, `플라스타`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// English gloss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub english: Option<String>,
}

impl Entry {
    /// The term followed by its aliases: every surface form that names this entry.
    pub fn surfaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.term.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// Why a dictionary could not be loaded, validated or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DictionaryError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The dictionary file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not well-formed JSONL, TOML or TSV, or an entry misses a field.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The dictionary file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser expected.
        message: String,
    },
    /// Two entries share a term.
    #[error(
        "{}:{line}: duplicate term `{term}` (first defined on line {first_line})",
        path.display()
    )]
    DuplicateTerm {
        /// The dictionary file.
        path: PathBuf,
        /// 1-based line of the second entry.
        line: usize,
        /// The repeated term.
        term: String,
        /// 1-based line of the first entry.
        first_line: usize,
    },
    /// A required text field (or an alias or English gloss that is present) is empty.
    #[error("{}:{line}: field `{field}` is empty", path.display())]
    EmptyField {
        /// The dictionary file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// `term`, `definition`, `aliases` or `english`.
        field: &'static str,
    },
    /// A text field is not empty but cannot be stored as is (padding, control characters, a `|`
    /// inside an alias), so it would not survive a round trip through every format.
    #[error("{}:{line}: field `{field}` {problem}", path.display())]
    InvalidField {
        /// The dictionary file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// `term`, `definition`, `aliases` or `english`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The category is not one of [`Category::ALL`].
    #[error(
        "{}:{line}: unknown category `{category}` (known: {})",
        path.display(),
        known_category_names()
    )]
    UnknownCategory {
        /// The dictionary file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The category as written.
        category: String,
    },
    /// An alias equals its own term, another entry's term, or another alias.
    #[error(
        "{}:{line}: alias `{alias}` of `{term}` is already the term or an alias of `{other_term}`",
        path.display()
    )]
    AliasConflict {
        /// The dictionary file.
        path: PathBuf,
        /// 1-based line of the entry that was read second.
        line: usize,
        /// The contested surface form.
        alias: String,
        /// The entry that lists it as an alias.
        term: String,
        /// The entry that already owns it (as term or alias).
        other_term: String,
    },
    /// The file name does not end in `.jsonl`, `.toml` or `.tsv`.
    #[error(
        "{}: unknown dictionary format (expected a .jsonl, .toml or .tsv extension)",
        path.display()
    )]
    UnknownFormat {
        /// The dictionary file.
        path: PathBuf,
    },
}

fn known_category_names() -> String {
    Category::ALL.map(Category::name).join(", ")
}

/// The TSV header, which every TSV dictionary starts with.
const TSV_HEADER: &str = "term\tcategory\tdefinition\taliases\tenglish";
/// Separates aliases inside the TSV `aliases` column.
const ALIAS_SEPARATOR: char = '|';
/// The path reported for [`Dictionary::new`].
const MEMORY_PATH: &str = "<memory>";
/// The path reported if the bundled file were invalid.
const BUNDLED_PATH: &str = "<bundled>/pharma_ko.jsonl";
static BUNDLED_JSONL: &str = include_str!("../data/pharma_ko.jsonl");

/// A validated set of entries with lookups by term, by surface form and by category.
///
/// Terms are unique; every alias is unique across the dictionary and differs from every term,
/// so [`Dictionary::resolve`] is unambiguous.
#[derive(Debug, Clone)]
pub struct Dictionary {
    entries: Vec<Entry>,
    by_term: HashMap<String, usize>,
    by_surface: HashMap<String, usize>,
}

impl Dictionary {
    /// Validates `entries` with the rules every loader applies; errors report the line as
    /// index + 1 and the path `<memory>`.
    ///
    /// Rules: `term` and `definition` (and `english` and each alias when present) are non-empty,
    /// carry no leading or trailing whitespace and no control characters; aliases contain no `|`;
    /// terms are unique; an alias never equals its own term, another term or another alias.
    pub fn new(entries: Vec<Entry>) -> Result<Self, DictionaryError> {
        let mut builder = Builder::new(Path::new(MEMORY_PATH));
        for (index, entry) in entries.into_iter().enumerate() {
            builder.push(index + 1, entry)?;
        }
        Ok(builder.finish())
    }

    /// The dictionary shipped with kwx (`data/pharma_ko.jsonl`), parsed on first use.
    pub fn bundled() -> &'static Dictionary {
        static BUNDLED: OnceLock<Dictionary> = OnceLock::new();
        BUNDLED.get_or_init(|| {
            // The file is compiled in and a test parses it, so failing here is a bug in kwx.
            Dictionary::from_jsonl_str(BUNDLED_JSONL, Path::new(BUNDLED_PATH))
                .unwrap_or_else(|err| panic!("the bundled dictionary is invalid: {err}"))
        })
    }

    /// Loads a dictionary file, choosing the format by extension (`.jsonl`, `.toml`, `.tsv`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, DictionaryError> {
        let path = path.as_ref();
        let format = Format::of(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| DictionaryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match format {
            Format::Jsonl => Self::from_jsonl_str(&text, path),
            Format::Toml => Self::from_toml_str(&text, path),
            Format::Tsv => Self::from_tsv_str(&text, path),
        }
    }

    /// Parses JSON Lines: one entry object per line, blank lines skipped. `path` only labels
    /// errors.
    pub fn from_jsonl_str(text: &str, path: &Path) -> Result<Self, DictionaryError> {
        let mut builder = Builder::new(path);
        for (index, line_text) in strip_bom(text).lines().enumerate() {
            let line = index + 1;
            if line_text.trim().is_empty() {
                continue;
            }
            let raw: RawEntry =
                serde_json::from_str(line_text).map_err(|err| DictionaryError::Parse {
                    path: path.to_path_buf(),
                    line,
                    message: json_message(&err),
                })?;
            builder.push(line, raw.into_entry(path, line)?)?;
        }
        Ok(builder.finish())
    }

    /// Parses TOML with one `[[entry]]` table per entry. Errors report the line of the entry's
    /// `[[entry]]` header. `path` only labels errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, DictionaryError> {
        let file: TomlFile = toml::from_str(text).map_err(|err| DictionaryError::Parse {
            path: path.to_path_buf(),
            line: err.span().map_or(1, |span| line_of(text, span.start)),
            message: err.message().trim_end().to_owned(),
        })?;
        let mut builder = Builder::new(path);
        for spanned in file.entry {
            // The span of an array-of-tables element is its `[[entry]]` header.
            let line = line_of(text, spanned.span().start);
            builder.push(line, spanned.into_inner().into_entry(path, line)?)?;
        }
        Ok(builder.finish())
    }

    /// Parses TSV: the header `term\tcategory\tdefinition\taliases\tenglish`, then one entry per
    /// line with aliases separated by `|` and an empty `english` column for no gloss. Blank lines
    /// are skipped. `path` only labels errors.
    pub fn from_tsv_str(text: &str, path: &Path) -> Result<Self, DictionaryError> {
        let parse_error = |line: usize, message: String| DictionaryError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut lines = strip_bom(text).lines().enumerate();
        match lines.next() {
            Some((_, header)) if header == TSV_HEADER => {}
            Some((_, header)) => {
                return Err(parse_error(
                    1,
                    format!(
                        "expected the header `{}`, found `{header}`",
                        TSV_HEADER.escape_debug()
                    ),
                ));
            }
            None => {
                return Err(parse_error(
                    1,
                    format!("missing the header `{}`", TSV_HEADER.escape_debug()),
                ));
            }
        }
        let mut builder = Builder::new(path);
        for (index, line_text) in lines {
            let line = index + 1;
            if line_text.is_empty() {
                continue;
            }
            let columns: Vec<&str> = line_text.split('\t').collect();
            let [term, category, definition, aliases, english] = columns[..] else {
                return Err(parse_error(
                    line,
                    format!(
                        "expected 5 tab-separated columns (term, category, definition, aliases, \
                         english), found {}",
                        columns.len()
                    ),
                ));
            };
            let category =
                Category::from_name(category).ok_or_else(|| DictionaryError::UnknownCategory {
                    path: path.to_path_buf(),
                    line,
                    category: category.to_owned(),
                })?;
            let entry = Entry {
                term: term.to_owned(),
                category,
                definition: definition.to_owned(),
                aliases: if aliases.is_empty() {
                    Vec::new()
                } else {
                    aliases.split(ALIAS_SEPARATOR).map(str::to_owned).collect()
                },
                english: (!english.is_empty()).then(|| english.to_owned()),
            };
            builder.push(line, entry)?;
        }
        Ok(builder.finish())
    }

    /// All entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose dictionary form is `term` (aliases do not match; see
    /// [`Dictionary::resolve`]).
    pub fn get(&self, term: &str) -> Option<&Entry> {
        self.by_term.get(term).map(|&index| &self.entries[index])
    }

    /// The entry named by `surface`, as its term or one of its aliases (`임신부` → `임산부`).
    pub fn resolve(&self, surface: &str) -> Option<&Entry> {
        self.by_surface
            .get(surface)
            .map(|&index| &self.entries[index])
    }

    /// The entries of one category, in file order.
    pub fn by_category(&self, category: Category) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |entry| entry.category == category)
    }

    /// Every surface form (each term, then its aliases) with its entry, in file order.
    pub fn surfaces(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .flat_map(|entry| entry.surfaces().map(move |s| (s, entry)))
    }

    /// JSON Lines, one object per entry with fields in the order term, category, definition,
    /// aliases, english; [`Dictionary::from_jsonl_str`] reads it back unchanged.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            // Serializing strings and a unit enum into memory cannot fail.
            let line = serde_json::to_string(entry).expect("an entry always serializes to JSON");
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// TOML, one `[[entry]]` table per entry; [`Dictionary::from_toml_str`] reads it back
    /// unchanged.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (index, entry) in self.entries.iter().enumerate() {
            if index > 0 {
                out.push('\n');
            }
            out.push_str("[[entry]]\n");
            out.push_str(&format!("term = {}\n", toml_string(&entry.term)));
            out.push_str(&format!(
                "category = {}\n",
                toml_string(entry.category.name())
            ));
            out.push_str(&format!(
                "definition = {}\n",
                toml_string(&entry.definition)
            ));
            let aliases: Vec<String> = entry.aliases.iter().map(|a| toml_string(a)).collect();
            out.push_str(&format!("aliases = [{}]\n", aliases.join(", ")));
            if let Some(english) = &entry.english {
                out.push_str(&format!("english = {}\n", toml_string(english)));
            }
        }
        out
    }

    /// TSV with the header line; [`Dictionary::from_tsv_str`] reads it back unchanged (validation
    /// keeps tabs, newlines and `|` out of the fields).
    pub fn to_tsv(&self) -> String {
        let mut out = String::from(TSV_HEADER);
        out.push('\n');
        for entry in &self.entries {
            let aliases = entry.aliases.join(&ALIAS_SEPARATOR.to_string());
            let english = entry.english.as_deref().unwrap_or("");
            let row = [
                entry.term.as_str(),
                entry.category.name(),
                entry.definition.as_str(),
                aliases.as_str(),
                english,
            ];
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
        out
    }

    /// Writes the dictionary in the format its extension names, atomically: the text goes to a
    /// temporary file in the same directory, which then replaces `path`, so readers never see a
    /// half-written dictionary.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), DictionaryError> {
        let path = path.as_ref();
        let text = match Format::of(path)? {
            Format::Jsonl => self.to_jsonl(),
            Format::Toml => self.to_toml(),
            Format::Tsv => self.to_tsv(),
        };
        let io_error = |source| DictionaryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kwx-dictionary-").suffix(".tmp");
        // A normal file's mode (0644 less the umask), not the temporary file's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let mut temp = builder.tempfile_in(dir).map_err(io_error)?;
        temp.write_all(text.as_bytes()).map_err(io_error)?;
        temp.as_file().sync_all().map_err(io_error)?;
        temp.persist(path).map_err(|err| io_error(err.error))?;
        Ok(())
    }
}

/// Accumulates entries, enforcing the validation rules as they arrive.
struct Builder<'a> {
    path: &'a Path,
    entries: Vec<Entry>,
    lines: Vec<usize>,
    by_term: HashMap<String, usize>,
    by_surface: HashMap<String, usize>,
}

impl<'a> Builder<'a> {
    fn new(path: &'a Path) -> Self {
        Self {
            path,
            entries: Vec::new(),
            lines: Vec::new(),
            by_term: HashMap::new(),
            by_surface: HashMap::new(),
        }
    }

    fn push(&mut self, line: usize, entry: Entry) -> Result<(), DictionaryError> {
        let path = self.path;
        check_text(path, line, "term", &entry.term)?;
        check_text(path, line, "definition", &entry.definition)?;
        if let Some(english) = &entry.english {
            check_text(path, line, "english", english)?;
        }
        for alias in &entry.aliases {
            check_text(path, line, "aliases", alias)?;
            if alias.contains(ALIAS_SEPARATOR) {
                return Err(DictionaryError::InvalidField {
                    path: path.to_path_buf(),
                    line,
                    field: "aliases",
                    problem: "contains `|`, which separates aliases in TSV",
                });
            }
        }

        if let Some(&first) = self.by_term.get(&entry.term) {
            return Err(DictionaryError::DuplicateTerm {
                path: path.to_path_buf(),
                line,
                term: entry.term,
                first_line: self.lines[first],
            });
        }
        if let Some(&owner) = self.by_surface.get(&entry.term) {
            // Not a term (checked above), so an earlier entry lists it as an alias.
            return Err(DictionaryError::AliasConflict {
                path: path.to_path_buf(),
                line,
                alias: entry.term.clone(),
                term: self.entries[owner].term.clone(),
                other_term: entry.term,
            });
        }

        let index = self.entries.len();
        self.by_term.insert(entry.term.clone(), index);
        self.by_surface.insert(entry.term.clone(), index);
        for alias in &entry.aliases {
            if let Some(&owner) = self.by_surface.get(alias) {
                let other_term = if owner == index {
                    &entry.term
                } else {
                    &self.entries[owner].term
                };
                let err = DictionaryError::AliasConflict {
                    path: path.to_path_buf(),
                    line,
                    alias: alias.clone(),
                    term: entry.term.clone(),
                    other_term: other_term.clone(),
                };
                self.rollback(&entry, index);
                return Err(err);
            }
            self.by_surface.insert(alias.clone(), index);
        }
        self.entries.push(entry);
        self.lines.push(line);
        Ok(())
    }

    /// Forgets the surfaces of a rejected entry; the builder is dropped on error anyway, but this
    /// keeps its maps consistent with `entries`.
    fn rollback(&mut self, entry: &Entry, index: usize) {
        self.by_term.remove(&entry.term);
        self.by_surface.retain(|_, owner| *owner != index);
    }

    fn finish(self) -> Dictionary {
        Dictionary {
            entries: self.entries,
            by_term: self.by_term,
            by_surface: self.by_surface,
        }
    }
}

fn check_text(
    path: &Path,
    line: usize,
    field: &'static str,
    text: &str,
) -> Result<(), DictionaryError> {
    if text.trim().is_empty() {
        return Err(DictionaryError::EmptyField {
            path: path.to_path_buf(),
            line,
            field,
        });
    }
    let problem = if text.trim() != text {
        "has leading or trailing whitespace"
    } else if text.chars().any(char::is_control) {
        "contains a control character (tab, newline, …)"
    } else {
        return Ok(());
    };
    Err(DictionaryError::InvalidField {
        path: path.to_path_buf(),
        line,
        field,
        problem,
    })
}

/// An entry as written in a file: the category is still a string, so an unknown one is reported
/// as [`DictionaryError::UnknownCategory`] with its line rather than as a generic parse error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    term: String,
    category: String,
    definition: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    english: Option<String>,
}

impl RawEntry {
    fn into_entry(self, path: &Path, line: usize) -> Result<Entry, DictionaryError> {
        let category = Category::from_name(&self.category).ok_or_else(|| {
            DictionaryError::UnknownCategory {
                path: path.to_path_buf(),
                line,
                category: self.category,
            }
        })?;
        Ok(Entry {
            term: self.term,
            category,
            definition: self.definition,
            aliases: self.aliases,
            english: self.english,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    entry: Vec<toml::Spanned<RawEntry>>,
}

#[derive(Clone, Copy)]
enum Format {
    Jsonl,
    Toml,
    Tsv,
}

impl Format {
    fn of(path: &Path) -> Result<Self, DictionaryError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        [
            ("jsonl", Format::Jsonl),
            ("toml", Format::Toml),
            ("tsv", Format::Tsv),
        ]
        .into_iter()
        .find(|(name, _)| extension.eq_ignore_ascii_case(name))
        .map(|(_, format)| format)
        .ok_or_else(|| DictionaryError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML basic string: quoted, with `"`, `\` and control characters escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// serde_json's message without its "at line 1 column N" suffix, which would contradict the file
/// line we report.
fn json_message(err: &serde_json::Error) -> String {
    let message = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match message.strip_suffix(&suffix) {
        Some(bare) => format!("{bare} (column {})", err.column()),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_offset() {
        let text = "a\nbc\n\nd";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 5), 3);
        assert_eq!(line_of(text, 6), 4);
    }

    #[test]
    fn toml_string_escapes_quotes_and_backslashes() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("파스"), "\"파스\"");
    }
    /// Atomic writes leave a normal file's mode, not the temporary file's private 0600. The
    /// oracle is a file `File::create` makes in the same folder (0666 less this process's
    /// umask): the dictionary gets those bits within 0644, `AtomicJsonlWriter` exactly those.
    #[cfg(unix)]
    #[test]
    fn atomic_writes_get_a_normal_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            meta.permissions().mode() & 0o777
        };
        std::fs::File::create(dir.path().join("plain.txt")).unwrap();
        let normal = mode("plain.txt");

        Dictionary::bundled()
            .write(dir.path().join("dictionary.jsonl"))
            .unwrap();
        crate::jsonl::write_jsonl_atomic(dir.path().join("records.jsonl"), [1, 2]).unwrap();
        let (dictionary, records) = (mode("dictionary.jsonl"), mode("records.jsonl"));
        // Group and other may read whatever the umask lets them read.
        assert_eq!(
            dictionary & 0o044,
            normal & 0o044,
            "{dictionary:o} vs {normal:o}"
        );
        assert_eq!(records & 0o044, normal & 0o044, "{records:o} vs {normal:o}");
        assert_eq!(dictionary, normal & 0o644, "{dictionary:o} vs {normal:o}");
        assert_eq!(records, normal, "{records:o} vs {normal:o}");
    }
}
