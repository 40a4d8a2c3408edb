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
//!   with `▁` turned into spaces (`"▁▁"` is stored as `"  "`), and llama.cpp matches them in the
//!   raw text. A user-defined piece made only of spaces is one of SentencePiece's whitespace
//!   pieces (Gemma's `▁▁` … `▁` × 31), which tokenizer.json spells with `▁` and keeps in the
//!   model's vocabulary, so its spaces are turned back into `▁`. Any other user-defined piece
//!   with a space (a term added to the tokenizer, such as `인슐린 글라진`) keeps its spaces: it
//!   is matched in the raw text, as llama.cpp and tokenizer.json's non-normalized added token
//!   match it.
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
//!
//! The inverse, [`GgufVocab::from_hf_tokenizer`], derives from a SentencePiece-style
//! `tokenizer.json` the vocabulary llama.cpp's converter would write (for the GGUF writer):
//! token types and the `-1000` scores of added tokens as `convert_hf_to_gguf.py` sets them, and
//! the scores of normal pieces from the rank of the merges that produce them.

use std::path::Path;

use rayon::prelude::*;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{
    NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence,
};
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Model, SplitDelimiterBehavior, Tokenizer};

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
    /// Kept in the vocabulary like a normal piece, as Hugging Face does.
    pub(super) const UNUSED: i32 = 5;
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

        // Pieces as tokenizer.json spells them: SentencePiece's whitespace pieces with `▁`,
        // added terms with their spaces (matched in the raw text).
        let pieces: Vec<String> = self
            .tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| {
                if ty == token_type::USER_DEFINED && !t.is_empty() && t.bytes().all(|b| b == b' ') {
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

// ---- the inverse: a GGUF vocabulary from a Hugging Face tokenizer.json ---------------------

/// The value of `tokenizer.ggml.pre` that llama.cpp's converter writes for SentencePiece
/// vocabularies (`_set_vocab_sentencepiece`).
const SPM_PRE: &str = "default";
/// The score llama.cpp's converter gives the pieces it takes from `added_tokens_decoder`.
const ADDED_TOKEN_SCORE: f32 = -1000.0;
/// The score of the `[PAD{id}]` placeholders llama.cpp's converter writes for ids without a
/// token (`_create_vocab_sentencepiece` fills the whole vocabulary with them first).
const PAD_SCORE: f32 = -10000.0;

impl GgufVocab {
    /// The GGUF vocabulary llama.cpp's converter would write for a SentencePiece-style BPE
    /// `tokenizer.json` (Gemma's: Metaspace/Replace normalizer, byte fallback), for a model with
    /// `vocab_size` embedding rows: the result has exactly `vocab_size` pieces. Ids ≥ vocab_size
    /// (tokenizer.json's extra added tokens such as Gemma 3's <image_soft_token>) are left out;
    /// an id < vocab_size with no token (rows added by `Gemma::resize_token_embeddings` with
    /// `pad_to_multiple_of`, or a gap in the ids) gets the converter's placeholder `[PAD{id}]`
    /// (type 5, unused; score -10000).
    ///
    /// llama.cpp's `convert_hf_to_gguf.py` (`_create_vocab_sentencepiece`) reads the
    /// SentencePiece model, then overrides every entry of tokenizer_config.json's
    /// `added_tokens_decoder`. Only tokenizer.json is at hand here, so:
    ///
    /// * **Added tokens** (tokenizer.json's `added_tokens`, which is what
    ///   `added_tokens_decoder` holds) become control pieces (type 3) when `special` or when
    ///   they look special to the converter (`does_token_look_special`: `<pad>`, `<mask>`,
    ///   `<2mass>`, `[@BOS@]`, `<|…|>`, `<｜…｜>`, `<unused…>`), else user-defined pieces
    ///   (type 4) spelled with `▁` turned into spaces, as the converter writes them
    ///   ([`GgufVocab::to_tokenizer`] turns the spaces of whitespace-only pieces back into `▁`
    ///   and keeps those of added terms). Their score is -1000. One exception reproduces
    ///   Gemma 3's published GGUFs: Gemma's media delimiters
    ///   (`<start_of_…>` / `<end_of_…>` other than the turn markers, i.e. `<start_of_image>` and
    ///   `<end_of_image>`) are user-defined although tokenizer.json marks them special — the
    ///   tokenizer_config.json the converter reads does not. [`GgufVocab::to_tokenizer`] maps
    ///   them back to special tokens.
    /// * **Byte pieces** `<0x00>` … `<0xFF>` (with byte fallback): type 6, score 0, as
    ///   SentencePiece stores them. The model's unknown token, when it is not an added token:
    ///   type 2, score 0 (an added `<unk>`, Gemma's case, is a control piece like the converter
    ///   makes it).
    /// * **Normal pieces** (type 1): SentencePiece's BPE trainer scores the pieces it learns
    ///   `-(order learned)` and the characters it must keep after them, continuing the count,
    ///   and Hugging Face's merges are ranked by those scores. So the normal pieces are ordered
    ///   by the rank of the first merge in tokenizer.json that produces them (pieces no merge
    ///   produces, i.e. single characters, after all others), ties by id, and the n-th gets
    ///   the score `-n`. For a tokenizer trained by Hugging Face's `BpeTrainer` this ranks the
    ///   learned pieces in merge order as well.
    ///
    ///   For Gemma 3 this reproduces all 236,249 learned pieces' scores (ids 494 to 236,742,
    ///   `-(id - 494)`), bit for bit. The 19,225 single characters (ids 236,743 to 255,967)
    ///   come out 31 higher than in the published GGUF (`-(id - 494)` instead of
    ///   `-(id - 463)`): the scores of Gemma's SentencePiece model skip 31 values between the
    ///   last learned piece (-236,248) and the first character (-236,280), a gap that no
    ///   tokenizer.json field records. No tokenizer reads those scores: a single character is
    ///   never the concatenation of two pieces, so it is never a merge's result, neither in
    ///   SentencePiece/llama.cpp nor in the merges [`GgufVocab::to_tokenizer`] derives, which
    ///   are tokenizer.json's, in order.
    ///
    ///   A GGUF `llama` vocabulary has no merges list: llama.cpp (and
    ///   [`GgufVocab::to_tokenizer`]) merge any two adjacent pieces whose concatenation is a
    ///   piece, best score first, whereas a trained BPE applies only its listed merges. For
    ///   SentencePiece-derived merges (Gemma's) the two agree; for a `BpeTrainer` vocabulary a
    ///   piece with a second split gives extra merges (the 512-id test fixture gets 161 for its
    ///   159: `is▁` = `is` + `▁` besides the trained `i` + `s▁`, and `ce▁`), which change an
    ///   encoding only where the trained merges leave both halves unmerged next to each other
    ///   (not the case there: its corpus encodes identically).
    /// * **Special ids**: BOS is the special token the post-processor (`TemplateProcessing`)
    ///   puts first, else `<bos>` or `<s>`; EOS the one it puts last, else `<eos>` or `</s>`;
    ///   UNK the BPE model's `unk_token`, else `<unk>`; PAD the padding token when padding is
    ///   configured, else `<pad>`. Ids ≥ `vocab_size` are left out.
    /// * **Flags**: `add_bos` / `add_eos` when the post-processor's single-sequence template
    ///   starts / ends with a special token; `add_space_prefix` when the normalizer prepends `▁`
    ///   or a `Metaspace` pre-tokenizer prepends it (`prepend_scheme` `always` or `first`).
    /// * **Placeholders**: `convert_hf_to_gguf.py`'s `_create_vocab_sentencepiece` starts from
    ///   `vocab_size` pieces `[PAD{id}]` (score -10000, type unused) and overwrites those the
    ///   tokenizer has, so an id without a token keeps its placeholder, numbered by its id
    ///   (`[PAD262150]`). (The `[PAD1]`, `[PAD2]`, … branch at the function's end, score -1000,
    ///   never runs: the list already has `vocab_size` entries.)
    /// * `model` is `"llama"`, `pre` is `"default"` (what the converter writes for
    ///   SentencePiece), `merges` is absent.
    ///
    /// Errors (`Error::Tokenizer` without a path) for a model other than BPE (WordPiece,
    /// WordLevel, Unigram), for a byte-level (GPT-2 style) BPE, and for a BPE that does not
    /// spell spaces as `▁` (no `Replace(" ", "▁")` normalizer, no `Metaspace` pre-tokenizer) or
    /// uses a continuing-subword prefix or end-of-word suffix; `Error::GgufMetadata` (path
    /// `<memory>`, key `tokenizer.ggml.tokens`) for a zero `vocab_size`.
    pub fn from_hf_tokenizer(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Self> {
        let tok_err = |message: String| Error::Tokenizer {
            path: None,
            message,
        };
        let meta_err = |key: &str, message: String| Error::GgufMetadata {
            path: MEMORY_PATH.into(),
            key: key.to_string(),
            message,
        };

        let bpe = match tokenizer.get_model() {
            ModelWrapper::BPE(bpe) => bpe,
            other => {
                let kind = match other {
                    ModelWrapper::WordPiece(_) => "WordPiece",
                    ModelWrapper::WordLevel(_) => "WordLevel",
                    ModelWrapper::Unigram(_) => "Unigram",
                    ModelWrapper::BPE(_) => "BPE",
                };
                return Err(tok_err(format!(
                    "the tokenizer's model is {kind}; a GGUF vocabulary can only be derived \
                     from a BPE model in the SentencePiece style (pieces with `▁` for spaces, \
                     byte fallback), such as Gemma's tokenizer.json"
                )));
            }
        };
        let json = |part: std::result::Result<serde_json::Value, serde_json::Error>| {
            part.map_err(|e| tok_err(format!("inspecting the tokenizer pipeline: {e}")))
        };
        let normalizer = json(serde_json::to_value(tokenizer.get_normalizer()))?;
        let pre_tokenizer = json(serde_json::to_value(tokenizer.get_pre_tokenizer()))?;
        let decoder = json(serde_json::to_value(tokenizer.get_decoder()))?;
        let post_processor = json(serde_json::to_value(tokenizer.get_post_processor()))?;

        if [&normalizer, &pre_tokenizer, &decoder, &post_processor]
            .iter()
            .any(|v| any_component(v, &|c| c.get("type").is_some_and(|t| t == "ByteLevel")))
        {
            return Err(tok_err(
                "the tokenizer is a byte-level BPE (GPT-2 style, `ByteLevel` pre-tokenizer or \
                 decoder), not SentencePiece-like: its pieces spell bytes as printable \
                 characters (`Ġ` for a space) and its merges cannot be derived from scores, so \
                 llama.cpp stores it as a `gpt2` vocabulary with its merges and a pre-tokenizer \
                 regex, which kwx does not write; only SentencePiece-style BPE (`▁` for spaces, \
                 byte fallback, as in Gemma's tokenizer.json) is supported"
                    .into(),
            ));
        }
        if bpe.continuing_subword_prefix.is_some() || bpe.end_of_word_suffix.is_some() {
            return Err(tok_err(
                "the BPE model uses a continuing-subword prefix or an end-of-word suffix, which \
                 SentencePiece-style vocabularies (`llama` in GGUF) do not have"
                    .into(),
            ));
        }
        let replaces_spaces = any_component(&normalizer, &|c| {
            c.get("type").is_some_and(|t| t == "Replace")
                && c.get("pattern")
                    .and_then(|p| p.get("String"))
                    .is_some_and(|s| s == " ")
                && c.get("content").is_some_and(|s| s == SPACE_MARKER)
        });
        let metaspace = |c: &serde_json::Map<String, serde_json::Value>| {
            c.get("type").is_some_and(|t| t == "Metaspace")
                && c.get("replacement").is_none_or(|r| r == SPACE_MARKER)
        };
        if !replaces_spaces && !any_component(&pre_tokenizer, &metaspace) {
            return Err(tok_err(
                "the tokenizer is not SentencePiece-like: neither a `Replace(\" \", \"▁\")` \
                 normalizer nor a `Metaspace` pre-tokenizer turns spaces into `▁`, so its \
                 pieces cannot be stored as a `llama` (SentencePiece) GGUF vocabulary"
                    .into(),
            ));
        }
        let add_space_prefix = any_component(&normalizer, &|c| {
            c.get("type").is_some_and(|t| t == "Prepend")
                && c.get("prepend").is_some_and(|p| p == SPACE_MARKER)
        }) || any_component(&pre_tokenizer, &|c| {
            metaspace(c)
                && (c
                    .get("prepend_scheme")
                    .is_some_and(|s| s == "always" || s == "first")
                    || c.get("add_prefix_space")
                        .and_then(serde_json::Value::as_bool)
                        == Some(true))
        });

        if vocab_size == 0 {
            return Err(meta_err(
                KEY_TOKENS,
                "the model has no embedding rows (vocab_size 0)".into(),
            ));
        }
        let n = u32::try_from(vocab_size).map_err(|_| {
            meta_err(
                KEY_TOKENS,
                format!("vocab_size {vocab_size} does not fit 32-bit token ids"),
            )
        })?;

        let added = tokenizer.get_added_tokens_decoder();
        let byte_fallback = bpe.byte_fallback;
        let unk_piece = bpe.unk_token.as_deref();
        let mut tokens = Vec::with_capacity(vocab_size);
        let mut scores = vec![0.0f32; vocab_size];
        let mut token_types = Vec::with_capacity(vocab_size);
        for id in 0..n {
            let (token, ty) = if let Some(a) = added.get(&id) {
                scores[id as usize] = ADDED_TOKEN_SCORE;
                let control =
                    (a.special && !is_media_delimiter(&a.content)) || looks_special(&a.content);
                if control {
                    (a.content.clone(), token_type::CONTROL)
                } else {
                    (
                        a.content.replace(SPACE_MARKER, " "),
                        token_type::USER_DEFINED,
                    )
                }
            } else if let Some(piece) = bpe.id_to_token(id) {
                let ty = if byte_fallback && is_byte_piece(&piece) {
                    token_type::BYTE
                } else if unk_piece == Some(piece.as_str()) {
                    token_type::UNKNOWN
                } else {
                    token_type::NORMAL
                };
                (piece, ty)
            } else {
                scores[id as usize] = PAD_SCORE;
                (format!("[PAD{id}]"), token_type::UNUSED)
            };
            tokens.push(token);
            token_types.push(ty);
        }

        // Normal pieces by the rank of the first merge producing them, then by id.
        let merges = bpe_merges(tokenizer.get_model()).map_err(tok_err)?;
        let mut first_merge = vec![u32::MAX; vocab_size];
        for (rank, (left, right)) in merges.iter().enumerate() {
            let merged = format!("{left}{right}");
            if let Some(id) = bpe.token_to_id(&merged)
                && let Some(slot) = first_merge.get_mut(id as usize)
                && *slot == u32::MAX
            {
                *slot = u32::try_from(rank).unwrap_or(u32::MAX - 1);
            }
        }
        let mut normal: Vec<u32> = (0..n)
            .filter(|&id| token_types[id as usize] == token_type::NORMAL)
            .collect();
        normal.sort_unstable_by_key(|&id| (first_merge[id as usize], id));
        for (position, &id) in normal.iter().enumerate() {
            // Positions stay below 2^24: exact in f32. `-(0.0)` is -0.0, as SentencePiece has it.
            scores[id as usize] = -(position as f32);
        }

        // Special ids.
        let (template_first, template_last) = template_ends(&post_processor);
        let lookup = |piece: &str| tokenizer.token_to_id(piece).filter(|&id| id < n);
        let conventional = |names: &[&str]| names.iter().find_map(|name| lookup(name));
        let add_bos = template_first.as_deref().and_then(lookup).is_some();
        let add_eos = template_last.as_deref().and_then(lookup).is_some();
        let bos_id = template_first
            .as_deref()
            .and_then(lookup)
            .or_else(|| conventional(&["<bos>", "<s>"]));
        let eos_id = template_last
            .as_deref()
            .and_then(lookup)
            .or_else(|| conventional(&["<eos>", "</s>"]));
        let unk_id = unk_piece
            .and_then(lookup)
            .or_else(|| conventional(&["<unk>"]));
        let pad_id = tokenizer
            .get_padding()
            .and_then(|p| lookup(&p.pad_token))
            .or_else(|| conventional(&["<pad>"]));

        Ok(Self {
            model: "llama".into(),
            pre: Some(SPM_PRE.into()),
            tokens,
            scores: Some(scores),
            token_types: Some(token_types),
            merges: None,
            bos_id,
            eos_id,
            unk_id,
            pad_id,
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }
}

/// Whether `value` (a serialized pipeline component) or any component nested in it (through
/// `Sequence`s) satisfies `pred`.
fn any_component(
    value: &serde_json::Value,
    pred: &dyn Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) -> bool {
    match value {
        serde_json::Value::Object(map) => pred(map) || map.values().any(|v| any_component(v, pred)),
        serde_json::Value::Array(items) => items.iter().any(|v| any_component(v, pred)),
        _ => false,
    }
}

/// The special tokens a serialized post-processor's single-sequence template puts before and
/// after the sequence (`TemplateProcessing`, alone or in a `Sequence` of processors).
fn template_ends(post_processor: &serde_json::Value) -> (Option<String>, Option<String>) {
    let template = if post_processor
        .get("type")
        .is_some_and(|t| t == "TemplateProcessing")
    {
        Some(post_processor)
    } else {
        post_processor
            .get("processors")
            .and_then(|p| p.as_array())
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.get("type").is_some_and(|t| t == "TemplateProcessing"))
            })
    };
    let Some(single) = template
        .and_then(|t| t.get("single"))
        .and_then(|s| s.as_array())
    else {
        return (None, None);
    };
    let special = |piece: Option<&serde_json::Value>| {
        piece
            .and_then(|p| p.get("SpecialToken"))
            .and_then(|s| s.get("id"))
            .and_then(|id| id.as_str())
            .map(str::to_string)
    };
    (special(single.first()), special(single.last()))
}

/// The merges of a BPE model in rank order (the tokenizers crate keeps them private; its
/// serialization lists them by rank).
fn bpe_merges(model: &ModelWrapper) -> std::result::Result<Vec<(String, String)>, String> {
    #[derive(serde::Deserialize)]
    struct Merges {
        merges: Vec<(String, String)>,
    }
    let text = serde_json::to_string(model).map_err(|e| format!("reading the merges: {e}"))?;
    serde_json::from_str::<Merges>(&text)
        .map(|m| m.merges)
        .map_err(|e| format!("reading the merges: {e}"))
}

/// `does_token_look_special` of llama.cpp's `convert_hf_to_gguf.py`: added tokens it makes
/// control pieces whatever their `special` flag says.
fn looks_special(piece: &str) -> bool {
    matches!(piece, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (piece.starts_with("<|") && piece.ends_with("|>"))
        || (piece.starts_with("<｜") && piece.ends_with("｜>"))
        || (piece.starts_with("<unused") && piece.ends_with('>'))
}

/// Gemma's media delimiters (`<start_of_image>`, `<end_of_image>`): the Gemma delimiters other
/// than the turn markers, user-defined in Gemma's GGUFs although special in tokenizer.json.
fn is_media_delimiter(piece: &str) -> bool {
    is_gemma_delimiter(piece) && !matches!(piece, "<start_of_turn>" | "<end_of_turn>")
}

/// SentencePiece's byte pieces: `<0x00>` … `<0xFF>`, upper-case hex.
fn is_byte_piece(piece: &str) -> bool {
    let b = piece.as_bytes();
    b.len() == 6
        && b.starts_with(b"<0x")
        && b[5] == b'>'
        && b[3..5]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
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
