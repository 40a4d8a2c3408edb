//! JSONL datasets: the two record formats, a streaming reader that names the file and line of
//! every bad record, a validation pass with drop/keep policies, and atomic writes.
//!
//! Formats (one JSON object per line, [JSON Lines](https://jsonlines.org/)):
//! - instruction tuning, the Alpaca layout (tatsu-lab/stanford_alpaca, `alpaca_data.json`):
//!   `{"instruction": "...", "input": "<text>", "output": "[\"진통\",\"해열\"]"}`, where `output` is
//!   the keyword list written as a JSON array string ([`InstructionRecord`]);
//! - SFT: `{"text": "<text>", "labels": ["진통", "해열"]}` ([`SftRecord`]).
//!
//! Unknown fields are ignored, so files that carry extra columns (`id`, `source`) still read.
//!
//! [`JsonlReader`] reads one raw byte line at a time into a reused buffer, so memory stays flat
//! however large the file is. Line and column numbers are 1-based; columns count bytes of the
//! raw line, as editors and `serde_json` do. A UTF-8 byte-order mark on line 1 is skipped.
//!
//! [`validate_sft`] and [`validate_sft_stream`] check SFT rows in one pass; see [`Issue`] for
//! what is checked and [`ValidationConfig`] for the limits and policies.
//!
//! [`write_jsonl_atomic`] and [`AtomicJsonlWriter`] write to a temporary file beside the target,
//! fsync it and rename it over the target, so readers see the old file or the new one, never a
//! half-written one.
//!
//! ```
//! use kwx_data::jsonl::{JsonlReader, SftRecord, ValidationConfig, validate_sft};
//!
//! let data = "{\"text\": \"두통에 진통제\", \"labels\": [\"두통\"]}\n\n{\"text\": 1}\n";
//! let mut reader = JsonlReader::<_, SftRecord>::new(data.as_bytes(), "inline.jsonl")
//!     .skip_invalid(true);
//! let records: Vec<SftRecord> = reader.by_ref().collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 1);
//! assert_eq!(reader.error_count(), 1);
//! assert_eq!(reader.errors()[0].line(), Some(3));
//!
//! let report = validate_sft(records, &ValidationConfig::default());
//! assert_eq!(report.rows_kept, 1);
//! # Ok::<(), kwx_data::jsonl::JsonlError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use tempfile::NamedTempFile;

/// Lines longer than this (64 MiB) are rejected unless [`JsonlReader::max_line_bytes`] says
/// otherwise, so a file without newlines cannot make the reader buffer all of it.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// How many errors a skipping reader keeps by default ([`JsonlReader::errors_kept`]).
pub const DEFAULT_ERRORS_KEPT: usize = 100;

/// After a line this long, the reader gives its buffer back instead of holding it.
const RETAINED_BUFFER_BYTES: usize = 1 << 20;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What can go wrong reading, parsing or writing JSONL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonlError {
    /// Opening, reading, writing or renaming a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or the name given to the reader or writer).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line is not valid UTF-8.
    #[error("{}:{line}:{column}: invalid UTF-8 at byte column {column}", path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based byte column of the first invalid byte.
        column: usize,
    },
    /// A line is not well-formed JSON (a syntax error, or the line ends mid-value).
    #[error("{}:{line}:{column}: malformed JSON: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based byte column where `serde_json` stopped.
        column: usize,
        /// `serde_json`'s message, without its position.
        message: String,
    },
    /// A required field is absent.
    #[error("{}:{line}: missing field `{field}`", path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field's name.
        field: String,
    },
    /// A field has the wrong type or value (`"labels": "진통"`), or appears twice.
    #[error("{}:{line}:{column}: {}{message}", path.display(), field_prefix(field.as_deref()))]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based byte column where `serde_json` stopped.
        column: usize,
        /// The top-level field the bad value belongs to; `None` when the line is not an object.
        field: Option<String>,
        /// `serde_json`'s message (`invalid type: integer `3`, expected a string`).
        message: String,
    },
    /// A line is longer than the reader's limit.
    #[error("{}:{line}: line longer than {limit} bytes", path.display())]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A record could not be serialized; nothing of it was written.
    #[error("{}:{line}: cannot serialize record: {source}", path.display())]
    Serialize {
        /// The file being written.
        path: PathBuf,
        /// The line the record would have had.
        line: usize,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// An instruction record's `output` is not a JSON array of strings.
    #[error("`output` is not a JSON array of strings ({source}): {output:.80}")]
    InvalidOutput {
        /// The offending `output` value.
        output: String,
        /// The underlying error.
        source: serde_json::Error,
    },
}

fn field_prefix(field: Option<&str>) -> String {
    field.map(|f| format!("field `{f}`: ")).unwrap_or_default()
}

