//! The prompt strategies: a Gemma model asked for keywords, with keyword definitions, few-shot
//! examples chosen by similarity, retrieved context, a feedback retry, and constrained output.
//!
//! One type, [`PromptExtractor`], covers strategies 1 and 2 of kwx and the inference side of 3–5:
//!
//! | strategy | [`PromptConfig`] | extra |
//! |---|---|---|
//! | zero-shot | [`PromptConfig::zero_shot`] | category definitions from the dictionary |
//! | few-shot | [`PromptConfig::few_shot`] | [`PromptExtractor::with_examples`]: the `k` most similar |
//! | few-shot + feedback | [`PromptConfig::feedback`] | a dictionary scan; "You missed '임산부'. Please retry." |
//! | RAG | any of the above | [`PromptExtractor::with_context`] (kwx-rag implements [`ContextProvider`]) |
//! | fine-tuned | [`PromptConfig::fine_tuned`] | the training prompt, exactly (`ChatFormat::render_prompt`) |
//!
//! The conversation is Gemma's chat template: a first user turn carrying the instruction and the
//! definitions, then each few-shot example as a user turn (the text) and a model turn (its
//! keywords as a JSON array), then the text to read (with its retrieved context). The feedback
//! loop continues that conversation: the model's answer, then a user turn naming the terms a
//! dictionary scan found and the answer lacks (or saying the answer was not a JSON array), up to
//! [`PromptConfig::feedback_retries`] times.
//!
//! Output is read from a [`JsonArrayConstraint`] when [`PromptConfig::constrain`] is set (the
//! model can only write a JSON array of strings — or, extractive, only strings of the input),
//! else by the tolerant [`parse_keyword_list`]. Keywords are put in dictionary form when the
//! dictionary knows them (`임신부에게` → `임산부`), each once, with their spans in the text.
//!
//! Texts are batched: prompts sorted by length, [`PromptConfig::batch_size`] rows per
//! generation, left-padded (each row computes what it would alone).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kwx_data::dictionary::{Category, Dictionary};
use kwx_data::korean::strip_particles;

use crate::constrain::{JsonArrayConstraint, OutputMode, TokenBytes};
use crate::error::{Error, Result};
use crate::extract::{DictionaryExtractor, Keyword, KeywordExtractor, Span, parse_keyword_list};
use crate::generate::{GenerationConfig, Generator, TokenConstraint};
use crate::model::Gemma;
use crate::tokenizer::{ChatMessage, GemmaTokenizer};

/// The instruction of the prompt strategies (the one kwx-data's training sets use, so a
/// fine-tuned model and a prompted one are asked the same thing).
pub const INSTRUCTION: &str = kwx_data::builder::DEFAULT_INSTRUCTION;

/// The feedback message; `{missed}` becomes `'임산부', '노인'`.
pub const MISSED_TEMPLATE: &str = "You missed {missed}. Please retry.";

/// The feedback message for an answer that is not a JSON array of strings.
pub const INVALID_MESSAGE: &str =
    "Your answer was not a JSON array of strings. Answer again with only the JSON array.";

/// What the model may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Constrain {
    /// Anything; the answer is read by the tolerant parser.
    None,
    /// Only a JSON array of strings.
    #[default]
    Json,
    /// Only a JSON array of strings that occur in the input text.
    Extractive,
}

