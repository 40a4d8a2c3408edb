//! The Gemma tokenizer (a Hugging Face `tokenizer.json` through the `tokenizers` crate) and the
//! Gemma chat template.
//!
//! The template is Gemma's `chat_template` from `tokenizer_config.json`: a system message is
//! prepended to the first user turn, `assistant` is spelled `model`, turns must alternate, and
//! content is trimmed.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions, folded into the first user turn.
    System,
    /// The user.
    User,
    /// The model (`assistant` in OpenAI-style APIs, `model` in Gemma's template).
    Model,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The speaker.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    /// A model message.
    pub fn model(content: impl Into<String>) -> Self {
        Self {
            role: Role::Model,
            content: content.into(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
}

/// Renders a conversation with Gemma's chat template, ending with the model's turn header when
/// `add_generation_prompt` is set.
pub fn apply_chat_template(
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String> {
    let mut out = String::from("<bos>");
    let (prefix, rest) = match messages.first() {
        Some(m) if m.role == Role::System => (format!("{}\n\n", m.content), &messages[1..]),
        _ => (String::new(), messages),
    };
    let offset = messages.len() - rest.len();
    for (i, m) in rest.iter().enumerate() {
        let expected = if i % 2 == 0 { Role::User } else { Role::Model };
        if m.role != expected {
            return Err(Error::Chat {
                index: i + offset,
                message: format!(
                    "expected a {expected:?} message: roles must alternate user/model (a system message may only come first)"
                ),
            });
        }
        let role = if m.role == Role::User {
            "user"
        } else {
            "model"
        };
        out.push_str("<start_of_turn>");
        out.push_str(role);
        out.push('\n');
        if i == 0 {
            out.push_str(&prefix);
        }
        out.push_str(m.content.trim());
        out.push_str("<end_of_turn>\n");
    }
    if add_generation_prompt {
        out.push_str("<start_of_turn>model\n");
    }
    Ok(out)
}

/// A Gemma tokenizer.
#[derive(Debug, Clone)]
pub struct GemmaTokenizer {
    inner: tokenizers::Tokenizer,
}

impl GemmaTokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: Some(PathBuf::from(path)),
            message: e.to_string(),
        })?;
        Ok(Self { inner })
    }

    /// Loads `tokenizer.json` from a model folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// Wraps an existing tokenizer.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        Self { inner }
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`; `add_special_tokens` applies the post-processor (Gemma's adds `<bos>`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of a rendered chat (the template already holds `<bos>`).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        self.encode(
            &apply_chat_template(messages, add_generation_prompt)?,
            false,
        )
    }

    /// Text of `ids`, without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    /// Text of `ids`, special tokens included.
    pub fn decode_raw(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

fn tok_err(e: tokenizers::Error) -> Error {
    Error::Tokenizer {
        path: None,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_matches_gemma_jinja() {
        let msgs = [
            ChatMessage::system("Extract keywords."),
            ChatMessage::user(" 진통과 해열 \n"),
            ChatMessage::model("진통, 해열"),
            ChatMessage::user("파스"),
        ];
        let text = apply_chat_template(&msgs, true).unwrap();
        assert_eq!(
            text,
            "<bos><start_of_turn>user\nExtract keywords.\n\n진통과 해열<end_of_turn>\n\
             <start_of_turn>model\n진통, 해열<end_of_turn>\n\
             <start_of_turn>user\n파스<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn template_rejects_non_alternating_roles() {
        let msgs = [ChatMessage::user("a"), ChatMessage::user("b")];
        let err = apply_chat_template(&msgs, false).unwrap_err();
        assert!(matches!(err, Error::Chat { index: 1, .. }), "{err}");
    }
}
