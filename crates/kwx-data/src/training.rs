//! The training view of a dataset: examples rendered in Gemma's chat format, tokenized with
//! completion-only labels, fitted to a length budget, then packed or batched by length.
//!
//! # Chat format
//!
//! [`ChatFormat::Gemma`] renders an [`InstructionRecord`] as Gemma 3's chat template (the
//! `chat_template` of google/gemma-3-270m-it's `tokenizer_config.json`, shown in transformers'
//! Gemma 3 docs) renders the messages `system: instruction`, `user: input`, `assistant: output`:
//!
//! ```text
//! <bos><start_of_turn>user\n{instruction}\n\n{input}<end_of_turn>\n<start_of_turn>model\n{output}<end_of_turn>\n
//! ```
//!
//! - Gemma has no system role: the template writes the system text and `"\n\n"` at the start of
//!   the first user turn. An empty instruction stands for no system message (no separator).
//! - The template applies Jinja's `trim` to every message's content but not to the system text,
//!   so `input` and `output` are trimmed (Python's `str.strip` whitespace) and the instruction
//!   is kept as it is.
//! - [`Rendered::prompt`] ends with `<start_of_turn>model\n`: it is exactly what
//!   `apply_chat_template(..., add_generation_prompt=True)` renders for the system and user
//!   messages, so a model is trained on the prompt it gets at inference.
//! - [`Rendered::completion`] is `{output}<end_of_turn>\n`, both tokens the template writes
//!   after the answer. `<end_of_turn>` (id 106) is the token Gemma's `generation_config.json`
//!   stops on; no `<eos>` is added, since the template writes none.
//!
//! The control tokens are Gemma 3's `tokenizer.json` added tokens: `<pad>` 0, `<eos>` 1,
//! `<bos>` 2, `<start_of_turn>` 105, `<end_of_turn>` 106 (all `special`, matched before the
//! BPE model runs). [`ExampleEncoder::new`] looks them up rather than assuming the ids.
//!
//! # Tokenization and labels
//!
//! [`ExampleEncoder`] tokenizes the prompt and the completion *separately*, both without the
//! tokenizer's post-processor (`add_special_tokens = false`, as `apply_chat_template` does), and
//! concatenates them. The prompt's literal `<bos>` is matched as the added token, so `<bos>`
//! appears exactly once, at position 0. Labels are [`IGNORE_INDEX`] on prompt tokens and the
//! token id on completion tokens, aligned with `input_ids` in the transformers convention: the
//! trainer shifts them (logits at position `t` are scored against `labels[t + 1]`).
//!
//! Tokenizing separately puts the prompt/completion boundary exactly between two tokens. For
//! Gemma 3 the joint tokenization of `prompt + completion` gives the same ids (checked on
//! Korean examples in `tests/training.rs`): the prompt ends at `"\n"`, and the vocabulary's only
//! tokens holding a newline are runs of newlines, so it never merges with the answer's first
//! character, which is never a newline since the answer is trimmed. Were a tokenizer to merge
//! across the boundary, the separate ids would still be the right ones: at inference the prompt
//! is tokenized alone and the model continues it token by token, which is the sequence trained
//! here. (TRL's prompt-completion path tokenizes jointly and warns about such mismatches.)
//!
//! Text fields holding a control token (`<end_of_turn>` in an input) are rejected
//! ([`TrainingDataError::ControlToken`]): the tokenizer would read them as turn markers. Other
//! added tokens (`<mask>`, `<unused0>`) are tokenized as transformers would, as single tokens.
//!
//! # Length, packing, batches
//!
//! [`Truncation`] says what happens to an example longer than `max_len`; nothing is cut
//! silently. [`pack`] bins examples into sequences of at most `max_len` tokens with
//! `position_ids` restarting at 0 per example and `segment_ids` for a block-diagonal causal mask
//! (the layout of transformers' `DataCollatorWithFlattening`, which flash-attention's varlen
//! kernels read as [`PackedSequence::cu_seqlens`]). [`batches_by_length`] groups examples of
//! similar length into right-padded batches, in a seeded order.
//!
//! ```no_run
//! use kwx_data::jsonl::InstructionRecord;
//! use kwx_data::training::{BatchSize, ChatFormat, ExampleEncoder, Truncation, batches_by_length};
//!
//! let tokenizer = tokenizers::Tokenizer::from_file("tokenizer.json")?;
//! let records = vec![InstructionRecord {
//!     instruction: "키워드를 JSON 배열로 추출하세요.".into(),
//!     input: "두통에는 진통제를 복용합니다.".into(),
//!     output: r#"["두통","진통제"]"#.into(),
//! }];
//! let encoder = ExampleEncoder::new(&tokenizer, ChatFormat::Gemma)?
//!     .max_len(512)
//!     .truncation(Truncation::Left);
//! let encoded = encoder.encode_all(&records)?;
//! let batches =
//!     batches_by_length(&encoded.examples, BatchSize::Tokens(4096), encoder.pad_id(), 7)?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

