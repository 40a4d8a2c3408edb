//! Text generation: KV-cached decoding with greedy search or sampling (temperature, top-k,
//! top-p, repetition penalty), stop tokens and strings, streaming, and left-padded batches.
//!
//! Logit processing follows transformers' `generation/logits_process.py` in its default order:
//! `RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`, `TopKLogitsWarper`,
//! `TopPLogitsWarper`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::model::Gemma;
use crate::tokenizer::GemmaTokenizer;

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// 0 means greedy; otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the k most likely tokens when sampling.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p when sampling.
    pub top_p: Option<f32>,
    /// > 1 discourages tokens already in the prompt or output (1 disables).
    pub repetition_penalty: f32,
    /// Token ids that end generation (besides the model's eos ids when `stop_at_eos`).
    pub stop_tokens: Vec<u32>,
    /// Whether the model's `eos_token_ids` end generation.
    pub stop_at_eos: bool,
    /// Texts that end generation; the output text is cut before them. Needs a tokenizer.
    pub stop_strings: Vec<String>,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self::greedy(64)
    }
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            stop_tokens: Vec::new(),
            stop_at_eos: true,
            stop_strings: Vec::new(),
            seed: 0,
        }
    }

    /// Sampling at `temperature`.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    /// Top-k filtering.
    #[must_use]
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Nucleus (top-p) filtering.
    #[must_use]
    pub fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Repetition penalty (transformers' CTRL-style: divide positive logits, multiply negative).
    #[must_use]
    pub fn with_repetition_penalty(mut self, penalty: f32) -> Self {
        self.repetition_penalty = penalty;
        self
    }

    /// Extra stop token.
    #[must_use]
    pub fn with_stop_token(mut self, id: u32) -> Self {
        self.stop_tokens.push(id);
        self
    }

    /// Stop string.
    #[must_use]
    pub fn with_stop_string(mut self, s: impl Into<String>) -> Self {
        self.stop_strings.push(s.into());
        self
    }

    /// Whether the model's eos ids stop generation.
    #[must_use]
    pub fn with_stop_at_eos(mut self, stop: bool) -> Self {
        self.stop_at_eos = stop;
        self
    }

    /// Sampler seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
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
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", "must be finite and >= 0");
        }
        if self.top_k == Some(0) {
            return bad("top_k", "must be at least 1");
        }
        if matches!(self.top_p, Some(p) if !(p > 0.0 && p <= 1.0)) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", "must be finite and > 0");
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return bad("stop_strings", "an empty stop string would stop at once");
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A stop or eos token was produced (it is not part of the output).
    Token(u32),
    /// A stop string appeared (the text is cut before it).
    String(String),
    /// `max_new_tokens` was reached.
    MaxTokens,
}

/// The result of generating from one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    /// Generated token ids, without the stop token.
    pub tokens: Vec<u32>,
    /// Decoded text of `tokens` (cut at a stop string), when a tokenizer was given.
    pub text: Option<String>,
    /// Why it ended.
    pub stop: StopReason,
}

/// One streamed token.
#[derive(Debug, Clone, Copy)]
pub struct StreamEvent<'a> {
    /// Which prompt of the batch (0 for single generation).
    pub row: usize,
    /// The token id.
    pub token: u32,
    /// Text completed by this token (may be empty while a multi-byte character is incomplete,
    /// or when no tokenizer was given).
    pub text: &'a str,
}

/// Runs generation on a model, optionally decoding text with a tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct Generator<'a> {
    model: &'a Gemma,
    tokenizer: Option<&'a GemmaTokenizer>,
}

/// Restricts which tokens a row may produce next: grammars (a JSON array of strings), extractive
/// output, or any rule decided on token ids. One constraint per row, owned by the caller, who
/// reads its final state after generation.
pub trait TokenConstraint {
    /// Sets the logits of tokens that may not come next to `f32::NEG_INFINITY`. Stop tokens are
    /// ordinary ids here: a constraint that must not end yet masks them too. At least one token
    /// must stay allowed.
    fn mask(&mut self, logits: &mut [f32]) -> Result<()>;