/// How a [`PromptExtractor`] asks.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptConfig {
    /// The strategy's name in reports.
    pub name: String,
    /// The task, first in the first user turn.
    pub instruction: String,
    /// Whether to list each keyword category with example terms from the dictionary.
    pub definitions: bool,
    /// Example terms per category in the definitions.
    pub terms_per_category: usize,
    /// Few-shot examples per text (the most similar of the pool; 0 = zero-shot).
    pub few_shot: usize,
    /// Re-asks after an answer that misses dictionary terms or is not a JSON array.
    pub feedback_retries: usize,
    /// Keep the keywords of every answer (first seen first) instead of only the last one's: the
    /// feedback names missing terms, never ones to drop, and a small model tends to answer a
    /// retry with the missed terms alone.
    pub merge_answers: bool,
    /// What the model may write.
    pub constrain: Constrain,
    /// Written before each text in its user turn (`"문장: "`; empty for fine-tuned models).
    pub input_prefix: String,
    /// Feedback template, `{missed}` replaced by the quoted terms.
    pub missed_template: String,
    /// Upper bound on answer tokens.
    pub max_new_tokens: usize,
    /// Texts per generation batch.
    pub batch_size: usize,
}

impl PromptConfig {
    /// Instruction and category definitions, no examples.
    pub fn zero_shot() -> Self {
        Self {
            name: "zero-shot".into(),
            instruction: INSTRUCTION.into(),
            definitions: true,
            terms_per_category: 6,
            few_shot: 0,
            feedback_retries: 0,
            merge_answers: false,
            constrain: Constrain::Json,
            input_prefix: "문장: ".into(),
            missed_template: MISSED_TEMPLATE.into(),
            max_new_tokens: 64,
            batch_size: 8,
        }
    }

    /// Zero-shot plus the `k` examples most similar to each text.
    pub fn few_shot(k: usize) -> Self {
        Self {
            name: "few-shot".into(),
            few_shot: k,
            ..Self::zero_shot()
        }
    }

    /// Few-shot plus up to `retries` feedback rounds.
    pub fn feedback(k: usize, retries: usize) -> Self {
        Self {
            name: "feedback".into(),
            feedback_retries: retries,
            merge_answers: true,
            ..Self::few_shot(k)
        }
    }

    /// The prompt a fine-tuned model was trained on: `instruction`, a blank line, the text.
    pub fn fine_tuned(instruction: impl Into<String>) -> Self {
        Self {
            name: "fine-tuned".into(),
            instruction: instruction.into(),
            definitions: false,
            input_prefix: String::new(),
            ..Self::zero_shot()
        }
    }

    /// Renamed.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// With another output constraint.
    #[must_use]
    pub fn constrained(mut self, constrain: Constrain) -> Self {
        self.constrain = constrain;
        self
    }

    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<()> {
        let bad = |option, message: &str| {
            Err(Error::InvalidOption {
                option,
                message: message.into(),
            })
        };
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if !self.missed_template.contains("{missed}") {
            return bad(
                "missed_template",
                "must contain {missed}, where the missed terms go",
            );
        }
        Ok(())
    }
}

/// Text placed before the text to read: retrieved definitions (kwx-rag's `ContextBuilder`
/// implements it). Shared across threads.
pub trait ContextProvider: Send + Sync {
    /// The context for `text` (may be empty).
    fn context(&self, text: &str) -> Result<String>;
}

/// A labelled example for few-shot prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// Its keywords.
    pub labels: Vec<String>,
}

/// Few-shot examples and their TF-IDF vectors (word stems and in-word character bigrams): the examples most similar to a
/// text (cosine) are the ones shown, so a text about 연고 sees examples about 연고.
#[derive(Debug, Clone)]
pub struct ExamplePool {
    examples: Vec<Example>,
    vectors: Vec<Vec<(u64, f32)>>,
    idf: HashMap<u64, f32>,
}

impl ExamplePool {
    /// Indexes `examples` (duplicate texts kept once).
    pub fn new(examples: Vec<Example>) -> Self {
        let mut seen = HashSet::new();
        let examples: Vec<Example> = examples
            .into_iter()
            .filter(|e| seen.insert(e.text.clone()))
            .collect();
        let grams: Vec<HashMap<u64, f32>> = examples.iter().map(|e| features(&e.text)).collect();
        let mut df: HashMap<u64, usize> = HashMap::new();
        for g in &grams {
            for k in g.keys() {
                *df.entry(*k).or_default() += 1;
            }
        }
        let n = examples.len() as f32;
        let idf: HashMap<u64, f32> = df
            .into_iter()
            .map(|(k, d)| (k, ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0))
            .collect();
        let vectors = grams.iter().map(|g| weigh(g, &idf)).collect();
        Self {
            examples,
            vectors,
            idf,
        }
    }