use std::fmt;
use std::ops::Range;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

use crate::jsonl::{InstructionRecord, SftRecord};

/// The label of a position that takes no part in the loss (PyTorch's `CrossEntropyLoss`
/// `ignore_index`, which transformers' causal-LM loss uses).
pub const IGNORE_INDEX: i64 = -100;

/// What can go wrong building training data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainingDataError {
    /// The tokenizer lacks a control token of the chat format.
    #[error("the tokenizer has no `{token}` token, which the {format} chat format needs")]
    MissingToken {
        /// The token's text.
        token: &'static str,
        /// The chat format.
        format: ChatFormat,
    },
    /// The tokenizer would truncate or pad on its own.
    #[error(
        "the tokenizer has {setting} enabled; disable it (`with_{setting}(None)`) so that the \
         length policy alone decides"
    )]
    TokenizerSettings {
        /// `truncation` or `padding`.
        setting: &'static str,
    },
    /// The tokenizer failed.
    #[error("example {index}: tokenizer: {message}")]
    Tokenizer {
        /// The example's index.
        index: usize,
        /// The tokenizer's message.
        message: String,
    },
    /// A text field holds a control token of the chat format.
    #[error("example {index}: `{field}` contains the control token `{token}`")]
    ControlToken {
        /// The example's index.
        index: usize,
        /// `instruction`, `input` or `output`.
        field: &'static str,
        /// The control token.
        token: &'static str,
    },
    /// An example is longer than allowed and the policy is [`Truncation::Error`] (or the
    /// example is being packed, which never truncates).
    #[error(
        "example {index}: {len} tokens (prompt {prompt_len} + completion {completion_len}) exceed \
         max_len {max_len}"
    )]
    TooLong {
        /// The example's index.
        index: usize,
        /// Its length in tokens.
        len: usize,
        /// Prompt tokens.
        prompt_len: usize,
        /// Completion tokens.
        completion_len: usize,
        /// The limit.
        max_len: usize,
    },
    /// The truncation policy cannot fit the example: [`Truncation::Left`] keeps `<bos>` and the
    /// whole completion, [`Truncation::Right`] the whole prompt and at least one completion
    /// token.
    #[error(
        "example {index}: {truncation:?} truncation cannot fit prompt {prompt_len} + completion \
         {completion_len} tokens into max_len {max_len}"
    )]
    CannotTruncate {
        /// The example's index.
        index: usize,
        /// The policy.
        truncation: Truncation,
        /// Prompt tokens.
        prompt_len: usize,
        /// Completion tokens.
        completion_len: usize,
        /// The limit.
        max_len: usize,
    },
    /// An example is inconsistent: fields of different lengths, no tokens, `<bos>` missing or
    /// repeated.
    #[error("example {index}: {reason}")]
    MalformedExample {
        /// The example's index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A limit is zero.
    #[error("{name} must be positive")]
    ZeroLimit {
        /// The limit's name.
        name: &'static str,
    },
    /// An example alone exceeds the batch token budget.
    #[error("example {index}: {len} tokens do not fit a batch of at most {max_tokens} tokens")]
    ExceedsBatch {
        /// The example's index.
        index: usize,
        /// Its length.
        len: usize,
        /// The budget.
        max_tokens: usize,
    },
}

type Result<T, E = TrainingDataError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Rendering