impl JsonlError {
    /// The 1-based line the error is about, where there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            JsonlError::InvalidUtf8 { line, .. }
            | JsonlError::Json { line, .. }
            | JsonlError::MissingField { line, .. }
            | JsonlError::InvalidField { line, .. }
            | JsonlError::LineTooLong { line, .. }
            | JsonlError::Serialize { line, .. } => Some(*line),
            JsonlError::Io { .. } | JsonlError::InvalidOutput { .. } => None,
        }
    }

    /// The file the error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            JsonlError::Io { path, .. }
            | JsonlError::InvalidUtf8 { path, .. }
            | JsonlError::Json { path, .. }
            | JsonlError::MissingField { path, .. }
            | JsonlError::InvalidField { path, .. }
            | JsonlError::LineTooLong { path, .. }
            | JsonlError::Serialize { path, .. } => Some(path),
            JsonlError::InvalidOutput { .. } => None,
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        JsonlError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records

/// An SFT example: a text and the keywords to extract from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SftRecord {
    /// The source text.
    pub text: String,
    /// The gold keywords, in dictionary form.
    pub labels: Vec<String>,
}

impl SftRecord {
    /// The same example as an instruction record: `input` is the text, `output` the labels as a
    /// compact JSON array string (`["진통","해열"]`, non-ASCII unescaped).
    pub fn to_instruction(&self, instruction: &str) -> InstructionRecord {
        let labels = self
            .labels
            .iter()
            .cloned()
            .map(serde_json::Value::String)
            .collect();
        InstructionRecord {
            instruction: instruction.to_owned(),
            input: self.text.clone(),
            output: serde_json::Value::Array(labels).to_string(),
        }
    }
}

/// An instruction-tuning example in the Alpaca layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstructionRecord {
    /// The task description.
    pub instruction: String,
    /// The source text.
    pub input: String,
    /// The keywords as a JSON array string (`"[\"진통\",\"해열\"]"`).
    pub output: String,
}

impl InstructionRecord {
    /// The keywords in `output`.
    ///
    /// # Errors
    /// [`JsonlError::InvalidOutput`] when `output` is not a JSON array of strings.
    pub fn labels(&self) -> Result<Vec<String>, JsonlError> {
        serde_json::from_str(&self.output).map_err(|source| JsonlError::InvalidOutput {
            output: self.output.clone(),
            source,
        })
    }