    /// How many examples it holds.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The `k` examples most similar to `text`, most similar first; an example whose text is
    /// `text` itself is skipped (no answer leaks into its own prompt). Ties go to the earlier
    /// example.
    pub fn nearest(&self, text: &str, k: usize) -> Vec<&Example> {
        if k == 0 {
            return Vec::new();
        }
        let query = weigh(&features(text), &self.idf);
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| self.examples[*i].text != text)
            .map(|(i, v)| (dot(&query, v), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(k)
            .map(|(_, i)| &self.examples[i])
            .collect()
    }
}

/// Features of a text: each word's particle stem (`연고는` → `연고`) and the character bigrams
/// inside each word (never across a space, so sentence endings weigh less than content words).
fn features(text: &str) -> HashMap<u64, f32> {
    use std::hash::{Hash, Hasher};
    let hash = |tag: u8, s: &[char]| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tag.hash(&mut h);
        s.hash(&mut h);
        h.finish()
    };
    let mut out = HashMap::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        if word.is_empty() {
            continue;
        }
        let stem: Vec<char> = strip_particles(word).chars().collect();
        *out.entry(hash(0, &stem)).or_insert(0.0) += 1.0;
        let chars: Vec<char> = word.chars().collect();
        for w in chars.windows(2) {
            *out.entry(hash(1, w)).or_insert(0.0) += 1.0;
        }
    }
    out
}

/// Sorted, L2-normalised TF-IDF vector.
fn weigh(counts: &HashMap<u64, f32>, idf: &HashMap<u64, f32>) -> Vec<(u64, f32)> {
    let mut v: Vec<(u64, f32)> = counts
        .iter()
        .filter_map(|(k, c)| idf.get(k).map(|w| (*k, c * w)))
        .collect();
    v.sort_unstable_by_key(|e| e.0);
    let norm = v.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|e| e.1 /= norm);
    }
    v
}

fn dot(a: &[(u64, f32)], b: &[(u64, f32)]) -> f32 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

/// Korean label of a category in the definitions.
fn category_label(c: Category) -> &'static str {
    match c {
        Category::Symptom => "증상·효능",
        Category::Disease => "질환",
        Category::DosageForm => "제형",
        Category::Population => "복용 대상",
        Category::Ingredient => "성분",
        Category::Manufacturer => "제조사",
        Category::Product => "제품명",
        Category::DrugClass => "약효 분류",
        Category::Safety => "안전 정보",
    }
}

/// One answer, as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// What the model wrote (for a constrained answer: the constraint's JSON).
    pub raw: String,
    /// The keywords read from it, as written.
    pub items: Vec<String>,
    /// Whether it was a JSON array of strings as written (always, when constrained).
    pub valid: bool,
}

/// Everything one extraction did, for inspection and reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// The first prompt as text.
    pub prompt: String,
    /// Its length in tokens.
    pub prompt_tokens: usize,
    /// Every answer, the first and each retry.
    pub answers: Vec<Answer>,
    /// The dictionary terms each feedback message named.
    pub missed: Vec<Vec<String>>,
}

/// A Gemma model asked for keywords; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PromptExtractor {
    config: PromptConfig,
    model: Gemma,
    tokenizer: GemmaTokenizer,
    token_bytes: Option<Arc<TokenBytes>>,
    stop_ids: Vec<u32>,
    dictionary: Option<Dictionary>,
    definitions: String,
    scanner: Option<DictionaryExtractor>,
    pool: Option<ExamplePool>,
    context: Option<Arc<dyn ContextProvider>>,
}

