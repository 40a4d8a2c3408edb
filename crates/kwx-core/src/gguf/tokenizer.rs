//! A `tokenizers::Tokenizer` built from a GGUF's `tokenizer.ggml.*` metadata alone, so that an
//! Ollama blob or a llama.cpp file needs no `tokenizer.json` beside it.
//!
//! Only SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`, what Gemma 1/2/3 GGUFs
//! hold) are supported. The result reproduces what Hugging Face's converter (`GemmaConverter` /
//! `SpmConverter` in `transformers/convert_slow_tokenizer.py`) writes into `tokenizer.json` for
//! the same SentencePiece model, so that both tokenize identically (checked token for token,
//! and on the whole serialized pipeline, against Gemma 3's `tokenizer.json` in
//! `tests/gguf_tokenizer.rs`):
//!
//! * **Vocabulary**: the GGUF tokens by id. llama.cpp's converter writes user-defined pieces
//!   with `▁` turned back into spaces (`"▁▁"` is stored as `"  "`); SentencePiece pieces never
//!   hold a literal space, so a space in a user-defined token is turned back into `▁`.
//! * **Merges**: `generate_merges` of transformers: every split of a piece into two pieces that
//!   are both in the vocabulary is a merge; per piece they are ordered by (left id, right id),
//!   pieces in id order, then the whole list is stably sorted by (score of the merged piece,
//!   length of the left piece, length of the right piece), descending, lengths counted in
//!   characters. The score is SentencePiece's: llama.cpp overwrites the score of control and
//!   user-defined pieces with -1000, but SentencePiece gives them 0, so they are ranked with 0.
//!   For Gemma 3 this reproduces the 514,906 merges of the published `tokenizer.json` exactly,
//!   in order.
//! * **Byte fallback** when the vocabulary has byte pieces (`<0x00>` … `<0xFF>`).
//! * **Normalizer** `Replace(" ", "▁")`, preceded by `Prepend("▁")` when
//!   `tokenizer.ggml.add_space_prefix` is true (SentencePiece's dummy prefix); **pre-tokenizer**
//!   `Split(" ", MergedWithPrevious)` without the dummy prefix (Gemma's; a no-op after the
//!   normalizer, kept so the pipeline matches the published file), none with it.
//! * **Added tokens** (not normalized): control, user-defined and unknown pieces, plus the
//!   BOS/EOS/UNK/PAD ids. See [`GgufVocab::to_tokenizer`] for which are `special`.
//! * **Post-processor** `TemplateProcessing` with `<bos>` (when `add_bos_token`) and `<eos>`
//!   (when `add_eos_token`), pairs as transformers' `update_post_processor` builds them.
//! * **Decoder** `Replace("▁", " ")`, `ByteFallback`, `Fuse` (and `Strip(" ", 1, 0)` with the
//!   dummy prefix).

use std::path::Path;

use rayon::prelude::*;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{
    NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence,
};
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{GgufFile, MetadataValue};
use crate::error::{Error, Result};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

/// llama.cpp's `llama_token_type` values as stored in `tokenizer.ggml.token_type`.
mod token_type {
    pub(super) const UNDEFINED: i32 = 0;
    pub(super) const NORMAL: i32 = 1;
    pub(super) const UNKNOWN: i32 = 2;
    pub(super) const CONTROL: i32 = 3;
    pub(super) const USER_DEFINED: i32 = 4;
    // 5 is UNUSED: kept in the vocabulary like a normal piece, as Hugging Face does.
    pub(super) const BYTE: i32 = 6;
}

/// SentencePiece's word-boundary marker.
const SPACE_MARKER: &str = "\u{2581}";

/// Where errors about a vocabulary built in code (not read from a file) point.
const MEMORY_PATH: &str = "<memory>";

/// The vocabulary stored in a GGUF (`tokenizer.ggml.*`), decoupled from the file.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"llama"` (SentencePiece) or `"gpt2"` (BPE with merges).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer family of BPE vocabularies.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the pieces by id, as llama.cpp stores them.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: one score per token (SentencePiece).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: one `llama_token_type` per token (1 normal, 2 unknown,
    /// 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"` merges (BPE).
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (llama.cpp's default when absent: true for SentencePiece).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (default false).
    pub add_eos: bool,
    /// `tokenizer.ggml.add_space_prefix` (llama.cpp's default when absent: true for
    /// SentencePiece, false otherwise).
    pub add_space_prefix: bool,
}