    /// The same example as an SFT record (`text` is `input`); the instruction is dropped.
    ///
    /// # Errors
    /// [`JsonlError::InvalidOutput`] when `output` is not a JSON array of strings.
    pub fn to_sft(&self) -> Result<SftRecord, JsonlError> {
        Ok(SftRecord {
            text: self.input.clone(),
            labels: self.labels()?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A streaming JSONL reader: an iterator of `Result<T, JsonlError>`, one item per non-blank line.
///
/// By default it stops after the first error (which it yields). With
/// [`skip_invalid(true)`](Self::skip_invalid) it yields only good records and counts the bad
/// ones, keeping the first [`errors_kept`](Self::errors_kept) of them; I/O errors still end the
/// iteration, since the rest of the stream cannot be trusted.
///
/// Iterate by reference (`reader.by_ref()`, `&mut reader`) to look at [`errors`](Self::errors)
/// afterwards; [`numbered`](Self::numbered) yields each record with its line number.
pub struct JsonlReader<R, T> {
    inner: R,
    path: PathBuf,
    buf: Vec<u8>,
    line: usize,
    bytes_read: u64,
    skip_invalid: bool,
    errors_kept: usize,
    max_line_bytes: usize,
    errors: Vec<JsonlError>,
    error_count: usize,
    done: bool,
    record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonlReader<BufReader<File>, T> {
    /// Opens a file.
    ///
    /// # Errors
    /// [`JsonlError::Io`] when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, JsonlError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| JsonlError::io(path, e))?;
        Ok(Self::new(BufReader::with_capacity(1 << 16, file), path))
    }
}

impl<R: BufRead, T: DeserializeOwned> JsonlReader<R, T> {
    /// Reads from any buffered reader; `name` stands for the file in errors (`<stdin>`).
    pub fn new(reader: R, name: impl Into<PathBuf>) -> Self {
        JsonlReader {
            inner: reader,
            path: name.into(),
            buf: Vec::new(),
            line: 0,
            bytes_read: 0,
            skip_invalid: false,
            errors_kept: DEFAULT_ERRORS_KEPT,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            errors: Vec::new(),
            error_count: 0,
            done: false,
            record: PhantomData,
        }
    }

    /// Skip bad lines (recording them) instead of stopping at the first.
    #[must_use]
    pub fn skip_invalid(mut self, skip: bool) -> Self {
        self.skip_invalid = skip;
        self
    }

    /// How many skipped-line errors to keep (the rest are only counted).
    #[must_use]
    pub fn errors_kept(mut self, n: usize) -> Self {
        self.errors_kept = n;
        self
    }

    /// The longest line accepted, in bytes, not counting its line ending.
    #[must_use]
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    /// The file name used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line number of the last line read (0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Bytes consumed so far, line endings included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The first [`errors_kept`](Self::errors_kept) errors of skipped lines, in file order.
    pub fn errors(&self) -> &[JsonlError] {
        &self.errors
    }

    /// How many lines were skipped as invalid.
    pub fn error_count(&self) -> usize {
        self.error_count
    }

    /// Takes the kept errors out of the reader.
    pub fn take_errors(&mut self) -> Vec<JsonlError> {
        std::mem::take(&mut self.errors)
    }

    /// An iterator of `(line, record)` over the rest of the file.
    pub fn numbered(&mut self) -> Numbered<'_, R, T> {
        Numbered { reader: self }
    }

    /// The next record with its 1-based line number.
    pub fn next_numbered(&mut self) -> Option<Result<(usize, T), JsonlError>> {
        while !self.done {
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            match self.parse() {
                Ok(Some(record)) => return Some(Ok((self.line, record))),
                Ok(None) => {}
                Err(e) if self.skip_invalid => {
                    self.error_count += 1;
                    if self.errors.len() < self.errors_kept {
                        self.errors.push(e);
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Reads the next raw line into `buf`; `Ok(false)` at the end of the input. A line over the
    /// limit is consumed to its end and left in `buf` truncated, for `parse` to reject.
    fn read_line(&mut self) -> Result<bool, JsonlError> {
        self.buf.clear();
        if self.buf.capacity() > RETAINED_BUFFER_BYTES {
            self.buf.shrink_to(RETAINED_BUFFER_BYTES);
        }
        // Room for the longest accepted line plus "\r\n", and one byte to notice it is longer.
        let limit = self.max_line_bytes.saturating_add(3) as u64;
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| JsonlError::io(&self.path, e))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.bytes_read += n as u64;
        if n as u64 == limit && self.buf.last() != Some(&b'\n') {
            self.skip_rest_of_line()?;
        }
        Ok(true)
    }

    fn skip_rest_of_line(&mut self) -> Result<(), JsonlError> {
        loop {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(JsonlError::io(&self.path, e)),
            };
            if available.is_empty() {
                return Ok(());
            }
            let (used, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            self.inner.consume(used);
            self.bytes_read += used as u64;
            if found {
                return Ok(());
            }
        }
    }

    /// Parses `buf`; `Ok(None)` for a blank line.
    fn parse(&self) -> Result<Option<T>, JsonlError> {
        let mut content: &[u8] = &self.buf;
        if let Some(rest) = content.strip_suffix(b"\n") {
            content = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        let mut offset = 0;
        if self.line == 1
            && let Some(rest) = content.strip_prefix(UTF8_BOM)
        {
            content = rest;
            offset = UTF8_BOM.len();
        }
        if content.len() > self.max_line_bytes {
            return Err(JsonlError::LineTooLong {
                path: self.path.clone(),
                line: self.line,
                limit: self.max_line_bytes,
            });
        }
        if content.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let text = std::str::from_utf8(content).map_err(|e| JsonlError::InvalidUtf8 {
            path: self.path.clone(),
            line: self.line,
            column: offset + e.valid_up_to() + 1,
        })?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| json_error(e, &self.path, self.line, content, offset))
    }
}

impl<R, T> fmt::Debug for JsonlReader<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .field("skip_invalid", &self.skip_invalid)
            .field("error_count", &self.error_count)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead, T: DeserializeOwned> Iterator for JsonlReader<R, T> {
    type Item = Result<T, JsonlError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_numbered()
            .map(|item| item.map(|(_, record)| record))
    }
}

impl<R: BufRead, T: DeserializeOwned> FusedIterator for JsonlReader<R, T> {}

/// Records with their 1-based line numbers; see [`JsonlReader::numbered`].
pub struct Numbered<'a, R, T> {
    reader: &'a mut JsonlReader<R, T>,
}

impl<R: BufRead, T: DeserializeOwned> Iterator for Numbered<'_, R, T> {
    type Item = Result<(usize, T), JsonlError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next_numbered()
    }
}

impl<R: BufRead, T: DeserializeOwned> FusedIterator for Numbered<'_, R, T> {}

/// Reads a whole JSONL file into memory, stopping at the first error.
///
/// # Errors
/// The first [`JsonlError`] met.
pub fn read_jsonl<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>, JsonlError> {
    JsonlReader::open(path)?.collect()
}

/// Turns a `serde_json` error on `line` (the bytes after any BOM) into a [`JsonlError`].
fn json_error(
    err: serde_json::Error,
    path: &Path,
    line: usize,
    content: &[u8],
    offset: usize,
) -> JsonlError {
    let message = bare_message(&err);
    let path = path.to_owned();
    let column = err.column() + offset;
    match err.classify() {
        Category::Data => {
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'));
            match missing {
                Some(field) => JsonlError::MissingField {
                    path,
                    line,
                    field: field.to_owned(),
                },
                None => JsonlError::InvalidField {
                    path,
                    line,
                    column,
                    field: field_at(content, err.column()),
                    message,
                },
            }
        }
        Category::Io | Category::Syntax | Category::Eof => JsonlError::Json {
            path,
            line,
            column,
            message,
        },
    }
}

/// `serde_json`'s message without the " at line 1 column 7" it appends.
fn bare_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match full.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => full,
    }
}

/// The top-level key whose member contains byte `column` (1-based, as `serde_json` reports it)
/// of a JSON object line: the last key that starts before it. `serde_json` names no field in
/// type errors, and a second, position-tracking parse only runs on the error path.
fn field_at(line: &[u8], column: usize) -> Option<String> {
    let mut depth = 0usize;
    let mut object = false;
    let mut expect_key = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0;
    let mut key: Option<&[u8]> = None;
    for (i, &b) in line.iter().enumerate().take(column) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if object && depth == 1 && expect_key {
                    key = Some(&line[string_start..=i]);
                    expect_key = false;
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    object = b == b'{';
                    expect_key = object;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = object,
            _ => {}
        }
    }
    key.and_then(|raw| serde_json::from_slice(raw).ok())
}