impl std::fmt::Debug for dyn ContextProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextProvider")
    }
}

impl PromptExtractor {
    /// A prompt extractor over `model` and its `tokenizer`.
    ///
    /// # Errors
    /// An invalid `config`; a tokenizer without `<end_of_turn>`.
    pub fn new(model: Gemma, tokenizer: GemmaTokenizer, config: PromptConfig) -> Result<Self> {
        config.validate()?;
        let end_of_turn = tokenizer.token_to_id("<end_of_turn>").ok_or_else(|| {
            Error::InvalidInput(
                "the tokenizer has no <end_of_turn> token: not a Gemma chat tokenizer".into(),
            )
        })?;
        let mut stop_ids = vec![end_of_turn];
        stop_ids.extend(&model.config().eos_token_ids);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let token_bytes = match config.constrain {
            Constrain::None => None,
            Constrain::Json | Constrain::Extractive => Some(Arc::new(TokenBytes::new(&tokenizer)?)),
        };
        Ok(Self {
            config,
            model,
            tokenizer,
            token_bytes,
            stop_ids,
            dictionary: None,
            definitions: String::new(),
            scanner: None,
            pool: None,
            context: None,
        })
    }

    /// The dictionary the strategy knows, less the entries of `excluded` terms (held out of
    /// training: a fair comparison hides them from every strategy). It gives the category
    /// definitions, the dictionary forms of answers, and the feedback scan.
    pub fn with_dictionary<'a>(
        mut self,
        dictionary: &Dictionary,
        excluded: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self> {
        let excluded: HashSet<&str> = excluded.into_iter().collect();
        let kept: Vec<_> = dictionary
            .entries()
            .iter()
            .filter(|e| !excluded.contains(e.term.as_str()))
            .cloned()
            .collect();
        let dictionary = Dictionary::new(kept)
            .map_err(|e| Error::InvalidInput(format!("dictionary without held-out terms: {e}")))?;
        self.scanner = Some(DictionaryExtractor::new(&dictionary)?);
        self.definitions = definitions(&dictionary, self.config.terms_per_category);
        self.dictionary = Some(dictionary);
        Ok(self)
    }