/// A chat format: how a (instruction, input, output) example becomes prompt and completion text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ChatFormat {
    /// Gemma 3 (`<start_of_turn>user` / `<start_of_turn>model`); see the module docs.
    #[default]
    Gemma,
}

impl fmt::Display for ChatFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatFormat::Gemma => f.write_str("Gemma"),
        }
    }
}

/// An example rendered as text: what the model reads, and what it learns to write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rendered {
    /// Everything up to and including the start of the model's turn (`<bos>` included).
    pub prompt: String,
    /// The answer and the tokens that close the model's turn.
    pub completion: String,
}

impl Rendered {
    /// `prompt + completion`, the whole conversation as the chat template renders it.
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.completion)
    }
}

impl ChatFormat {
    /// The beginning-of-sequence token, which starts every prompt.
    pub fn bos(self) -> &'static str {
        match self {
            ChatFormat::Gemma => "<bos>",
        }
    }

    /// The padding token.
    pub fn pad(self) -> &'static str {
        match self {
            ChatFormat::Gemma => "<pad>",
        }
    }

    /// The token that ends a turn, where generation stops.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            ChatFormat::Gemma => "<end_of_turn>",
        }
    }

    /// The tokens that structure a conversation; none may appear inside a text field.
    pub fn control_tokens(self) -> &'static [&'static str] {
        match self {
            ChatFormat::Gemma => &[
                "<bos>",
                "<eos>",
                "<pad>",
                "<start_of_turn>",
                "<end_of_turn>",
            ],
        }
    }

    /// The prompt for `instruction` and `input`, ending where the model's answer starts: the
    /// template with `add_generation_prompt=True`. Use it at inference too.
    pub fn render_prompt(self, instruction: &str, input: &str) -> String {
        match self {
            ChatFormat::Gemma => {
                let separator = if instruction.is_empty() { "" } else { "\n\n" };
                format!(
                    "<bos><start_of_turn>user\n{instruction}{separator}{}<end_of_turn>\n\
                     <start_of_turn>model\n",
                    jinja_trim(input)
                )
            }
        }
    }

    /// The completion for `output`: the answer and the end of the model's turn.
    pub fn render_completion(self, output: &str) -> String {
        match self {
            ChatFormat::Gemma => format!("{}<end_of_turn>\n", jinja_trim(output)),
        }
    }

    /// Renders an instruction record.
    pub fn render(self, record: &InstructionRecord) -> Rendered {
        Rendered {
            prompt: self.render_prompt(&record.instruction, &record.input),
            completion: self.render_completion(&record.output),
        }
    }

    /// Renders an SFT record under `instruction`, its labels written as the JSON array
    /// [`SftRecord::to_instruction`] makes.
    pub fn render_sft(self, record: &SftRecord, instruction: &str) -> Rendered {
        self.render(&record.to_instruction(instruction))
    }

    /// The first control token found in the record's fields, as an error.
    fn check_fields(self, index: usize, record: &InstructionRecord) -> Result<()> {
        let fields = [
            ("instruction", &record.instruction),
            ("input", &record.input),
            ("output", &record.output),
        ];
        for (field, text) in fields {
            if let Some(&token) = self.control_tokens().iter().find(|t| text.contains(**t)) {
                return Err(TrainingDataError::ControlToken {
                    index,
                    field,
                    token,
                });
            }
        }
        Ok(())
    }
}

/// Jinja's `trim` filter: Python's `str.strip()`, whose whitespace is Rust's plus the
/// information separators U+001C..U+001F.
fn jinja_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

// ---------------------------------------------------------------------------------------------
// Tokenization

/// What to do with an example longer than `max_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Truncation {
    /// Fail with [`TrainingDataError::TooLong`].
    #[default]
    Error,
    /// Cut tokens from the prompt's start, keeping `<bos>` first and the completion whole. The
    /// turn header and the instruction go first; the end of the input, nearest the answer,
    /// stays. Fails when `<bos>` and the completion alone exceed `max_len`.
    Left,
    /// Cut the completion's end, keeping the prompt whole (the closing `<end_of_turn>` is lost,
    /// so the model is not taught to stop there). Fails unless at least one completion token
    /// fits.
    Right,
    /// Leave the example out ([`Encoded::dropped`] lists it).
    Drop,
}