// ---------------------------------------------------------------------------------------------
// Validation

/// A problem an SFT row can have. Each is counted once per row, however many labels show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Issue {
    /// The text is empty or only whitespace.
    EmptyText,
    /// The row has no labels (a legitimate negative example, or a lost annotation).
    NoLabels,
    /// A label is empty or only whitespace.
    EmptyLabel,
    /// A (non-empty) label is not an exact substring of the text. Gold labels are dictionary
    /// forms, so a text that uses an alias (`임신부` for `임산부`) shows this too.
    LabelNotInText,
    /// The same label appears twice in the row.
    DuplicateLabel,
    /// An earlier kept row has the same text and the same labels (in any order).
    DuplicateExample,
    /// An earlier kept row has the same text but different labels.
    DuplicateText,
    /// The text has more characters than [`ValidationConfig::max_text_chars`].
    TextTooLong,
    /// The row has more labels than [`ValidationConfig::max_labels`].
    TooManyLabels,
}

const ISSUE_COUNT: usize = 9;

impl Issue {
    /// Every issue, in report order.
    pub const ALL: [Issue; ISSUE_COUNT] = [
        Issue::EmptyText,
        Issue::NoLabels,
        Issue::EmptyLabel,
        Issue::LabelNotInText,
        Issue::DuplicateLabel,
        Issue::DuplicateExample,
        Issue::DuplicateText,
        Issue::TextTooLong,
        Issue::TooManyLabels,
    ];

    /// The snake_case name used in reports (`label_not_in_text`).
    pub fn name(self) -> &'static str {
        match self {
            Issue::EmptyText => "empty_text",
            Issue::NoLabels => "no_labels",
            Issue::EmptyLabel => "empty_label",
            Issue::LabelNotInText => "label_not_in_text",
            Issue::DuplicateLabel => "duplicate_label",
            Issue::DuplicateExample => "duplicate_example",
            Issue::DuplicateText => "duplicate_text",
            Issue::TextTooLong => "text_too_long",
            Issue::TooManyLabels => "too_many_labels",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do with a row that has an issue. A row is dropped when any of its issues says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Leave the row out of the output.
    Drop,
    /// Keep the row; the issue is only reported.
    Keep,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Drop => "drop",
            Policy::Keep => "keep",
        }
    }
}

/// Limits and policies for [`validate_sft`].
///
/// Length outliers use fixed limits rather than mean + k·std: validation is one streaming pass,
/// and a fixed limit gives the same verdict for a row whatever else is in the file. The report's
/// [`LengthStats`] (mean, std, max) are there to choose the limits.
///
/// Defaults: empty texts, empty labels and exact duplicates are dropped; everything else is
/// kept and reported. Texts over 4096 characters and rows over 64 labels are flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationConfig {
    policies: [Policy; ISSUE_COUNT],
    max_text_chars: Option<usize>,
    max_labels: Option<usize>,
    lines_kept: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        let mut config = ValidationConfig {
            policies: [Policy::Keep; ISSUE_COUNT],
            max_text_chars: Some(4096),
            max_labels: Some(64),
            lines_kept: 5,
        };
        for issue in [Issue::EmptyText, Issue::EmptyLabel, Issue::DuplicateExample] {
            config.policies[issue.index()] = Policy::Drop;
        }
        config
    }
}

