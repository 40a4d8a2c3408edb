//! # kwx-core
//!
//! The Gemma decoder every kwx strategy runs through: Gemma 1, 2 and 3 text models in burn,
//! numerically matched to Hugging Face transformers, with loading from a model folder,
//! KV-cached generation, sampling and the Gemma chat template.
//!
//! The backend lives in the [`burn::tensor::Device`]: the same code runs on `flex` (CPU, the
//! default), `wgpu` and `cuda`.
//!
//! ```no_run
//! use kwx_core::{Gemma, GenerationConfig, Generator, GemmaTokenizer};
//! # fn main() -> kwx_core::Result<()> {
//! let device = burn::tensor::Device::default();
//! let model = Gemma::from_pretrained("models/gemma-3-270m", &device)?;
//! let tokenizer = GemmaTokenizer::from_dir("models/gemma-3-270m")?;
//! let prompt = tokenizer.encode("Paris is the capital of", true)?;
//! let out = Generator::new(&model).generate(&prompt, &GenerationConfig::greedy(16), |_| {})?;
//! let text = tokenizer.decode(&out.tokens)?;
//! # let _ = text; Ok(()) }
//! ```

pub mod config;
pub mod constrain;
pub mod error;
pub mod extract;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod head;
pub mod home;
pub mod loader;
pub mod model;
pub mod precision;
pub mod reparam;
pub mod resize;
pub mod rows;
pub mod tokenizer;

pub use burn;
pub use config::{Activation, AttentionType, Family, GemmaConfig, HfConfig, Rope};
pub use constrain::{JsonArrayConstraint, OutputMode, TokenBytes};
pub use error::{Error, ResizeError, Result};
pub use extract::{DictionaryExtractor, Keyword, KeywordExtractor, Span};
pub use generate::{GenerationConfig, GenerationOutput, Generator, StopReason, TokenConstraint};
pub use head::LabelLoss;
pub use loader::{SafetensorsSource, WeightSource};
pub use model::{AdapterDropout, Gemma, KvCache, RmsNorm};
pub use precision::Precision;
pub use reparam::OnWeight;
pub use resize::{ResizeOptions, RowInit};
pub use rows::TokenRows;
pub use tokenizer::{ChatMessage, GemmaTokenizer, Role};
pub use tokenizers;
