//! SentencePiece-style BPE and Unigram training on the `tokenizers` crate.
//!
//! kwx streams the corpus and counts words itself (in parallel, with progress), applies
//! SentencePiece's character-coverage rule, reserves the pieces SentencePiece reserves (control
//! symbols, the 256 byte pieces, user-defined symbols) and hands the counts to `tokenizers`'
//! trainers. The result is an ordinary `tokenizer.json`.
//!
//! Vocabulary layout: control symbols (`<pad>`, `<eos>`, `<bos>`, `<unk>` by default, Gemma's
//! order), then `<0x00>`…`<0xFF>`, then the user-defined symbols, then the learned pieces.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ahash::AHashMap;
use compact_str::CompactString;
use rayon::prelude::*;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFKC;
use tokenizers::{AddedToken, DecoderWrapper, Model, ModelWrapper, Tokenizer};

use crate::error::{Error, Result};
use crate::pipeline::{Normalization, Pipeline, SPACE_MARKER, metaspace};

/// The subword model to learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Byte-pair encoding (merges), with byte fallback.
    Bpe,
    /// Unigram language model (SentencePiece's default), with byte fallback.
    Unigram,
}

impl ModelKind {
    /// `bpe` or `unigram`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bpe => "bpe",
            Self::Unigram => "unigram",
        }
    }
}

impl std::str::FromStr for ModelKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bpe" => Ok(Self::Bpe),
            "unigram" => Ok(Self::Unigram),
            other => Err(Error::Config {
                field: "model",
                message: format!("{other:?} is not a model; use `bpe` or `unigram`"),
            }),
        }
    }
}

/// What to train. Build with [`TrainerConfig::new`]; the fields are SentencePiece's settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainerConfig {
    /// BPE or Unigram.
    pub model: ModelKind,
    /// Final vocabulary size, reserved pieces included.
    pub vocab_size: usize,
    /// Identity or NFKC, chosen explicitly.
    pub normalization: Normalization,
    /// Symbols that always come out as one token, even inside words (파스형 → 파스 + 형).
    pub user_defined_symbols: Vec<String>,
    /// Special (control) tokens, first in the vocabulary. Must contain `unk_token`.
    pub control_symbols: Vec<String>,
    /// The unknown token (never produced with byte fallback, but models need one).
    pub unk_token: String,
    /// BPE: a pair must occur this often to be merged. Unigram: rarer words are left out.
    pub min_frequency: u64,
    /// Share of character occurrences the alphabet must cover; rarer characters are left to
    /// byte fallback (SentencePiece: 0.9995 for CJK, 1.0 for small alphabets).
    pub character_coverage: f64,
    /// Prepend `▁` to the first word (SentencePiece's `add_dummy_prefix`). Off by default, as in
    /// Gemma: with it on, a line's leading space cannot be told from the added one.
    pub add_dummy_prefix: bool,
    /// Pieces never cross a `▁` (SentencePiece's `split_by_whitespace`).
    pub split_by_whitespace: bool,
    /// Unigram: longest piece in characters.
    pub max_piece_length: usize,
}

impl TrainerConfig {
    /// SentencePiece's defaults for the rest: Gemma's control symbols, min frequency 2,
    /// coverage 0.9995, no dummy prefix, split by whitespace, pieces up to 16 characters.
    pub fn new(model: ModelKind, vocab_size: usize, normalization: Normalization) -> Self {
        Self {
            model,
            vocab_size,
            normalization,
            user_defined_symbols: Vec::new(),
            control_symbols: ["<pad>", "<eos>", "<bos>", "<unk>"]
                .map(String::from)
                .to_vec(),
            unk_token: "<unk>".into(),
            min_frequency: 2,
            character_coverage: 0.9995,
            add_dummy_prefix: false,
            split_by_whitespace: true,
            max_piece_length: 16,
        }
    }