impl ValidationConfig {
    /// The default limits with every issue dropped.
    pub fn drop_all() -> Self {
        ValidationConfig {
            policies: [Policy::Drop; ISSUE_COUNT],
            ..Self::default()
        }
    }

    /// The default limits with every issue kept (report only).
    pub fn keep_all() -> Self {
        ValidationConfig {
            policies: [Policy::Keep; ISSUE_COUNT],
            ..Self::default()
        }
    }

    /// Sets the policy for one issue.
    #[must_use]
    pub fn policy(mut self, issue: Issue, policy: Policy) -> Self {
        self.policies[issue.index()] = policy;
        self
    }

    /// Flags texts with more than `n` characters (`None`: no limit).
    #[must_use]
    pub fn max_text_chars(mut self, n: Option<usize>) -> Self {
        self.max_text_chars = n;
        self
    }

    /// Flags rows with more than `n` labels (`None`: no limit).
    #[must_use]
    pub fn max_labels(mut self, n: Option<usize>) -> Self {
        self.max_labels = n;
        self
    }

    /// How many offending line numbers the report keeps per issue.
    #[must_use]
    pub fn lines_kept(mut self, n: usize) -> Self {
        self.lines_kept = n;
        self
    }

    /// The policy for an issue.
    pub fn policy_for(&self, issue: Issue) -> Policy {
        self.policies[issue.index()]
    }
}

/// One issue's line in a [`ValidationReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCount {
    /// The issue.
    pub issue: Issue,
    /// The policy it was checked under.
    pub policy: Policy,
    /// Rows that have it.
    pub rows: usize,
    /// The first few of those rows' line numbers (record numbers for in-memory input).
    pub first_lines: Vec<usize>,
}

/// Mean, standard deviation (population) and maximum of a length.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LengthStats {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Maximum.
    pub max: usize,
}

/// What [`validate_sft`] found. `Display` prints a table; it serializes to JSON with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Rows checked.
    pub rows_read: usize,
    /// Rows kept.
    pub rows_kept: usize,
    /// Rows dropped.
    pub rows_dropped: usize,
    /// Lines the reader skipped as unreadable (only [`validate_sft_stream`] with a skipping
    /// reader); they are not among `rows_read`.
    pub rows_invalid: usize,
    /// One entry per [`Issue`], in [`Issue::ALL`] order.
    pub issues: Vec<IssueCount>,
    /// Text length in characters, over all rows read.
    pub text_chars: LengthStats,
    /// Labels per row, over all rows read.
    pub labels_per_row: LengthStats,
}

impl ValidationReport {
    /// Rows that have `issue`.
    pub fn count(&self, issue: Issue) -> usize {
        self.entry(issue).map_or(0, |entry| entry.rows)
    }

    /// The first line numbers of rows that have `issue`.
    pub fn first_lines(&self, issue: Issue) -> &[usize] {
        self.entry(issue).map_or(&[], |entry| &entry.first_lines)
    }

    fn entry(&self, issue: Issue) -> Option<&IssueCount> {
        self.issues.iter().find(|entry| entry.issue == issue)
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rows read {}, kept {}, dropped {}, unreadable {}",
            self.rows_read, self.rows_kept, self.rows_dropped, self.rows_invalid
        )?;
        writeln!(
            f,
            "{:<20} {:<6} {:>8}  first lines",
            "issue", "policy", "rows"
        )?;
        for entry in &self.issues {
            let lines: Vec<String> = entry.first_lines.iter().map(usize::to_string).collect();
            writeln!(
                f,
                "{:<20} {:<6} {:>8}  {}",
                entry.issue.name(),
                entry.policy.name(),
                entry.rows,
                lines.join(", ")
            )?;
        }
        for (name, stats) in [
            ("text chars", self.text_chars),
            ("labels per row", self.labels_per_row),
        ] {
            writeln!(
                f,
                "{name:<20} mean {:.1}, std {:.1}, max {}",
                stats.mean, stats.std, stats.max
            )?;
        }
        Ok(())
    }
}

/// Welford's running mean and variance.
#[derive(Debug, Clone, Copy, Default)]
struct RunningStats {
    n: u64,
    mean: f64,
    m2: f64,
    max: usize,
}