/// A tokenized example. All vectors have one entry per token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrainingExample {
    /// The example's index in the source dataset.
    pub index: usize,
    /// Token ids: prompt then completion, `<bos>` first.
    pub input_ids: Vec<u32>,
    /// [`IGNORE_INDEX`] on prompt tokens, the token id on completion tokens; aligned with
    /// `input_ids` (the trainer shifts).
    pub labels: Vec<i64>,
    /// 1 on every token (an unpadded example attends to all of itself, causally).
    pub attention_mask: Vec<u8>,
}

impl TrainingExample {
    /// Tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// `true` when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Leading tokens that take no part in the loss.
    pub fn prompt_len(&self) -> usize {
        self.labels
            .iter()
            .take_while(|&&l| l == IGNORE_INDEX)
            .count()
    }

    /// Tokens the loss is computed on.
    pub fn completion_len(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Checks that the vectors agree in length and there is at least one token.
    ///
    /// # Errors
    /// [`TrainingDataError::MalformedExample`].
    pub fn validate(&self) -> Result<()> {
        let (ids, labels, mask) = (
            self.input_ids.len(),
            self.labels.len(),
            self.attention_mask.len(),
        );
        let reason = if ids != labels || ids != mask {
            format!("input_ids has {ids} tokens, labels {labels}, attention_mask {mask}")
        } else if ids == 0 {
            "no tokens".to_owned()
        } else {
            return Ok(());
        };
        Err(TrainingDataError::MalformedExample {
            index: self.index,
            reason,
        })
    }

    fn too_long(&self, max_len: usize) -> TrainingDataError {
        TrainingDataError::TooLong {
            index: self.index,
            len: self.len(),
            prompt_len: self.prompt_len(),
            completion_len: self.completion_len(),
            max_len,
        }
    }
}

/// An example longer than `max_len`, by its index and original length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Overlong {
    /// The example's index.
    pub index: usize,
    /// Its length in tokens before truncation.
    pub len: usize,
}

/// The examples of a dataset, encoded, and what the length policy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    /// The examples kept, in input order.
    pub examples: Vec<TrainingExample>,
    /// Examples cut to `max_len` ([`Truncation::Left`] or [`Truncation::Right`]).
    pub truncated: Vec<Overlong>,
    /// Examples left out ([`Truncation::Drop`]).
    pub dropped: Vec<Overlong>,
}

/// How an example fared under the length policy.
enum Fit {
    Whole(TrainingExample),
    Truncated(TrainingExample, usize),
    Dropped(usize),
}

/// Renders and tokenizes examples into [`TrainingExample`]s under a length policy.
///
/// ```no_run
/// # use kwx_data::training::{ChatFormat, ExampleEncoder, Truncation};
/// # let tokenizer = tokenizers::Tokenizer::from_file("tokenizer.json")?;
/// let encoder = ExampleEncoder::new(&tokenizer, ChatFormat::Gemma)?
///     .max_len(1024)
///     .truncation(Truncation::Drop);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Clone)]
pub struct ExampleEncoder<'t> {
    tokenizer: &'t Tokenizer,
    format: ChatFormat,
    max_len: Option<usize>,
    truncation: Truncation,
    bos_id: u32,
    pad_id: u32,
}

impl fmt::Debug for ExampleEncoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExampleEncoder")
            .field("format", &self.format)
            .field("max_len", &self.max_len)
            .field("truncation", &self.truncation)
            .field("bos_id", &self.bos_id)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