impl GgufVocab {
    /// Reads the `tokenizer.ggml.*` keys; missing or mistyped required keys → Error::GgufMetadata
    /// naming the key (and array index for a bad element).
    ///
    /// Required: `tokenizer.ggml.model` and `tokenizer.ggml.tokens`. A special-token id stored
    /// as a negative integer (llama.cpp's "none") reads as absent. Absent booleans take
    /// llama.cpp's defaults: `add_bos_token` and `add_space_prefix` true for `"llama"`, false
    /// otherwise; `add_eos_token` false.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.require_str(KEY_MODEL)?.to_string();
        let pre = optional_str(file, KEY_PRE)?;
        let tokens = string_array(file, KEY_TOKENS, file.require(KEY_TOKENS)?)?;
        let scores = match file.get(KEY_SCORES) {
            None => None,
            Some(v) => Some(array_elements(
                file,
                KEY_SCORES,
                v,
                ("a number", "numbers"),
                |e| e.as_f32(),
            )?),
        };
        let token_types = match file.get(KEY_TYPES) {
            None => None,
            Some(v) => Some(array_elements(
                file,
                KEY_TYPES,
                v,
                ("a 32-bit integer", "32-bit integers"),
                |e| e.as_i64().and_then(|x| i32::try_from(x).ok()),
            )?),
        };
        let merges = match file.get(KEY_MERGES) {
            None => None,
            Some(v) => Some(string_array(file, KEY_MERGES, v)?),
        };
        let is_spm = model == "llama";
        Ok(Self {
            pre,
            tokens,
            scores,
            token_types,
            merges,
            bos_id: optional_id(file, KEY_BOS)?,
            eos_id: optional_id(file, KEY_EOS)?,
            unk_id: optional_id(file, KEY_UNK)?,
            pad_id: optional_id(file, KEY_PAD)?,
            add_bos: optional_bool(file, KEY_ADD_BOS)?.unwrap_or(is_spm),
            add_eos: optional_bool(file, KEY_ADD_EOS)?.unwrap_or(false),
            add_space_prefix: optional_bool(file, KEY_ADD_SPACE_PREFIX)?.unwrap_or(is_spm),
            model,
        })
    }

    /// Builds the tokenizer. Errors (typed, crate::Error::GgufMetadata / Error::Tokenizer) for
    /// unsupported models (say which are supported), length mismatches between
    /// tokens/scores/types, out-of-range special ids.
    ///
    /// Added tokens: every control (3), user-defined (4) and unknown (2) piece, and the
    /// BOS/EOS/UNK/PAD ids, none of them normalized. Which are `special` (skipped by
    /// `decode(.., true)`) follows Hugging Face's Gemma files rather than llama.cpp's types:
    /// * control pieces are special, except the placeholders llama.cpp's converter turns into
    ///   control pieces although Hugging Face does not mark them special (`<unusedN>`,
    ///   `<mask>`, `<2mass>`, `[@BOS@]`, the `does_token_look_special` list of
    ///   `convert_hf_to_gguf.py`);
    /// * user-defined pieces are not special, except Gemma's delimiters `<start_of_…>` /
    ///   `<end_of_…>` (`<start_of_image>`, `<end_of_image>`), which the GGUF stores as
    ///   user-defined but Hugging Face marks special;
    /// * unknown pieces and the BOS/EOS/UNK/PAD ids are always special.
    ///
    /// Errors from a vocabulary built in code name the file `<memory>`; use
    /// [`tokenizer_from_gguf`] to get the file's path in them.
    pub fn to_tokenizer(&self) -> Result<Tokenizer> {
        self.build(Path::new(MEMORY_PATH))
    }

    fn build(&self, path: &Path) -> Result<Tokenizer> {
        let meta_err = |key: &str, message: String| Error::GgufMetadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let tok_err = |message: String| Error::Tokenizer {
            path: Some(path.to_path_buf()),
            message,
        };

        match self.model.as_str() {
            "llama" => {}
            "gpt2" => {
                return Err(meta_err(
                    KEY_MODEL,
                    "byte-level BPE vocabularies (`gpt2`) are not supported yet; kwx builds \
                     tokenizers for `llama` (SentencePiece, as in Gemma 1/2/3 GGUFs)"
                        .into(),
                ));
            }
            other => {
                return Err(meta_err(
                    KEY_MODEL,
                    format!(
                        "unsupported tokenizer model `{other}`; kwx builds tokenizers for \
                         `llama` (SentencePiece, as in Gemma 1/2/3 GGUFs)"
                    ),
                ));
            }
        }

        let n = self.tokens.len();
        if n == 0 {
            return Err(meta_err(KEY_TOKENS, "the vocabulary is empty".into()));
        }
        let n_u32 = u32::try_from(n).map_err(|_| {
            meta_err(
                KEY_TOKENS,
                format!("{n} tokens do not fit 32-bit token ids"),
            )
        })?;

        let scores = self.scores.as_deref().ok_or_else(|| {
            meta_err(
                KEY_SCORES,
                "missing: a SentencePiece (`llama`) vocabulary needs scores to rank its merges"
                    .into(),
            )
        })?;
        if scores.len() != n {
            return Err(meta_err(
                KEY_SCORES,
                format!("has {} entries but {KEY_TOKENS} has {n}", scores.len()),
            ));
        }
        if let Some(i) = scores.iter().position(|s| s.is_nan()) {
            return Err(meta_err(KEY_SCORES, format!("element {i} is NaN")));
        }
        let types: Vec<i32> = match &self.token_types {
            None => vec![token_type::NORMAL; n],
            Some(t) if t.len() != n => {
                return Err(meta_err(
                    KEY_TYPES,
                    format!("has {} entries but {KEY_TOKENS} has {n}", t.len()),
                ));
            }
            Some(t) => {
                if let Some(i) = t
                    .iter()
                    .position(|&ty| !(token_type::UNDEFINED..=token_type::BYTE).contains(&ty))
                {
                    return Err(meta_err(
                        KEY_TYPES,
                        format!("element {i} is {}, not a llama_token_type (0 to 6)", t[i]),
                    ));
                }
                t.clone()
            }
        };
        for (key, id) in [
            (KEY_BOS, self.bos_id),
            (KEY_EOS, self.eos_id),
            (KEY_UNK, self.unk_id),
            (KEY_PAD, self.pad_id),
        ] {
            if let Some(id) = id
                && id >= n_u32
            {
                return Err(meta_err(
                    key,
                    format!("token id {id} is out of range: the vocabulary has {n} tokens"),
                ));
            }
        }
        if self.add_bos && self.bos_id.is_none() {
            return Err(meta_err(
                KEY_BOS,
                format!("missing, but {KEY_ADD_BOS} asks for a BOS token"),
            ));
        }
        if self.add_eos && self.eos_id.is_none() {
            return Err(meta_err(
                KEY_EOS,
                format!("missing, but {KEY_ADD_EOS} asks for an EOS token"),
            ));
        }

        // Pieces as SentencePiece (and tokenizer.json) spell them.
        let pieces: Vec<String> = self
            .tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| {
                if ty == token_type::USER_DEFINED && t.contains(' ') {
                    t.replace(' ', SPACE_MARKER)
                } else {
                    t.clone()
                }
            })
            .collect();

        let mut vocab = Vocab::with_capacity(n);
        for (id, piece) in pieces.iter().enumerate() {
            // `id < n <= u32::MAX`, checked above.
            if let Some(first) = vocab.insert(piece.clone(), id as u32) {
                return Err(meta_err(
                    KEY_TOKENS,
                    format!("element {id} `{piece}` repeats element {first}"),
                ));
            }
        }

        // Ranking score: SentencePiece's 0 for the pieces whose score llama.cpp overwrote.
        let rank_scores: Vec<f32> = scores
            .iter()
            .zip(&types)
            .map(|(&s, &ty)| {
                if ty == token_type::CONTROL || ty == token_type::USER_DEFINED {
                    0.0
                } else {
                    s
                }
            })
            .collect();
        let merges = spm_merges(&pieces, &vocab, &rank_scores);

        let byte_fallback = types.contains(&token_type::BYTE)
            || (self.token_types.is_none()
                && (0..=255u8).all(|b| vocab.contains_key(&format!("<0x{b:02X}>"))));
        let mut bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(true)
            .byte_fallback(byte_fallback);
        if let Some(unk) = self.unk_id {
            bpe = bpe.unk_token(pieces[unk as usize].clone());
        } else if let Some(i) = types.iter().position(|&t| t == token_type::UNKNOWN) {
            bpe = bpe.unk_token(pieces[i].clone());
        }
        let bpe = bpe
            .build()
            .map_err(|e| tok_err(format!("building the BPE model: {e}")))?;

        let mut tokenizer = Tokenizer::new(bpe);
        let replace = Replace::new(" ", SPACE_MARKER)
            .map_err(|e| tok_err(format!("building the normalizer: {e}")))?;
        let normalizer: NormalizerWrapper = if self.add_space_prefix {
            NormalizerSequence::new(vec![
                Prepend::new(SPACE_MARKER.into()).into(),
                replace.into(),
            ])
            .into()
        } else {
            replace.into()
        };
        tokenizer
            .with_normalizer(Some(normalizer))
            .map_err(|e| tok_err(format!("setting the normalizer: {e}")))?;
        if !self.add_space_prefix {
            let split = Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false)
                .map_err(|e| tok_err(format!("building the pre-tokenizer: {e}")))?;
            tokenizer.with_pre_tokenizer(Some(split));
        }
        let unspace = Replace::new(SPACE_MARKER, " ")
            .map_err(|e| tok_err(format!("building the decoder: {e}")))?;
        let mut decoders: Vec<DecoderWrapper> = vec![
            unspace.into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ];
        if self.add_space_prefix {
            decoders.push(Strip::new(' ', 1, 0).into());
        }
        tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
        tokenizer.with_post_processor(Some(self.post_processor(&pieces).map_err(tok_err)?));

        let special_ids = [self.bos_id, self.eos_id, self.unk_id, self.pad_id];
        let added: Vec<AddedToken> = pieces
            .iter()
            .zip(&types)
            .enumerate()
            .filter_map(|(id, (piece, &ty))| {
                let declared = special_ids.contains(&Some(id as u32));
                let special = match ty {
                    _ if declared => true,
                    token_type::UNKNOWN => true,
                    token_type::CONTROL => !is_placeholder(piece),
                    token_type::USER_DEFINED => is_gemma_delimiter(piece),
                    _ => return None,
                };
                Some(AddedToken::from(piece.clone(), special).normalized(false))
            })
            .collect();
        tokenizer
            .add_tokens(added)
            .map_err(|e| tok_err(format!("adding the control and user-defined tokens: {e}")))?;
        Ok(tokenizer)
    }

    /// `TemplateProcessing` as transformers' `LlamaTokenizerFast.update_post_processor` builds
    /// it: `<bos>:0 $A:0 <eos>:0` and `… <bos>:1 $B:1 <eos>:1`, each special only when asked.
    fn post_processor(&self, pieces: &[String]) -> std::result::Result<TemplateProcessing, String> {
        let bos = self
            .bos_id
            .filter(|_| self.add_bos)
            .map(|id| (pieces[id as usize].clone(), id));
        let eos = self
            .eos_id
            .filter(|_| self.add_eos)
            .map(|id| (pieces[id as usize].clone(), id));
        let special = |token: &str, type_id: u32| serde_json::json!({ "SpecialToken": { "id": token, "type_id": type_id } });
        let sequence = |id: &str, type_id: u32| serde_json::json!({ "Sequence": { "id": id, "type_id": type_id } });
        let mut single = Vec::new();
        let mut pair = Vec::new();
        for (seq, type_id) in [("A", 0), ("B", 1)] {
            let template = if seq == "A" { &mut single } else { &mut pair };
            if let Some((token, _)) = &bos {
                template.push(special(token, type_id));
            }
            template.push(sequence(seq, type_id));
            if let Some((token, _)) = &eos {
                template.push(special(token, type_id));
            }
        }
        let pair: Vec<_> = single.iter().cloned().chain(pair).collect();
        let mut special_tokens = serde_json::Map::new();
        for (token, id) in bos.iter().chain(eos.iter()) {
            special_tokens.insert(
                token.clone(),
                serde_json::json!({ "id": token, "ids": [id], "tokens": [token] }),
            );
        }
        serde_json::from_value(serde_json::json!({
            "type": "TemplateProcessing",
            "single": single,
            "pair": pair,
            "special_tokens": special_tokens,
        }))
        .map_err(|e| format!("building the post-processor: {e}"))
    }
}