impl RunningStats {
    fn push(&mut self, x: usize) {
        self.n += 1;
        let value = x as f64;
        let delta = value - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (value - self.mean);
        self.max = self.max.max(x);
    }

    fn stats(&self) -> LengthStats {
        let variance = if self.n == 0 {
            0.0
        } else {
            self.m2 / self.n as f64
        };
        LengthStats {
            mean: self.mean,
            std: variance.sqrt(),
            max: self.max,
        }
    }
}

/// A one-pass SFT checker: feed it rows with [`check`](Self::check), then take the report.
///
/// Duplicates are judged against rows kept so far, so a row dropped for another issue does
/// not make a later, corrected copy a duplicate. Rows are remembered by 128-bit hashes (about 40
/// bytes a row), not by their text.
#[derive(Debug, Clone)]
pub struct SftValidator {
    config: ValidationConfig,
    texts: KeySet,
    examples: KeySet,
    rows: [usize; ISSUE_COUNT],
    lines: [Vec<usize>; ISSUE_COUNT],
    rows_read: usize,
    rows_kept: usize,
    text_chars: RunningStats,
    labels_per_row: RunningStats,
}

impl SftValidator {
    /// A validator with no rows seen.
    pub fn new(config: &ValidationConfig) -> Self {
        SftValidator {
            config: config.clone(),
            texts: KeySet::default(),
            examples: KeySet::default(),
            rows: [0; ISSUE_COUNT],
            lines: Default::default(),
            rows_read: 0,
            rows_kept: 0,
            text_chars: RunningStats::default(),
            labels_per_row: RunningStats::default(),
        }
    }

    /// Checks one row found at `line`; `true` when it is kept.
    pub fn check(&mut self, line: usize, record: &SftRecord) -> bool {
        let text = record.text.as_str();
        let chars = text.chars().count();
        let mut labels: Vec<&str> = record.labels.iter().map(String::as_str).collect();
        labels.sort_unstable();

        let mut found = [false; ISSUE_COUNT];
        found[Issue::EmptyText.index()] = text.trim().is_empty();
        found[Issue::NoLabels.index()] = labels.is_empty();
        found[Issue::EmptyLabel.index()] = labels.iter().any(|l| l.trim().is_empty());
        found[Issue::LabelNotInText.index()] = labels
            .iter()
            .any(|l| !l.trim().is_empty() && !text.contains(l));
        found[Issue::DuplicateLabel.index()] = labels.windows(2).any(|w| w[0] == w[1]);
        found[Issue::TextTooLong.index()] = self.config.max_text_chars.is_some_and(|n| chars > n);
        found[Issue::TooManyLabels.index()] =
            self.config.max_labels.is_some_and(|n| labels.len() > n);

        let (text_key, example_key) = row_keys(text, &labels);
        if self.examples.contains(&example_key) {
            found[Issue::DuplicateExample.index()] = true;
        } else if self.texts.contains(&text_key) {
            found[Issue::DuplicateText.index()] = true;
        }

        let mut keep = true;
        for issue in Issue::ALL {
            let i = issue.index();
            if found[i] {
                self.rows[i] += 1;
                if self.lines[i].len() < self.config.lines_kept {
                    self.lines[i].push(line);
                }
                keep &= self.config.policies[i] == Policy::Keep;
            }
        }

        self.rows_read += 1;
        self.text_chars.push(chars);
        self.labels_per_row.push(labels.len());
        if keep {
            self.rows_kept += 1;
            self.texts.insert(text_key);
            self.examples.insert(example_key);
        }
        keep
    }

    /// The report so far.
    pub fn report(&self) -> ValidationReport {
        let issues = Issue::ALL
            .iter()
            .map(|&issue| IssueCount {
                issue,
                policy: self.config.policy_for(issue),
                rows: self.rows[issue.index()],
                first_lines: self.lines[issue.index()].clone(),
            })
            .collect();
        ValidationReport {
            rows_read: self.rows_read,
            rows_kept: self.rows_kept,
            rows_dropped: self.rows_read - self.rows_kept,
            rows_invalid: 0,
            issues,
            text_chars: self.text_chars.stats(),
            labels_per_row: self.labels_per_row.stats(),
        }
    }
}

/// 128-bit keys of a row's text and of its text with (sorted) labels: two independently
/// salted SipHash-1-3 values each, so collisions are negligible (≈ n²/2¹²⁹). The text is
/// hashed once per salt; the example key continues from the text's hasher state.
fn row_keys(text: &str, sorted_labels: &[&str]) -> (u128, u128) {
    let mut text_key = 0u128;
    let mut example_key = 0u128;
    for salt in 0..2u8 {
        let mut hasher = DefaultHasher::new();
        hasher.write_u8(salt);
        text.hash(&mut hasher);
        let text_half = hasher.clone().finish();
        sorted_labels.hash(&mut hasher);
        text_key = (text_key << 64) | u128::from(text_half);
        example_key = (example_key << 64) | u128::from(hasher.finish());
    }
    (text_key, example_key)
}