impl<'t> ExampleEncoder<'t> {
    /// An encoder for `format` with no length limit.
    ///
    /// # Errors
    /// [`TrainingDataError::MissingToken`] when the tokenizer lacks a control token;
    /// [`TrainingDataError::TokenizerSettings`] when it truncates or pads by itself.
    pub fn new(tokenizer: &'t Tokenizer, format: ChatFormat) -> Result<Self> {
        if tokenizer.get_truncation().is_some() {
            return Err(TrainingDataError::TokenizerSettings {
                setting: "truncation",
            });
        }
        if tokenizer.get_padding().is_some() {
            return Err(TrainingDataError::TokenizerSettings { setting: "padding" });
        }
        let id = |token: &'static str| {
            tokenizer
                .token_to_id(token)
                .ok_or(TrainingDataError::MissingToken { token, format })
        };
        for &token in format.control_tokens() {
            id(token)?;
        }
        Ok(ExampleEncoder {
            tokenizer,
            format,
            max_len: None,
            truncation: Truncation::Error,
            bos_id: id(format.bos())?,
            pad_id: id(format.pad())?,
        })
    }

    /// The longest example allowed, in tokens (must be positive).
    #[must_use]
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// What to do with longer examples; [`Truncation::Error`] by default.
    #[must_use]
    pub fn truncation(mut self, truncation: Truncation) -> Self {
        self.truncation = truncation;
        self
    }

    /// The chat format.
    pub fn format(&self) -> ChatFormat {
        self.format
    }

    /// The id of `<bos>`.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id of the padding token (Gemma: `<pad>` = 0), for [`batches_by_length`].
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Encodes a rendered example; `None` when [`Truncation::Drop`] drops it.
    ///
    /// # Errors
    /// [`TrainingDataError::Tokenizer`], [`TrainingDataError::MalformedExample`] (the prompt
    /// does not start with `<bos>`, or `<bos>` appears again), and the length policy's errors.
    pub fn encode(&self, index: usize, rendered: &Rendered) -> Result<Option<TrainingExample>> {
        Ok(match self.fit(index, rendered)? {
            Fit::Whole(example) | Fit::Truncated(example, _) => Some(example),
            Fit::Dropped(_) => None,
        })
    }

    /// Renders and encodes an instruction record; `None` when [`Truncation::Drop`] drops it.
    ///
    /// # Errors
    /// [`TrainingDataError::ControlToken`] and those of [`encode`](Self::encode).
    pub fn encode_record(
        &self,
        index: usize,
        record: &InstructionRecord,
    ) -> Result<Option<TrainingExample>> {
        self.format.check_fields(index, record)?;
        self.encode(index, &self.format.render(record))
    }

    /// Renders and encodes records, numbered from 0, recording truncated and dropped ones.
    ///
    /// # Errors
    /// The first example's error, as [`encode_record`](Self::encode_record).
    pub fn encode_all<'r>(
        &self,
        records: impl IntoIterator<Item = &'r InstructionRecord>,
    ) -> Result<Encoded> {
        let mut encoded = Encoded::default();
        for (index, record) in records.into_iter().enumerate() {
            self.format.check_fields(index, record)?;
            match self.fit(index, &self.format.render(record))? {
                Fit::Whole(example) => encoded.examples.push(example),
                Fit::Truncated(example, len) => {
                    encoded.examples.push(example);
                    encoded.truncated.push(Overlong { index, len });
                }
                Fit::Dropped(len) => encoded.dropped.push(Overlong { index, len }),
            }
        }
        Ok(encoded)
    }

    /// Renders SFT records under `instruction` and encodes them, as
    /// [`encode_all`](Self::encode_all).
    ///
    /// # Errors
    /// As [`encode_all`](Self::encode_all).
    pub fn encode_all_sft<'r>(
        &self,
        records: impl IntoIterator<Item = &'r SftRecord>,
        instruction: &str,
    ) -> Result<Encoded> {
        let records: Vec<InstructionRecord> = records
            .into_iter()
            .map(|r| r.to_instruction(instruction))
            .collect();
        self.encode_all(&records)
    }

    fn tokenize(&self, index: usize, text: &str) -> Result<Vec<u32>> {
        let encoding =
            self.tokenizer
                .encode_fast(text, false)
                .map_err(|e| TrainingDataError::Tokenizer {
                    index,
                    message: e.to_string(),
                })?;
        Ok(encoding.get_ids().to_vec())
    }

    fn fit(&self, index: usize, rendered: &Rendered) -> Result<Fit> {
        if self.max_len == Some(0) {
            return Err(TrainingDataError::ZeroLimit { name: "max_len" });
        }
        let mut prompt = self.tokenize(index, &rendered.prompt)?;
        let mut completion = self.tokenize(index, &rendered.completion)?;
        let malformed = |reason: &str| TrainingDataError::MalformedExample {
            index,
            reason: reason.to_owned(),
        };
        if prompt.first() != Some(&self.bos_id) {
            return Err(malformed("the prompt does not start with <bos>"));
        }
        if prompt[1..].contains(&self.bos_id) || completion.contains(&self.bos_id) {
            return Err(malformed("<bos> appears after position 0"));
        }

        let (prompt_len, completion_len) = (prompt.len(), completion.len());
        let len = prompt_len + completion_len;
        let mut truncated = false;
        if let Some(max_len) = self.max_len.filter(|&m| len > m) {
            let cannot = || TrainingDataError::CannotTruncate {
                index,
                truncation: self.truncation,
                prompt_len,
                completion_len,
                max_len,
            };
            match self.truncation {
                Truncation::Error => {
                    return Err(TrainingDataError::TooLong {
                        index,
                        len,
                        prompt_len,
                        completion_len,
                        max_len,
                    });
                }
                Truncation::Drop => return Ok(Fit::Dropped(len)),
                Truncation::Left => {
                    if completion_len + 1 > max_len {
                        return Err(cannot());
                    }
                    prompt.drain(1..1 + (len - max_len));
                }
                Truncation::Right => {
                    if prompt_len + 1 > max_len {
                        return Err(cannot());
                    }
                    completion.truncate(max_len - prompt_len);
                }
            }
            truncated = true;
        }

        let labels = std::iter::repeat_n(IGNORE_INDEX, prompt.len())
            .chain(completion.iter().map(|&id| i64::from(id)))
            .collect();
        prompt.extend_from_slice(&completion);
        let example = TrainingExample {
            index,
            attention_mask: vec![1; prompt.len()],
            input_ids: prompt,
            labels,
        };
        Ok(if truncated {
            Fit::Truncated(example, len)
        } else {
            Fit::Whole(example)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Packing

/// How [`pack`] assigns examples to sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Packing {
    /// First-fit decreasing: longest example first, each into the first sequence with room
    /// (stable: equal lengths keep input order). Uses at most 11/9·OPT + 6/9 sequences
    /// (Dósa, 2007); `O(n log n)` with a max-segment tree over the sequences' free space.
    #[default]
    FirstFitDecreasing,
    /// In input order: an example opens a new sequence when it does not fit the current one.
    /// Keeps the order (a curriculum), at the cost of more padding.
    Greedy,
}

/// Several examples packed into one sequence, with what a trainer needs to keep them apart.
///
/// Attention must stay within a segment (block-diagonal causal mask, see
/// [`attention_mask`](Self::attention_mask)), and positions restart at 0 per segment, so each
/// example is trained as if it were alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackedSequence {
    /// Token ids, the examples one after another.
    pub input_ids: Vec<u32>,
    /// The examples' labels, unchanged ([`IGNORE_INDEX`] on prompts), aligned with
    /// `input_ids`. A segment's first label is its `<bos>`'s, a prompt token's, so after the
    /// trainer's shift the last token of one example is never trained to predict the next.
    pub labels: Vec<i64>,
    /// Position of each token within its example, from 0.
    pub position_ids: Vec<u32>,
    /// Segment of each token: 0 for the first example of this sequence, 1 for the next, ...
    pub segment_ids: Vec<u32>,
    /// The source index of each segment's example, by segment id.
    pub example_indices: Vec<usize>,
}

impl PackedSequence {
    /// Tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// `true` when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Examples packed.
    pub fn num_segments(&self) -> usize {
        self.example_indices.len()
    }

    /// The token range of each segment.
    pub fn segments(&self) -> Vec<Range<usize>> {
        let bounds = self.cu_seqlens();
        bounds.windows(2).map(|w| w[0]..w[1]).collect()
    }

    /// Cumulative segment boundaries `[0, end_0, end_1, ..., len]`, flash-attention's
    /// `cu_seqlens` for its varlen kernels.
    pub fn cu_seqlens(&self) -> Vec<usize> {
        let mut bounds = vec![0];
        for i in 1..self.len() {
            if self.segment_ids[i] != self.segment_ids[i - 1] {
                bounds.push(i);
            }
        }
        if !self.is_empty() {
            bounds.push(self.len());
        }
        bounds
    }

    /// The block-diagonal causal mask, row-major `len × len`: `[q * len + k]` is `true` when
    /// token `q` may attend to token `k` (`k <= q`, same segment). Quadratic: for tests and
    /// small sequences; a trainer builds it from `segment_ids` on the device.
    pub fn attention_mask(&self) -> Vec<bool> {
        let n = self.len();
        let mut mask = vec![false; n * n];
        for range in self.segments() {
            for q in range.clone() {
                for k in range.start..=q {
                    mask[q * n + k] = true;
                }
            }
        }
        mask
    }

    fn push(&mut self, example: &TrainingExample) {
        let segment = self.example_indices.len() as u32;
        self.input_ids.extend_from_slice(&example.input_ids);
        self.labels.extend_from_slice(&example.labels);
        self.position_ids.extend(0..example.len() as u32);
        self.segment_ids
            .extend(std::iter::repeat_n(segment, example.len()));
        self.example_indices.push(example.index);
    }

    fn empty() -> Self {
        PackedSequence {
            input_ids: Vec::new(),
            labels: Vec::new(),
            position_ids: Vec::new(),
            segment_ids: Vec::new(),
            example_indices: Vec::new(),
        }
    }
}

/// Packs examples into sequences of at most `max_len` tokens. Every example lands in exactly
/// one sequence, whole; none is truncated.
///
/// # Errors
/// [`TrainingDataError::ZeroLimit`], [`TrainingDataError::MalformedExample`], or
/// [`TrainingDataError::TooLong`] for an example longer than `max_len`.
pub fn pack(
    examples: &[TrainingExample],
    max_len: usize,
    packing: Packing,
) -> Result<Vec<PackedSequence>> {
    if max_len == 0 {
        return Err(TrainingDataError::ZeroLimit { name: "max_len" });
    }
    for example in examples {
        example.validate()?;
        if example.len() > max_len {
            return Err(example.too_long(max_len));
        }
    }
    let bins: Vec<Vec<usize>> = match packing {
        Packing::Greedy => {
            let mut bins: Vec<Vec<usize>> = Vec::new();
            let mut used = 0;
            for (i, example) in examples.iter().enumerate() {
                match bins.last_mut() {
                    Some(bin) if used + example.len() <= max_len => bin.push(i),
                    _ => {
                        bins.push(vec![i]);
                        used = 0;
                    }
                }
                used += example.len();
            }
            bins
        }
        Packing::FirstFitDecreasing => {
            let mut order: Vec<usize> = (0..examples.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(examples[i].len()));
            let mut free = FreeSpace::new(examples.len(), max_len);
            let mut bins: Vec<Vec<usize>> = Vec::new();
            for i in order {
                let bin = free.place(examples[i].len());
                if bin == bins.len() {
                    bins.push(Vec::new());
                }
                bins[bin].push(i);
            }
            bins
        }
    };
    Ok(bins
        .into_iter()
        .map(|bin| {
            let mut sequence = PackedSequence::empty();
            for i in bin {
                sequence.push(&examples[i]);
            }
            sequence
        })
        .collect())
}

/// A max-segment tree over bins' free space, to find the first bin with room in `O(log n)`.
/// Unopened bins have full capacity, so the first one with room is the next new bin when no
/// open bin fits.
struct FreeSpace {
    leaves: usize,
    tree: Vec<usize>,
}

impl FreeSpace {
    fn new(bins: usize, capacity: usize) -> Self {
        let leaves = bins.next_power_of_two();
        FreeSpace {
            leaves,
            tree: vec![capacity; 2 * leaves],
        }
    }

    /// Takes `len` from the first bin with that much room; returns the bin. `len` must not
    /// exceed the capacity, and there must be a bin left.
    fn place(&mut self, len: usize) -> usize {
        let mut node = 1;
        while node < self.leaves {
            node = if self.tree[2 * node] >= len {
                2 * node
            } else {
                2 * node + 1
            };
        }
        self.tree[node] -= len;
        let bin = node - self.leaves;
        while node > 1 {
            node /= 2;
            self.tree[node] = self.tree[2 * node].max(self.tree[2 * node + 1]);
        }
        bin
    }
}

// ---------------------------------------------------------------------------------------------
// Batching

/// How large a batch may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchSize {
    /// At most this many examples.
    Examples(usize),
    /// At most this many tokens, padding included (rows × longest row): the memory a batch
    /// takes, so short examples travel in larger batches.
    Tokens(usize),
}

