//! # kwx-tokenizer
//!
//! Strategy 5, tokenizer customization: training SentencePiece-style BPE and Unigram
//! vocabularies with domain symbols that are never split, and extending an existing tokenizer
//! (such as Gemma's) with domain tokens like 파스, 연고 and 주사제.
//!
//! Not built yet. It depends on no model code; resizing and initialising embeddings for new tokens
//! lives with the model in `kwx-core`.