    /// Sets the user-defined symbols.
    pub fn with_user_defined_symbols<I, S>(mut self, symbols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.user_defined_symbols = symbols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the control symbols.
    pub fn with_control_symbols<I, S>(mut self, symbols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.control_symbols = symbols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the minimum frequency.
    pub fn with_min_frequency(mut self, min_frequency: u64) -> Self {
        self.min_frequency = min_frequency;
        self
    }

    /// Sets the character coverage.
    pub fn with_character_coverage(mut self, coverage: f64) -> Self {
        self.character_coverage = coverage;
        self
    }

    /// Sets `add_dummy_prefix`.
    pub fn with_dummy_prefix(mut self, on: bool) -> Self {
        self.add_dummy_prefix = on;
        self
    }

    /// Checks every setting and symbol; the error names the field or the symbol.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 {
            return Err(Error::Config {
                field: "vocab_size",
                message: "must be positive".into(),
            });
        }
        if !(self.character_coverage > 0.0 && self.character_coverage <= 1.0) {
            return Err(Error::Config {
                field: "character_coverage",
                message: format!("{} is outside (0, 1]", self.character_coverage),
            });
        }
        if self.max_piece_length == 0 {
            return Err(Error::Config {
                field: "max_piece_length",
                message: "must be positive".into(),
            });
        }
        if !self.control_symbols.contains(&self.unk_token) {
            return Err(Error::Config {
                field: "unk_token",
                message: format!(
                    "{:?} is not among the control symbols {:?}",
                    self.unk_token, self.control_symbols
                ),
            });
        }
        let mut seen: HashMap<String, (&'static str, usize)> = HashMap::new();
        let lists = [
            ("control symbol", &self.control_symbols),
            ("user-defined symbol", &self.user_defined_symbols),
        ];
        for (kind, list) in lists {
            for (index, symbol) in list.iter().enumerate() {
                check_symbol(kind, index, symbol)?;
                let key = if kind == "user-defined symbol" {
                    self.normalization.apply(symbol)
                } else {
                    symbol.clone()
                };
                if let Some((other_kind, other)) = seen.insert(key.clone(), (kind, index)) {
                    return Err(Error::Symbol {
                        kind,
                        symbol: symbol.clone(),
                        index,
                        message: format!(
                            "duplicate of {other_kind} #{other}{}",
                            if &key == symbol {
                                String::new()
                            } else {
                                format!(" (both are {key:?} after normalization)")
                            }
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The user-defined symbols as the tokenizer will match them (normalized under NFKC).
    fn symbols(&self) -> Vec<String> {
        self.user_defined_symbols
            .iter()
            .map(|s| self.normalization.apply(s))
            .collect()
    }
}

pub(crate) fn check_symbol(kind: &'static str, index: usize, symbol: &str) -> Result<()> {
    let fail = |message: &str| {
        Err(Error::Symbol {
            kind,
            symbol: symbol.to_owned(),
            index,
            message: message.to_owned(),
        })
    };
    if symbol.is_empty() {
        return fail("is empty");
    }
    if symbol.chars().all(char::is_whitespace) {
        return fail("is whitespace; whitespace is handled by the ▁ marker");
    }
    if symbol.contains(SPACE_MARKER) {
        return fail("contains the whitespace marker ▁ (U+2581)");
    }
    if byte_piece_value(symbol).is_some() {
        return fail("has the form of a byte piece <0xNN>, which is reserved");
    }
    Ok(())
}

fn byte_piece_value(s: &str) -> Option<u8> {
    let hex = s.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2)
        .then(|| u8::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The characters byte pieces are written with.
const BYTE_PIECE_CHARS: &str = "<>x0123456789ABCDEF";

/// The 256 byte pieces, `<0x00>` … `<0xFF>`.
pub fn byte_pieces() -> Vec<String> {
    (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect()
}

/// What the trainer reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Counting words: bytes and lines read so far; `total_bytes` when reading files.
    Reading {
        /// Bytes read.
        bytes: u64,
        /// All bytes to read, when known.
        total_bytes: Option<u64>,
        /// Lines read.
        lines: u64,
    },
    /// Counting finished; learning starts.
    Training {
        /// Distinct words counted.
        distinct_words: usize,
        /// Characters kept by the coverage rule.
        alphabet: usize,
    },
    /// The tokenizer is assembled.
    Finished {
        /// Its vocabulary size.
        vocab_size: usize,
    },
}

/// What a training run saw and produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainStats {
    /// Lines read (empty ones included).
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Distinct words counted.
    pub distinct_words: usize,
    /// Characters in the alphabet (kept by the coverage rule).
    pub alphabet: usize,
    /// Distinct characters left to byte fallback.
    pub dropped_characters: usize,
    /// The trained vocabulary size (Unigram may stop short of the target on small corpora).
    pub vocab_size: usize,
}

/// A trained tokenizer and what went into it.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The tokenizer; save it with [`crate::save_tokenizer`].
    pub tokenizer: Tokenizer,
    /// Counts from the run.
    pub stats: TrainStats,
}

/// Word and character counts of a corpus.
#[derive(Debug, Default)]
struct Counts {
    words: AHashMap<CompactString, u64>,
    lines: u64,
    bytes: u64,
}

impl Counts {
    fn merge(&mut self, other: AHashMap<CompactString, u64>) {
        if self.words.is_empty() {
            self.words = other;
            return;
        }
        for (word, n) in other {
            *self.words.entry(word).or_default() += n;
        }
    }
}

/// Lines per parallel batch while counting.
const BATCH_LINES: usize = 8192;
/// Bytes read from a file at a time.
const BLOCK_BYTES: usize = 4 << 20;

/// Trains tokenizers from streamed text.
#[derive(Debug, Clone)]
pub struct Trainer {
    config: TrainerConfig,
    pipeline: Pipeline,
}

impl Trainer {
    /// Validates `config` and prepares the text pipeline.
    pub fn new(config: TrainerConfig) -> Result<Self> {
        config.validate()?;
        let pipeline = Pipeline::new(
            config.normalization,
            &config.symbols(),
            config.add_dummy_prefix,
            config.split_by_whitespace,
        )?;
        Ok(Self { config, pipeline })
    }

    /// The settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Trains on UTF-8 text files, streamed line by line; errors name the file and line.
    pub fn train_files<P: AsRef<Path>>(
        &self,
        paths: &[P],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Trained> {
        let total: u64 = paths
            .iter()
            .map(|p| {
                std::fs::metadata(p.as_ref())
                    .map(|m| m.len())
                    .map_err(|e| Error::io(p.as_ref(), e))
            })
            .sum::<Result<u64>>()?;
        let mut counts = Counts::default();
        let mut block = vec![0u8; BLOCK_BYTES];
        let mut pending: Vec<u8> = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut line_no = 0u64;
            pending.clear();
            loop {
                let n = file.read(&mut block).map_err(|e| Error::io(path, e))?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&block[..n]);
                // Whole lines now, the unfinished last one with the next block.
                if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
                    self.count_block(&mut counts, &pending[..=last], path, &mut line_no)?;
                    pending.drain(..=last);
                    progress(&Progress::Reading {
                        bytes: counts.bytes,
                        total_bytes: Some(total),
                        lines: counts.lines,
                    });
                }
            }
            if !pending.is_empty() {
                self.count_block(&mut counts, &pending, path, &mut line_no)?;
            }
        }
        progress(&Progress::Reading {
            bytes: counts.bytes,
            total_bytes: Some(total),
            lines: counts.lines,
        });
        let what = || {
            let names: Vec<String> = paths
                .iter()
                .map(|p| p.as_ref().display().to_string())
                .collect();
            format!("{} line(s) in {}", counts.lines, names.join(", "))
        };
        let what = what();
        self.finish(counts, what, progress)
    }

    /// Trains on lines from an iterator (one text per item), streamed in batches.
    pub fn train_iter<I, S>(&self, lines: I, progress: &mut dyn FnMut(&Progress)) -> Result<Trained>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut counts = Counts::default();
        let mut batch = Vec::with_capacity(BATCH_LINES);
        for line in lines {
            let line = line.as_ref();
            counts.bytes += line.len() as u64;
            batch.push(line.to_owned());
            if batch.len() == BATCH_LINES {
                self.count_batch(&mut counts, &mut batch)?;
                progress(&Progress::Reading {
                    bytes: counts.bytes,
                    total_bytes: None,
                    lines: counts.lines,
                });
            }
        }
        self.count_batch(&mut counts, &mut batch)?;
        progress(&Progress::Reading {
            bytes: counts.bytes,
            total_bytes: None,
            lines: counts.lines,
        });
        let what = format!("{} line(s) from an iterator", counts.lines);
        self.finish(counts, what, progress)
    }

    /// Counts the lines of `bytes` (whole lines of `path`, after `line_no` lines), checking
    /// UTF-8 and naming the line that is not.
    fn count_block(
        &self,
        counts: &mut Counts,
        bytes: &[u8],
        path: &Path,
        line_no: &mut u64,
    ) -> Result<()> {
        let text = std::str::from_utf8(bytes).map_err(|source| {
            let before = &bytes[..source.valid_up_to()];
            Error::NotUtf8 {
                path: PathBuf::from(path),
                line: *line_no + 1 + before.iter().filter(|&&b| b == b'\n').count() as u64,
                source,
            }
        })?;
        counts.bytes += bytes.len() as u64;
        let lines: Vec<&str> = text.split_terminator('\n').map(trim_newline).collect();
        *line_no += lines.len() as u64;
        for chunk in lines.chunks(BATCH_LINES) {
            self.count_lines(counts, chunk)?;
        }
        Ok(())
    }

    fn count_batch(&self, counts: &mut Counts, batch: &mut Vec<String>) -> Result<()> {
        let lines: Vec<&str> = batch.iter().map(String::as_str).collect();
        self.count_lines(counts, &lines)?;
        batch.clear();
        Ok(())
    }

    fn count_lines(&self, counts: &mut Counts, batch: &[&str]) -> Result<()> {
        counts.lines += batch.len() as u64;
        let local = batch
            .par_iter()
            .try_fold(
                || (AHashMap::<CompactString, u64>::new(), String::new()),
                |(mut map, mut buf), line| {
                    self.pipeline
                        .for_each_word(line, &mut buf, |word| match map.get_mut(word) {
                            Some(n) => *n += 1,
                            None => {
                                map.insert(CompactString::from(word), 1);
                            }
                        });
                    Ok::<_, Error>((map, buf))
                },
            )
            .map(|r| r.map(|(map, _)| map))
            .try_reduce(AHashMap::new, |mut a, b| {
                let (big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                a = big;
                for (k, v) in small {
                    *a.entry(k).or_default() += v;
                }
                Ok(a)
            })?;
        counts.merge(local);
        Ok(())
    }

    fn finish(
        &self,
        counts: Counts,
        what: String,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Trained> {
        if !counts
            .words
            .keys()
            .any(|w| w.chars().any(|c| c != SPACE_MARKER))
        {
            return Err(Error::EmptyCorpus { what });
        }
        let cfg = &self.config;
        let (alphabet, dropped) = coverage_alphabet(&counts.words, cfg.character_coverage);
        let reserved = self.reserved();
        // Unigram's segmenter sees every vocabulary entry, byte pieces included: the characters
        // a literal "<0x41>" is written with must be pieces of their own, or the text would
        // come out as the byte piece (and decode to "A").
        let byte_piece_chars: Vec<char> = match cfg.model {
            ModelKind::Unigram => BYTE_PIECE_CHARS
                .chars()
                .filter(|c| alphabet.binary_search(c).is_err())
                .collect(),
            ModelKind::Bpe => Vec::new(),
        };
        let needed = reserved.len() + alphabet.len() + byte_piece_chars.len();
        if cfg.vocab_size < needed {
            return Err(Error::VocabTooSmall {
                vocab_size: cfg.vocab_size,
                reserved: reserved.len(),
                alphabet: alphabet.len() + byte_piece_chars.len(),
                coverage: cfg.character_coverage,
                needed,
            });
        }
        progress(&Progress::Training {
            distinct_words: counts.words.len(),
            alphabet: alphabet.len(),
        });
        let reserved_tokens: Vec<AddedToken> = reserved
            .iter()
            .map(|s| AddedToken::from(s.clone(), true))
            .collect();
        let model = match cfg.model {
            ModelKind::Bpe => {
                let trainer = BpeTrainer::builder()
                    .vocab_size(cfg.vocab_size)
                    .min_frequency(cfg.min_frequency)
                    .special_tokens(reserved_tokens)
                    .initial_alphabet(alphabet.iter().copied().collect())
                    .limit_alphabet(alphabet.len())
                    .show_progress(false)
                    .build();
                let mut model = BPE::builder()
                    .unk_token(cfg.unk_token.clone())
                    .byte_fallback(true)
                    .build()
                    .map_err(|e| Error::tokenizers("creating the BPE model", e))?;
                on_pool_worker(|| trainer.do_train(&counts.words, &mut model))
                    .map_err(|e| Error::tokenizers("training BPE", e))?;
                ModelWrapper::BPE(model)
            }
            ModelKind::Unigram => {
                let sentences = unigram_sentences(&counts.words, &alphabet, cfg.min_frequency)?;
                if sentences.is_empty() {
                    return Err(Error::EmptyCorpus {
                        what: format!(
                            "{what}: no word occurs min_frequency = {} times",
                            cfg.min_frequency
                        ),
                    });
                }
                let trainer = UnigramTrainer::builder()
                    .vocab_size(u32::try_from(cfg.vocab_size).map_err(|_| Error::Config {
                        field: "vocab_size",
                        message: format!("{} does not fit in u32", cfg.vocab_size),
                    })?)
                    .special_tokens(reserved_tokens)
                    .unk_token(Some(cfg.unk_token.clone()))
                    .max_piece_length(cfg.max_piece_length)
                    // Every covered character is a piece, even if only rare words held it.
                    .initial_alphabet(alphabet.iter().chain(&byte_piece_chars).copied().collect())
                    .show_progress(false)
                    .build()
                    .map_err(|e| Error::tokenizers("configuring the Unigram trainer", e))?;
                let mut model = Unigram::default();
                on_pool_worker(|| trainer.do_train(sentences, &mut model))
                    .map_err(|e| Error::tokenizers("training Unigram", e))?;
                ModelWrapper::Unigram(self.finish_unigram(&model, &reserved)?)
            }
        };
        let tokenizer = self.assemble(model)?;
        let vocab_size = tokenizer.get_vocab_size(true);
        progress(&Progress::Finished { vocab_size });
        Ok(Trained {
            tokenizer,
            stats: TrainStats {
                lines: counts.lines,
                bytes: counts.bytes,
                distinct_words: counts.words.len(),
                alphabet: alphabet.len(),
                dropped_characters: dropped,
                vocab_size,
            },
        })
    }

    /// Control symbols, byte pieces, user-defined symbols: the first ids, in this order.
    fn reserved(&self) -> Vec<String> {
        let mut out = self.config.control_symbols.clone();
        out.extend(byte_pieces());
        out.extend(self.config.symbols());
        out
    }

    /// Rebuilds the trained Unigram with byte fallback, reserved pieces first and never chosen by
    /// the segmenter (score far below every learned piece), and no learned duplicate of them.
    fn finish_unigram(&self, model: &Unigram, reserved: &[String]) -> Result<Unigram> {
        let learned: Vec<(String, f64)> = model
            .iter()
            .filter(|(piece, _)| !reserved.contains(piece))
            .map(|(piece, score)| (piece.clone(), *score))
            .collect();
        // Below any path of six learned pieces, so a literal "<0x41>" is never read as one.
        let floor = 10.0 * learned.iter().map(|(_, s)| *s).fold(0.0f64, f64::min) - 1000.0;
        let unk_id = self
            .config
            .control_symbols
            .iter()
            .position(|s| *s == self.config.unk_token);
        let vocab: Vec<(String, f64)> = reserved
            .iter()
            .map(|s| (s.clone(), floor))
            .chain(learned)
            .collect();
        Unigram::from(vocab, unk_id, true)
            .map_err(|e| Error::tokenizers("assembling the Unigram model", e))
    }

    fn assemble(&self, model: ModelWrapper) -> Result<Tokenizer> {
        let cfg = &self.config;
        let mut tokenizer = Tokenizer::new(model);
        if cfg.normalization == Normalization::Nfkc {
            tokenizer
                .with_normalizer(Some(NFKC))
                .map_err(|e| Error::tokenizers("setting the normalizer", e))?;
        }
        tokenizer.with_pre_tokenizer(Some(metaspace(
            cfg.add_dummy_prefix,
            cfg.split_by_whitespace,
        )));
        let replace = Replace::new(SPACE_MARKER.to_string(), " ")
            .map_err(|e| Error::tokenizers("building the decoder", e))?;
        let mut decoders: Vec<DecoderWrapper> = vec![
            replace.into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ];
        if cfg.add_dummy_prefix {
            decoders.push(Strip::new(' ', 1, 0).into());
        }
        tokenizer.with_decoder(Some(Sequence::new(decoders)));
        let controls: Vec<AddedToken> = cfg
            .control_symbols
            .iter()
            .map(|s| AddedToken::from(s.clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(controls)
            .map_err(|e| Error::tokenizers("adding the control symbols", e))?;
        let symbols: Vec<AddedToken> = cfg
            .symbols()
            .into_iter()
            .map(|s| {
                AddedToken::from(s, false).normalized(cfg.normalization != Normalization::Identity)
            })
            .collect();
        tokenizer
            .add_tokens(symbols)
            .map_err(|e| Error::tokenizers("adding the user-defined symbols", e))?;
        // Every reserved piece must sit at its planned id.
        for (id, piece) in self.reserved().iter().enumerate() {
            let got = tokenizer.get_model().token_to_id(piece);
            if got != Some(id as u32) {
                return Err(Error::tokenizers(
                    "assembling the vocabulary",
                    format!("reserved piece {piece:?} is at {got:?}, expected {id}"),
                ));
            }
        }
        Ok(tokenizer)
    }
}

/// Runs `f` on a thread of rayon's pool. The trainers start a parallel loop per merge (BPE) or
/// per EM step (Unigram); from a thread outside the pool each one is a hand-off and a wake-up,
/// from inside it runs in place (and on one thread, without any hand-off at all).
fn on_pool_worker<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::scope(|_| f())
}

fn trim_newline(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// SentencePiece's rule: the most frequent characters that together cover `coverage` of all
/// character occurrences. Returns the alphabet and the number of characters left out.
fn coverage_alphabet(words: &AHashMap<CompactString, u64>, coverage: f64) -> (Vec<char>, usize) {
    let mut freq: BTreeMap<char, u64> = BTreeMap::new();
    for (word, n) in words {
        for c in word.chars() {
            *freq.entry(c).or_default() += n;
        }
    }
    let total: u64 = freq.values().sum();
    let mut by_count: Vec<(char, u64)> = freq.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = Vec::new();
    let mut covered = 0u64;
    for &(c, n) in &by_count {
        if kept.is_empty() || (covered as f64) < coverage * total as f64 {
            kept.push(c);
            covered += n;
        } else {
            break;
        }
    }
    let dropped = by_count.len() - kept.len();
    kept.sort_unstable();
    (kept, dropped)
}

/// Unigram's input: words at or above `min_frequency`, cut at characters outside the alphabet
/// (those go to byte fallback), with `u32` counts.
fn unigram_sentences(
    words: &AHashMap<CompactString, u64>,
    alphabet: &[char],
    min_frequency: u64,
) -> Result<Vec<(String, u32)>> {
    let mut out: AHashMap<String, u64> = AHashMap::new();
    for (word, &n) in words {
        if n < min_frequency {
            continue;
        }
        for part in word.split(|c: char| alphabet.binary_search(&c).is_err()) {
            if !part.is_empty() {
                *out.entry(part.to_owned()).or_default() += n;
            }
        }
    }
    let mut sentences = out
        .into_iter()
        .map(|(word, n)| {
            u32::try_from(n)
                .map(|n| (word.clone(), n))
                .map_err(|_| Error::CountOverflow { word, count: n })
        })
        .collect::<Result<Vec<_>>>()?;
    // A fixed order makes the run reproducible.
    sentences.sort_unstable();
    Ok(sentences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_keeps_the_frequent_characters() {
        let mut words = AHashMap::new();
        words.insert(CompactString::from("aab"), 10);
        words.insert(CompactString::from("c"), 1);
        // a: 20, b: 10, c: 1 of 31.
        let (kept, dropped) = coverage_alphabet(&words, 0.95);
        assert_eq!(kept, vec!['a', 'b']);
        assert_eq!(dropped, 1);
        let (kept, dropped) = coverage_alphabet(&words, 1.0);
        assert_eq!(kept, vec!['a', 'b', 'c']);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn byte_piece_forms_are_recognised() {
        assert_eq!(byte_piece_value("<0x0A>"), Some(10));
        assert_eq!(byte_piece_value("<0xFF>"), Some(255));
        assert_eq!(byte_piece_value("<0x1>"), None);
        assert_eq!(byte_piece_value("<0xZZ>"), None);
    }
}