/// The keys are already uniform hashes, so the sets use their low 64 bits as is.
#[derive(Debug, Clone, Copy, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// Checks SFT rows in memory; line numbers in the report are 1-based record numbers.
pub fn validate_sft(
    records: impl IntoIterator<Item = SftRecord>,
    config: &ValidationConfig,
) -> ValidationReport {
    let mut validator = SftValidator::new(config);
    for (i, record) in records.into_iter().enumerate() {
        validator.check(i + 1, &record);
    }
    validator.report()
}

/// Like [`validate_sft`], also returning the kept rows.
pub fn filter_sft(
    records: impl IntoIterator<Item = SftRecord>,
    config: &ValidationConfig,
) -> (Vec<SftRecord>, ValidationReport) {
    let mut validator = SftValidator::new(config);
    let kept = records
        .into_iter()
        .enumerate()
        .filter(|(i, record)| validator.check(i + 1, record))
        .map(|(_, record)| record)
        .collect();
    (kept, validator.report())
}

/// Checks the rows of a reader (with their real line numbers) and writes the kept ones to `out`.
///
/// To filter a file in place or into a new one, pass an [`AtomicJsonlWriter`]'s
/// [`writer`](AtomicJsonlWriter::writer) and commit it afterwards.
///
/// # Errors
/// The reader's first error (a strict reader) or I/O error, or a write error.
pub fn validate_sft_stream<R: BufRead, W: Write>(
    reader: &mut JsonlReader<R, SftRecord>,
    config: &ValidationConfig,
    out: &mut JsonlWriter<W>,
) -> Result<ValidationReport, JsonlError> {
    let mut validator = SftValidator::new(config);
    for item in reader.numbered() {
        let (line, record) = item?;
        if validator.check(line, &record) {
            out.push(&record)?;
        }
    }
    out.flush()?;
    let mut report = validator.report();
    report.rows_invalid = reader.error_count();
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes records as JSONL to any writer. Each record is serialized whole before any byte of it
/// is written, so a record that fails to serialize leaves no partial line.
pub struct JsonlWriter<W: Write> {
    inner: W,
    path: PathBuf,
    line: Vec<u8>,
    count: usize,
}

impl<W: Write> JsonlWriter<W> {
    /// Writes to `inner`; `name` stands for the file in errors.
    pub fn new(inner: W, name: impl Into<PathBuf>) -> Self {
        JsonlWriter {
            inner,
            path: name.into(),
            line: Vec::new(),
            count: 0,
        }
    }

    /// Appends one record as a line.
    ///
    /// # Errors
    /// [`JsonlError::Serialize`] (nothing written) or [`JsonlError::Io`].
    pub fn push<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), JsonlError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(|source| JsonlError::Serialize {
            path: self.path.clone(),
            line: self.count + 1,
            source,
        })?;
        self.line.push(b'\n');
        self.inner
            .write_all(&self.line)
            .map_err(|e| JsonlError::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    /// [`JsonlError::Io`].
    pub fn flush(&mut self) -> Result<(), JsonlError> {
        self.inner
            .flush()
            .map_err(|e| JsonlError::io(&self.path, e))
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// [`JsonlError::Io`].
    pub fn into_inner(mut self) -> Result<W, JsonlError> {
        self.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> fmt::Debug for JsonlWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlWriter")
            .field("path", &self.path)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// A JSONL writer that replaces its target only on [`commit`](Self::commit).
///
/// Records go to a temporary file in the target's directory (`.name.jsonl.XXXXXX.tmp`), so the
/// final rename stays on one file system and is atomic. Dropping the writer without committing
/// deletes the temporary file and leaves the target as it was. An existing target's permissions
/// carry over to the new file.
pub struct AtomicJsonlWriter {
    writer: JsonlWriter<BufWriter<NamedTempFile>>,
}

impl fmt::Debug for AtomicJsonlWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicJsonlWriter")
            .field("target", &self.writer.path)
            .field("temp", &self.writer.inner.get_ref().path())
            .field("count", &self.writer.count)
            .finish()
    }
}

impl AtomicJsonlWriter {
    /// Starts writing a replacement for `path`.
    ///
    /// # Errors
    /// [`JsonlError::Io`] when the temporary file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, JsonlError> {
        let path = path.as_ref();
        let io_err = |e| JsonlError::io(path, e);
        let name = path.file_name().ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            ))
        })?;
        let mut builder = tempfile::Builder::new();
        let prefix = format!(".{}.", name.to_string_lossy());
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            // As `File::create` would: 0o666 narrowed by the umask.
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder.tempfile_in(parent_dir(path)).map_err(io_err)?;
        if let Ok(meta) = std::fs::metadata(path) {
            tmp.as_file()
                .set_permissions(meta.permissions())
                .map_err(io_err)?;
        }
        Ok(AtomicJsonlWriter {
            writer: JsonlWriter::new(BufWriter::with_capacity(1 << 16, tmp), path),
        })
    }

    /// Appends one record.
    ///
    /// # Errors
    /// [`JsonlError::Serialize`] (nothing written; the writer stays usable) or
    /// [`JsonlError::Io`].
    pub fn push<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), JsonlError> {
        self.writer.push(record)
    }

    /// Records written so far.
    pub fn count(&self) -> usize {
        self.writer.count()
    }

    /// The underlying [`JsonlWriter`], for functions that take one ([`validate_sft_stream`]).
    pub fn writer(&mut self) -> &mut JsonlWriter<impl Write + use<>> {
        &mut self.writer
    }

    /// Flushes, fsyncs and renames the file over the target; returns the records written.
    ///
    /// # Errors
    /// [`JsonlError::Io`]; the target is then untouched and the temporary file removed.
    pub fn commit(self) -> Result<usize, JsonlError> {
        let JsonlWriter {
            inner, path, count, ..
        } = self.writer;
        let io_err = |e| JsonlError::io(&path, e);
        let tmp = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&path).map_err(|e| io_err(e.error))?;
        // Make the rename itself durable. Some file systems cannot fsync a directory; the new
        // file is in place either way, so that is not reported.
        #[cfg(unix)]
        if let Ok(dir) = File::open(parent_dir(&path)) {
            let _ = dir.sync_all();
        }
        Ok(count)
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes `records` to `path` atomically (see [`AtomicJsonlWriter`]); returns how many.
///
/// # Errors
/// [`JsonlError::Serialize`] or [`JsonlError::Io`]; the target is then untouched.
pub fn write_jsonl_atomic<T: Serialize>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = T>,
) -> Result<usize, JsonlError> {
    try_write_jsonl_atomic(path, records.into_iter().map(Ok::<T, JsonlError>))
}