/// Right-padded examples of similar length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Batch {
    /// `[rows, seq]` token ids, right-padded with the pad id.
    pub input_ids: Vec<Vec<u32>>,
    /// `[rows, seq]` labels, [`IGNORE_INDEX`] on padding.
    pub labels: Vec<Vec<i64>>,
    /// `[rows, seq]`, 1 on tokens and 0 on padding.
    pub attention_mask: Vec<Vec<u8>>,
    /// Each row's length without padding.
    pub lengths: Vec<usize>,
    /// Each row's source index.
    pub example_indices: Vec<usize>,
}

impl Batch {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.input_ids.len()
    }

    /// The padded length of every row.
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map_or(0, Vec::len)
    }

    fn new(rows: &[&TrainingExample], pad_id: u32) -> Self {
        let seq_len = rows.iter().map(|e| e.len()).max().unwrap_or(0);
        let pad = |e: &TrainingExample| seq_len - e.len();
        Batch {
            input_ids: rows
                .iter()
                .map(|e| {
                    let mut ids = e.input_ids.clone();
                    ids.resize(seq_len, pad_id);
                    ids
                })
                .collect(),
            labels: rows
                .iter()
                .map(|e| {
                    let mut labels = e.labels.clone();
                    labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad(e)));
                    labels
                })
                .collect(),
            attention_mask: rows
                .iter()
                .map(|e| {
                    let mut mask = e.attention_mask.clone();
                    mask.resize(seq_len, 0);
                    mask
                })
                .collect(),
            lengths: rows.iter().map(|e| e.len()).collect(),
            example_indices: rows.iter().map(|e| e.index).collect(),
        }
    }
}