    /// Records the token the generator chose (always one `mask` allowed).
    fn advance(&mut self, token: u32) -> Result<()>;
}

struct RowState {
    prompt_and_output: Vec<u32>,
    output: Vec<u32>,
    text: String,
    done: Option<StopReason>,
}

impl<'a> Generator<'a> {
    /// A generator over `model`.
    pub fn new(model: &'a Gemma) -> Self {
        Self {
            model,
            tokenizer: None,
        }
    }

    /// Decode text (needed for stop strings and text streaming).
    #[must_use]
    pub fn with_tokenizer(mut self, tokenizer: &'a GemmaTokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// Generates a continuation of `prompt`, calling `on_token` for each new token.
    pub fn generate(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        on_token: impl FnMut(StreamEvent<'_>),
    ) -> Result<GenerationOutput> {
        let mut out = self.generate_batch(&[prompt.to_vec()], config, on_token)?;
        out.pop()
            .ok_or_else(|| Error::InvalidInput("empty batch".into()))
    }

    /// Generates continuations of several prompts at once. Prompts are left-padded to a common
    /// length and padding is masked, so each row yields the tokens it would yield alone
    /// (exactly so for greedy decoding).
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        on_token: impl FnMut(StreamEvent<'_>),
    ) -> Result<Vec<GenerationOutput>> {
        self.generate_batch_constrained(prompts, config, &mut [], on_token)
    }

    /// [`Self::generate_batch`] with one [`TokenConstraint`] per prompt (or none: an empty
    /// slice). Each step masks the row's logits with its constraint before the repetition
    /// penalty and sampling, and tells the constraint the chosen token (stop tokens included).
    pub fn generate_batch_constrained(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        constraints: &mut [&mut dyn TokenConstraint],
        mut on_token: impl FnMut(StreamEvent<'_>),
    ) -> Result<Vec<GenerationOutput>> {
        config.validate()?;
        if !constraints.is_empty() && constraints.len() != prompts.len() {
            return Err(Error::InvalidInput(format!(
                "{} constraints for {} prompts: give one per prompt or none",
                constraints.len(),
                prompts.len()
            )));
        }
        if !config.stop_strings.is_empty() && self.tokenizer.is_none() {
            return Err(Error::InvalidOption {
                option: "stop_strings",
                message: "stop strings need a tokenizer (Generator::with_tokenizer)".into(),
            });
        }
        if prompts.is_empty() {
            return Err(Error::InvalidInput("no prompts".into()));
        }
        if let Some(row) = prompts.iter().position(Vec::is_empty) {
            return Err(Error::InvalidInput(format!("prompt {row} is empty")));
        }
        for p in prompts {
            self.model.check_ids(p)?;
        }
        let cfg = self.model.config();
        let mut stops: Vec<u32> = config.stop_tokens.clone();
        if config.stop_at_eos {
            stops.extend(&cfg.eos_token_ids);
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut rows: Vec<RowState> = prompts
            .iter()
            .map(|p| RowState {
                prompt_and_output: p.clone(),
                output: Vec::new(),
                text: String::new(),
                done: None,
            })
            .collect();
        if config.max_new_tokens == 0 {
            return Ok(rows
                .into_iter()
                .map(|r| finish(r, StopReason::MaxTokens))
                .collect());
        }

        // Prefill: left-pad to the longest prompt.
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut tokens = Vec::with_capacity(prompts.len());
        let mut valid = Vec::with_capacity(prompts.len() * longest);
        for p in prompts {
            let pad = longest - p.len();
            let mut row = vec![cfg.pad_token_id; pad];
            row.extend_from_slice(p);
            tokens.push(row);
            valid.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
        }
        let mut cache = self.model.new_cache();
        let any_pad = valid.iter().any(|v| !v);
        let mut hidden =
            self.model
                .forward_hidden(&tokens, any_pad.then_some(valid.as_slice()), &mut cache)?;
        // Cache row i holds batch row active[i].
        let mut active: Vec<usize> = (0..prompts.len()).collect();
        let vocab = cfg.vocab_size;

        for step in 0..config.max_new_tokens {
            let seq = hidden.dims()[1];
            let logits = self.model.project(hidden.narrow(1, seq - 1, 1));
            let logits: Vec<f32> = logits
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Device(format!("{e:?}")))?;
            let mut next = Vec::with_capacity(active.len());
            let mut keep = Vec::with_capacity(active.len());
            for (i, &row) in active.iter().enumerate() {
                let mut row_logits = logits[i * vocab..(i + 1) * vocab].to_vec();
                if let Some(c) = constraints.get_mut(row) {
                    c.mask(&mut row_logits)?;
                    if row_logits.iter().all(|l| *l == f32::NEG_INFINITY) {
                        return Err(Error::InvalidInput(format!(
                            "the constraint of row {row} allowed no token at step {step}"
                        )));
                    }
                }
                let token = sample(
                    &mut row_logits,
                    &rows[row].prompt_and_output,
                    config,
                    &mut rng,
                );
                if let Some(c) = constraints.get_mut(row) {
                    c.advance(token)?;
                }
                let state = &mut rows[row];
                if stops.contains(&token) {
                    state.done = Some(StopReason::Token(token));
                    continue;
                }
                state.output.push(token);
                state.prompt_and_output.push(token);
                let delta = match self.tokenizer {
                    Some(tok) => {
                        let text = tok.decode_raw(&state.output)?;
                        let delta = text_delta(&state.text, &text);
                        if delta.is_some() {
                            state.text = text;
                        }
                        delta.unwrap_or_default()
                    }
                    None => String::new(),
                };
                on_token(StreamEvent {
                    row,
                    token,
                    text: &delta,
                });
                if let Some(s) = config
                    .stop_strings
                    .iter()
                    .find(|s| state.text.contains(s.as_str()))
                {
                    state.done = Some(StopReason::String(s.clone()));
                    continue;
                }
                if state.output.len() >= config.max_new_tokens {
                    state.done = Some(StopReason::MaxTokens);
                    continue;
                }
                keep.push(i);
                next.push(vec![token]);
            }
            if keep.is_empty() {
                break;
            }
            cache.retain_rows(&keep);
            active = keep.iter().map(|&i| active[i]).collect();
            hidden = self.model.forward_hidden(&next, None, &mut cache)?;
        }

        let tokenizer = self.tokenizer;
        rows.into_iter()
            .map(|mut r| {
                let stop = r.done.take().unwrap_or(StopReason::MaxTokens);
                let mut out = finish(r, stop);
                if let Some(tok) = tokenizer {
                    let mut text = tok.decode(&out.tokens)?;
                    if let StopReason::String(s) = &out.stop
                        && let Some(at) = text.find(s.as_str())
                    {
                        text.truncate(at);
                    }
                    out.text = Some(text);
                }
                Ok(out)
            })
            .collect()
    }
}

fn finish(row: RowState, stop: StopReason) -> GenerationOutput {
    GenerationOutput {
        tokens: row.output,
        text: None,
        stop,
    }
}

/// The new text since `old`, or `None` while the tail is an incomplete UTF-8 sequence.
fn text_delta(old: &str, new: &str) -> Option<String> {
    if new.ends_with('\u{FFFD}') {
        return None;
    }
    Some(match new.strip_prefix(old) {
        Some(rest) => rest.to_string(),
        None => new.to_string(),
    })
}

/// Picks the next token from one row of logits.
pub fn sample(
    logits: &mut [f32],
    seen: &[u32],
    config: &GenerationConfig,
    rng: &mut impl Rng,
) -> u32 {
    if config.repetition_penalty != 1.0 {
        let mut seen = seen.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &t in &seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l < 0.0 {
                    *l * config.repetition_penalty
                } else {
                    *l / config.repetition_penalty
                };
            }
        }
    }
    if config.temperature == 0.0 {
        return argmax(logits);
    }
    for l in logits.iter_mut() {
        *l /= config.temperature;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let mut keep = order.len();
    if let Some(k) = config.top_k {
        keep = keep.min(k);
    }
    let max = logits[order[0]];
    let mut probs: Vec<f32> = order[..keep]
        .iter()
        .map(|&i| (logits[i] - max).exp())
        .collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = config.top_p {
        // Keep the most likely tokens until their mass reaches top_p (at least one).
        let mut mass = 0.0;
        let mut n = 0;
        for p in &probs {
            n += 1;
            mass += p;
            if mass >= top_p {
                break;
            }
        }
        probs.truncate(n.max(1));
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let r: f32 = rng.random();
    let mut acc = 0.0;
    for (p, &i) in probs.iter().zip(&order) {
        acc += p;
        if r < acc {
            return i as u32;
        }
    }
    order[probs.len() - 1] as u32
}

/// Index of the first maximum (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let mut logits = vec![2.0, -2.0, 1.0];
        let cfg = GenerationConfig::greedy(1).with_repetition_penalty(2.0);
        let t = sample(&mut logits, &[0, 1], &cfg, &mut StdRng::seed_from_u64(0));
        assert_eq!(logits, vec![1.0, -4.0, 1.0]);
        assert_eq!(t, 0, "first maximum wins ties, as torch.argmax");
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let cfg = GenerationConfig::greedy(1)
            .with_temperature(1.0)
            .with_top_k(1);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            assert_eq!(sample(&mut [0.1, 3.0, 2.9], &[], &cfg, &mut rng), 1);
        }
        // p(0) ≈ 0.696, p(1) ≈ 0.256: top_p 0.6 keeps only token 0, 0.8 keeps both.
        let probs = [2.0f32, 1.0, -1.0, -2.0];
        let cfg = GenerationConfig::greedy(1)
            .with_temperature(1.0)
            .with_top_p(0.6);
        for _ in 0..50 {
            assert_eq!(sample(&mut probs.to_vec(), &[], &cfg, &mut rng), 0);
        }
        let cfg = cfg.with_top_p(0.8);
        let mut counts = [0usize; 4];
        for _ in 0..2000 {
            counts[sample(&mut probs.to_vec(), &[], &cfg, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0);
        let frac = counts[1] as f64 / 2000.0;
        assert!(
            (frac - 0.269).abs() < 0.04,
            "renormalised p(1) = 0.269, got {frac}"
        );
    }

    #[test]
    fn temperature_sampling_matches_softmax_frequencies() {
        let cfg = GenerationConfig::greedy(1)
            .with_temperature(2.0)
            .with_seed(3);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let logits = [2.0f32, 0.0];
        let mut hits = 0;
        for _ in 0..4000 {
            hits += (sample(&mut logits.to_vec(), &[], &cfg, &mut rng) == 0) as usize;
        }
        let expected = 1.0 / (1.0 + (-1.0f64).exp()); // softmax([1, 0])[0]
        assert!((hits as f64 / 4000.0 - expected).abs() < 0.03);
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert!(
            GenerationConfig::greedy(1)
                .with_top_p(0.0)
                .validate()
                .is_err()
        );
        assert!(
            GenerationConfig::greedy(1)
                .with_top_k(0)
                .validate()
                .is_err()
        );
        assert!(
            GenerationConfig::greedy(1)
                .with_temperature(-1.0)
                .validate()
                .is_err()
        );
        assert!(
            GenerationConfig::greedy(1)
                .with_stop_string("")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn text_delta_waits_for_complete_characters() {
        assert_eq!(text_delta("ab", "ab\u{FFFD}"), None);
        assert_eq!(text_delta("ab", "abc").as_deref(), Some("c"));
    }
}