/// Builds the tokenizer stored in `file`'s metadata.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    GgufVocab::from_gguf(file)?.build(file.path())
}

/// Control pieces that llama.cpp's converter marks as control by their spelling
/// (`does_token_look_special`) although Hugging Face keeps them non-special: Gemma's
/// `<unusedN>` placeholders, `<mask>`, `<2mass>` and `[@BOS@]`.
fn is_placeholder(piece: &str) -> bool {
    matches!(piece, "<mask>" | "<2mass>" | "[@BOS@]")
        || (piece.starts_with("<unused") && piece.ends_with('>'))
}

/// Gemma's structural delimiters (`<start_of_image>`, `<end_of_image>`, …): special in Hugging
/// Face's files even where the GGUF stores them as user-defined pieces.
fn is_gemma_delimiter(piece: &str) -> bool {
    (piece.starts_with("<start_of_") || piece.starts_with("<end_of_")) && piece.ends_with('>')
}

/// The merges transformers' `generate_merges(vocab, vocab_scores)` derives from a SentencePiece
/// vocabulary (see the module documentation for the order).
fn spm_merges(pieces: &[String], vocab: &Vocab, scores: &[f32]) -> Vec<(String, String)> {
    // (merged id, left id, right id), pieces in id order, each piece's splits by (left, right).
    let per_piece: Vec<Vec<(u32, u32, u32)>> = pieces
        .par_iter()
        .enumerate()
        .map(|(id, piece)| {
            let mut local: Vec<(u32, u32, u32)> = piece
                .char_indices()
                .skip(1)
                .filter_map(|(at, _)| {
                    let left = vocab.get(&piece[..at])?;
                    let right = vocab.get(&piece[at..])?;
                    Some((id as u32, *left, *right))
                })
                .collect();
            local.sort_unstable_by_key(|&(_, l, r)| (l, r));
            local
        })
        .collect();
    let mut merges: Vec<(u32, u32, u32)> = per_piece.into_iter().flatten().collect();
    let char_len: Vec<u32> = pieces
        .par_iter()
        .map(|p| p.chars().count() as u32)
        .collect();
    // Stable, descending; `partial_cmp` keeps Python's -0.0 == 0.0 (scores hold no NaN).
    merges.par_sort_by(|&(m1, l1, r1), &(m2, l2, r2)| {
        scores[m2 as usize]
            .partial_cmp(&scores[m1 as usize])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| char_len[l2 as usize].cmp(&char_len[l1 as usize]))
            .then_with(|| char_len[r2 as usize].cmp(&char_len[r1 as usize]))
    });
    merges
        .into_par_iter()
        .map(|(_, l, r)| (pieces[l as usize].clone(), pieces[r as usize].clone()))
        .collect()
}