/// Groups examples of similar length into right-padded batches, in a seeded order.
///
/// The examples are shuffled (seeded ChaCha8), stably sorted by length, so that equal lengths
/// land in random order, and cut into consecutive batches as large as `size` allows; then the
/// batches are shuffled. Every example lands in exactly one batch. The same seed gives the same
/// batches; use a new seed per epoch. Padding is on the right (causal training: real tokens
/// keep positions `0..len`), with `pad_id` (see [`ExampleEncoder::pad_id`]).
///
/// # Errors
/// [`TrainingDataError::ZeroLimit`], [`TrainingDataError::MalformedExample`], or
/// [`TrainingDataError::ExceedsBatch`] for an example longer than a [`BatchSize::Tokens`]
/// budget.
pub fn batches_by_length(
    examples: &[TrainingExample],
    size: BatchSize,
    pad_id: u32,
    seed: u64,
) -> Result<Vec<Batch>> {
    match size {
        BatchSize::Examples(0) => return Err(TrainingDataError::ZeroLimit { name: "batch size" }),
        BatchSize::Tokens(0) => {
            return Err(TrainingDataError::ZeroLimit {
                name: "tokens per batch",
            });
        }
        _ => {}
    }
    for example in examples {
        example.validate()?;
        if let BatchSize::Tokens(max_tokens) = size
            && example.len() > max_tokens
        {
            return Err(TrainingDataError::ExceedsBatch {
                index: example.index,
                len: example.len(),
                max_tokens,
            });
        }
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<&TrainingExample> = examples.iter().collect();
    order.shuffle(&mut rng);
    order.sort_by_key(|e| e.len());

    let mut batches = Vec::new();
    let mut start = 0;
    while start < order.len() {
        // Sorted ascending, so a row's length is the batch's longest so far.
        let mut end = start + 1;
        while end < order.len()
            && match size {
                BatchSize::Examples(n) => end - start < n,
                BatchSize::Tokens(max) => (end - start + 1) * order[end].len() <= max,
            }
        {
            end += 1;
        }
        batches.push(Batch::new(&order[start..end], pad_id));
        start = end;
    }
    batches.shuffle(&mut rng);
    Ok(batches)
}