    /// The pool few-shot examples are chosen from.
    #[must_use]
    pub fn with_examples(mut self, pool: ExamplePool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Context placed before each text (RAG).
    #[must_use]
    pub fn with_context(mut self, context: Arc<dyn ContextProvider>) -> Self {
        self.context = Some(context);
        self
    }

    /// Renamed (reports).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Its settings.
    pub fn config(&self) -> &PromptConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &Gemma {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &GemmaTokenizer {
        &self.tokenizer
    }

    /// The conversation that asks for `text`'s keywords (before any feedback).
    pub fn messages(&self, text: &str) -> Result<Vec<ChatMessage>> {
        let c = &self.config;
        if c.few_shot > 0 && self.pool.as_ref().is_none_or(ExamplePool::is_empty) {
            return Err(Error::InvalidOption {
                option: "few_shot",
                message: format!(
                    "{} examples per text but no example pool: call with_examples",
                    c.few_shot
                ),
            });
        }
        if (c.definitions || c.feedback_retries > 0) && self.dictionary.is_none() {
            return Err(Error::InvalidOption {
                option: if c.definitions {
                    "definitions"
                } else {
                    "feedback_retries"
                },
                message: "needs a dictionary: call with_dictionary".into(),
            });
        }
        let mut header = c.instruction.clone();
        if c.definitions && !self.definitions.is_empty() {
            header.push_str("\n\n");
            header.push_str(&self.definitions);
        }
        // No system turn for an empty header: the chat template would still add its blank
        // line, and a fine-tuned model must see exactly its training prompt.
        let mut messages = Vec::new();
        if !header.is_empty() {
            messages.push(ChatMessage::system(header));
        }
        if let Some(pool) = &self.pool {
            for ex in pool.nearest(text, c.few_shot) {
                messages.push(ChatMessage::user(format!("{}{}", c.input_prefix, ex.text)));
                messages.push(ChatMessage::model(json_array(&ex.labels)));
            }
        }
        let mut turn = String::new();
        if let Some(ctx) = &self.context {
            let found = ctx.context(text)?;
            if !found.trim().is_empty() {
                turn.push_str("참고 사전:\n");
                turn.push_str(found.trim());
                turn.push_str("\n\n");
            }
        }
        turn.push_str(&c.input_prefix);
        turn.push_str(text);
        messages.push(ChatMessage::user(turn));
        Ok(messages)
    }

    /// Extracts the keywords of each text and returns what happened on the way.
    pub fn extract_traced(&self, texts: &[&str]) -> Result<Vec<(Vec<Keyword>, Trace)>> {
        let mut convs: Vec<Vec<ChatMessage>> = texts
            .iter()
            .map(|t| self.messages(t))
            .collect::<Result<_>>()?;
        let mut traces: Vec<Trace> = vec![Trace::default(); texts.len()];
        let mut pending: Vec<usize> = (0..texts.len()).collect();
        let mut round = 0;
        while !pending.is_empty() {
            let mut prompts: Vec<Vec<u32>> = Vec::with_capacity(pending.len());
            for &i in &pending {
                let rendered = crate::tokenizer::apply_chat_template(&convs[i], true)?;
                let ids = self.tokenizer.encode(&rendered, false)?;
                if round == 0 {
                    traces[i].prompt_tokens = ids.len();
                    traces[i].prompt = rendered;
                }
                prompts.push(ids);
            }
            let sources: Vec<&str> = pending.iter().map(|&i| texts[i]).collect();
            let answers = self.answer(&prompts, &sources)?;
            let mut next = Vec::new();
            for (&i, answer) in pending.iter().zip(answers) {
                let said = if self.config.merge_answers {
                    merged(trace_items(&traces[i]).chain(&answer.items))
                } else {
                    answer.items.clone()
                };
                let missed = self.missed(texts[i], &said)?;
                let retry =
                    round < self.config.feedback_retries && (!answer.valid || !missed.is_empty());
                if retry {
                    let message = if answer.valid {
                        let quoted: Vec<String> = missed.iter().map(|m| format!("'{m}'")).collect();
                        self.config
                            .missed_template
                            .replace("{missed}", &quoted.join(", "))
                    } else {
                        INVALID_MESSAGE.to_string()
                    };
                    convs[i].push(ChatMessage::model(answer.raw.clone()));
                    convs[i].push(ChatMessage::user(message));
                    traces[i].missed.push(missed);
                    next.push(i);
                }
                traces[i].answers.push(answer);
            }
            pending = next;
            round += 1;
        }
        Ok(texts
            .iter()
            .zip(traces)
            .map(|(text, trace)| {
                let items = if self.config.merge_answers {
                    merged(trace_items(&trace))
                } else {
                    trace
                        .answers
                        .last()
                        .map(|a| a.items.clone())
                        .unwrap_or_default()
                };
                (self.keywords(text, &items), trace)
            })
            .collect())
    }

    /// Dictionary terms found in `text` that `items` lack (empty without feedback). A term
    /// inside an answered item is not missed: `골관절염` covers `관절염`.
    fn missed(&self, text: &str, items: &[String]) -> Result<Vec<String>> {
        let Some(scanner) = &self.scanner else {
            return Ok(Vec::new());
        };
        if self.config.feedback_retries == 0 {
            return Ok(Vec::new());
        }
        let have: HashSet<String> = items.iter().map(|i| self.normalise(i).0).collect();
        let covers = |t: &str| have.contains(t) || items.iter().any(|i| i.contains(t));
        Ok(scanner
            .extract(text)?
            .into_iter()
            .map(|k| k.text)
            .filter(|t| !covers(t))
            .collect())
    }

    /// Generates answers for `prompts` in length-sorted batches.
    fn answer(&self, prompts: &[Vec<u32>], sources: &[&str]) -> Result<Vec<Answer>> {
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| prompts[i].len());
        let mut out: Vec<Option<Answer>> = vec![None; prompts.len()];
        let config = GenerationConfig {
            stop_tokens: self.stop_ids.clone(),
            ..GenerationConfig::greedy(self.config.max_new_tokens)
        };
        let generator = Generator::new(&self.model).with_tokenizer(&self.tokenizer);
        for chunk in order.chunks(self.config.batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let answers = match (&self.token_bytes, self.config.constrain) {
                (Some(bytes), Constrain::Json | Constrain::Extractive) => {
                    let mut constraints: Vec<JsonArrayConstraint> = chunk
                        .iter()
                        .map(|&i| {
                            let mode = if self.config.constrain == Constrain::Extractive {
                                OutputMode::Extractive {
                                    source: sources[i].to_string(),
                                }
                            } else {
                                OutputMode::Json
                            };
                            JsonArrayConstraint::new(bytes.clone(), mode, &self.stop_ids)
                        })
                        .collect();
                    let mut dyns: Vec<&mut dyn TokenConstraint> = constraints
                        .iter_mut()
                        .map(|c| c as &mut dyn TokenConstraint)
                        .collect();
                    generator.generate_batch_constrained(&batch, &config, &mut dyns, |_| {})?;
                    constraints
                        .iter()
                        .map(|c| Answer {
                            raw: c.json(),
                            items: c.strings(),
                            valid: true,
                        })
                        .collect::<Vec<_>>()
                }
                _ => generator
                    .generate_batch(&batch, &config, |_| {})?
                    .into_iter()
                    .map(|o| {
                        let raw = o.text.unwrap_or_default();
                        let parsed = parse_keyword_list(&raw);
                        Answer {
                            valid: parsed.strict_json && !parsed.truncated,
                            items: parsed.keywords,
                            raw,
                        }
                    })
                    .collect(),
            };
            for (&i, a) in chunk.iter().zip(answers) {
                out[i] = Some(a);
            }
        }
        out.into_iter()
            .map(|a| a.ok_or_else(|| Error::InvalidInput("a prompt got no answer".into())))
            .collect()
    }

    /// The dictionary form and category of an answer item: the item, or the item without its
    /// particles, as a term or alias; else the item as written.
    fn normalise(&self, item: &str) -> (String, Option<String>) {
        let item = item.trim();
        if let Some(d) = &self.dictionary {
            for candidate in [item, strip_particles(item)] {
                if let Some(e) = d.resolve(candidate) {
                    return (e.term.clone(), Some(e.category.name().to_owned()));
                }
            }
        }
        (item.to_owned(), None)
    }

    /// Keywords from answer items: dictionary forms, each once, with their spans in `text`; items
    /// without a letter or digit are dropped.
    fn keywords(&self, text: &str, items: &[String]) -> Vec<Keyword> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for item in items {
            // A keyword has a letter or digit: `][` or `...` from a confused model is not one.
            if !item.chars().any(char::is_alphanumeric) {
                continue;
            }
            let (term, category) = self.normalise(item);
            if !seen.insert(term.clone()) {
                continue;
            }
            let mut surfaces = vec![term.clone(), item.trim().to_owned()];
            if let Some(e) = self.dictionary.as_ref().and_then(|d| d.get(&term)) {
                surfaces.extend(e.aliases.iter().cloned());
            }
            out.push(Keyword {
                spans: spans(text, &surfaces),
                text: term,
                category,
            });
        }
        out
    }
}