fn describe(v: &MetadataValue) -> String {
    match v {
        MetadataValue::Array(ty, values) => format!("an array of {} {ty:?}", values.len()),
        MetadataValue::String(s) if s.len() > 64 => "a long string".into(),
        other => format!("{other:?}"),
    }
}

/// The elements of an array value; `what` is the element kind, singular and plural
/// (`("a string", "strings")`).
fn array_elements<T>(
    file: &GgufFile,
    key: &str,
    value: &MetadataValue,
    what: (&str, &str),
    convert: impl Fn(&MetadataValue) -> Option<T>,
) -> Result<Vec<T>> {
    let (one, many) = what;
    let values = value.as_array().ok_or_else(|| {
        file.meta_error(
            key,
            format!("expected an array of {many}, found {}", describe(value)),
        )
    })?;
    values
        .iter()
        .enumerate()
        .map(|(i, e)| {
            convert(e).ok_or_else(|| {
                file.meta_error(
                    key,
                    format!("element {i}: expected {one}, found {}", describe(e)),
                )
            })
        })
        .collect()
}

fn string_array(file: &GgufFile, key: &str, value: &MetadataValue) -> Result<Vec<String>> {
    array_elements(file, key, value, ("a string", "strings"), |e| {
        e.as_str().map(str::to_string)
    })
}

fn optional_str(file: &GgufFile, key: &str) -> Result<Option<String>> {
    file.get(key)
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                file.meta_error(key, format!("expected a string, found {}", describe(v)))
            })
        })
        .transpose()
}

fn optional_bool(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    file.get(key)
        .map(|v| {
            v.as_bool().ok_or_else(|| {
                file.meta_error(key, format!("expected a bool, found {}", describe(v)))
            })
        })
        .transpose()
}

fn optional_id(file: &GgufFile, key: &str) -> Result<Option<u32>> {
    let Some(v) = file.get(key) else {
        return Ok(None);
    };
    match v.as_i64() {
        Some(x) if x < 0 => Ok(None),
        Some(x) => u32::try_from(x)
            .map(Some)
            .map_err(|_| file.meta_error(key, format!("token id {x} does not fit 32 bits"))),
        None => Err(file.meta_error(
            key,
            format!("expected an integer token id, found {}", describe(v)),
        )),
    }
}
