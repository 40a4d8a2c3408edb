//! # kwx
//!
//! Adapt Gemma language models to extract domain keywords, and measure which adaptation works:
//!
//! 1. **Prompt engineering**: keyword definitions, few-shot examples and a feedback retry in the
//!    prompt ([`core`]'s generation and chat template).
//! 2. **RAG**: definitions retrieved from a domain dictionary and injected into the prompt
//!    ([`rag`]).
//! 3. **Instruction tuning with LoRA** on (instruction, input, output) examples ([`peft`]).
//! 4. **Supervised fine-tuning**, full or LoRA, on text → labels ([`peft`]).
//! 5. **Tokenizer customization**: domain words as single tokens with well-initialised embeddings
//!    ([`tokenizer`]).
//!
//! All five run on one Gemma implementation in burn ([`core`]), numerically matched to Hugging
//! Face transformers. The backend is chosen by the [`core::burn::tensor::Device`]: `flex` on CPU
//! (default feature), `wgpu` or `cuda` on GPUs.
//!
//! ```no_run
//! use kwx::core::{Gemma, GemmaTokenizer, GenerationConfig, Generator};
//! # fn main() -> kwx::core::Result<()> {
//! let device = kwx::core::burn::tensor::Device::default();
//! let model = Gemma::from_pretrained("models/gemma-3-270m", &device)?;
//! let tokenizer = GemmaTokenizer::from_dir("models/gemma-3-270m")?;
//! let ids = tokenizer.encode("진통과 해열 효과가 있는 파스형 의약품은", true)?;
//! let out = Generator::new(&model)
//!     .with_tokenizer(&tokenizer)
//!     .generate(&ids, &GenerationConfig::greedy(32), |_| {})?;
//! # let _ = out; Ok(()) }
//! ```

pub mod compare;
pub mod plot;
#[cfg(feature = "serve")]
pub mod serve;

pub use kwx_core as core;
pub use kwx_data as data;
pub use kwx_peft as peft;
pub use kwx_rag as rag;
pub use kwx_tokenizer as tokenizer;

/// How to initialise the embedding rows of the tokens an [`tokenizer::extend`] made single: the
/// mean of the rows of the pieces each term used to be split into (Fast Vocabulary Transfer), or
/// the vocabulary mean for a term without pieces. Pass it to
/// [`core::Gemma::resize_token_embeddings`] or [`core::Gemma::init_token_rows`].
pub fn token_rows(extension: &tokenizer::Extension) -> Vec<(u32, core::RowInit)> {
    extension
        .rows_to_initialise()
        .map(|t| {
            let init = if t.pieces.is_empty() {
                core::RowInit::VocabMean
            } else {
                core::RowInit::MeanOf(t.pieces.clone())
            };
            (t.id, init)
        })
        .collect()
}