/// Every answer's items in order.
fn trace_items(trace: &Trace) -> impl Iterator<Item = &String> {
    trace.answers.iter().flat_map(|a| a.items.iter())
}

/// Items, each once (trimmed), first seen first.
fn merged<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .map(|i| i.trim().to_string())
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// Non-overlapping occurrences of any of `surfaces` in `text` (longest first at a position), as
/// character spans in order.
fn spans(text: &str, surfaces: &[String]) -> Vec<Span> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for s in surfaces.iter().filter(|s| !s.is_empty()) {
        for (at, _) in text.match_indices(s.as_str()) {
            found.push((at, at + s.len()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = Vec::new();
    let mut end = 0;
    for (s, e) in found {
        if s < end {
            continue;
        }
        end = e;
        let start = text[..s].chars().count();
        out.push(Span {
            start,
            end: start + text[s..e].chars().count(),
        });
    }
    out
}

/// `["a","b"]`, non-ASCII unescaped (as the training data writes answers).
fn json_array(items: &[String]) -> String {
    serde_json::Value::Array(
        items
            .iter()
            .cloned()
            .map(serde_json::Value::String)
            .collect(),
    )
    .to_string()
}

/// The categories with example terms, one line each.
fn definitions(dictionary: &Dictionary, per_category: usize) -> String {
    let mut lines = vec!["키워드 종류와 예:".to_string()];
    for c in Category::ALL {
        let terms: Vec<&str> = dictionary
            .by_category(c)
            .take(per_category)
            .map(|e| e.term.as_str())
            .collect();
        if !terms.is_empty() {
            lines.push(format!("- {}: {}", category_label(c), terms.join(", ")));
        }
    }
    lines.join("\n")
}

impl KeywordExtractor for PromptExtractor {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn extract(&self, text: &str) -> Result<Vec<Keyword>> {
        let mut out = self.extract_batch(&[text])?;
        out.pop()
            .ok_or_else(|| Error::InvalidInput("empty batch".into()))
    }

    fn extract_batch(&self, texts: &[&str]) -> Result<Vec<Vec<Keyword>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .extract_traced(texts)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, labels: &[&str]) -> Example {
        Example {
            text: text.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn nearest_examples_share_words_and_skip_the_text_itself() {
        let pool = ExamplePool::new(vec![
            ex("연고를 상처에 바르세요.", &["연고"]),
            ex("해열제는 발열에 씁니다.", &["해열제", "발열"]),
            ex("파스를 어깨에 붙이세요.", &["파스"]),
            ex("연고는 하루 두 번 바릅니다.", &["연고"]),
        ]);
        let got: Vec<&str> = pool
            .nearest("이 연고는 하루 세 번 바릅니다.", 2)
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(
            got,
            ["연고는 하루 두 번 바릅니다.", "연고를 상처에 바르세요."]
        );
        let got = pool.nearest("파스를 어깨에 붙이세요.", 4);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|e| e.text != "파스를 어깨에 붙이세요."));
    }

    #[test]
    fn spans_are_characters_and_do_not_overlap() {
        let text = "임신부와 임산부, 해열제와 해열";
        let s = spans(text, &["임산부".into(), "임신부".into()]);
        assert_eq!(s, [Span { start: 0, end: 3 }, Span { start: 5, end: 8 }]);
        let s = spans(text, &["해열".into(), "해열제".into()]);
        assert_eq!(
            s,
            [Span { start: 10, end: 13 }, Span { start: 15, end: 17 }]
        );
    }

    #[test]
    fn definitions_list_every_category_present() {
        let d = definitions(Dictionary::bundled(), 2);
        assert!(
            d.starts_with("키워드 종류와 예:\n- 증상·효능: 진통, 해열\n"),
            "{d}"
        );
        assert_eq!(d.lines().count(), 1 + Category::ALL.len());
    }

    #[test]
    fn json_answers_are_compact_and_unescaped() {
        assert_eq!(
            json_array(&["진통".into(), "해열".into()]),
            r#"["진통","해열"]"#
        );
        assert_eq!(json_array(&[]), "[]");
    }
}