/// Like [`write_jsonl_atomic`] for fallible records (a [`JsonlReader`] mapped through a
/// conversion): the first `Err` aborts the write, leaves the target untouched and is returned.
///
/// # Errors
/// The first item error, or a [`JsonlError`] converted into `E`.
pub fn try_write_jsonl_atomic<T, E>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = Result<T, E>>,
) -> Result<usize, E>
where
    T: Serialize,
    E: From<JsonlError>,
{
    let mut writer = AtomicJsonlWriter::create(path)?;
    for record in records {
        writer.push(&record?)?;
    }
    Ok(writer.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_at_finds_the_top_level_key() {
        let line = br#"{"text": "a,\"b\":{", "labels": ["x", 3], "n": 1}"#;
        let col = line.iter().position(|&b| b == b'3').unwrap_or(0) + 1;
        assert_eq!(field_at(line, col).as_deref(), Some("labels"));
        assert_eq!(field_at(line, 12).as_deref(), Some("text"));
        assert_eq!(field_at(b"[1, \"a\", 2]", 9), None);
        assert_eq!(
            field_at(br#"{"\uc9c4\ud1b5": 1}"#, 19).as_deref(),
            Some("진통")
        );
    }

    #[test]
    fn running_stats_match_two_pass() {
        let xs = [3usize, 7, 7, 19, 0, 42];
        let mut running = RunningStats::default();
        xs.iter().for_each(|&x| running.push(x));
        let stats = running.stats();
        let mean = xs.iter().sum::<usize>() as f64 / xs.len() as f64;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!((stats.mean - mean).abs() < 1e-12);
        assert!((stats.std - var.sqrt()).abs() < 1e-12);
        assert_eq!(stats.max, 42);
    }

    #[test]
    fn row_keys_separate_label_boundaries() {
        let (text_a, a) = row_keys("abc", &["ab", "c"]);
        let (text_b, b) = row_keys("abc", &["a", "bc"]);
        assert_eq!(text_a, text_b);
        assert_ne!(a, b);
        assert_ne!(a, text_a);
        assert_eq!(row_keys("abc", &["ab", "c"]), (text_a, a));
        assert_ne!(row_keys("abd", &["ab", "c"]).0, text_a);
        // Both halves are filled.
        assert_ne!(a >> 64, 0);
        assert_ne!(a as u64, 0);
    }
}
