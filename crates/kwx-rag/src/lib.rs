//! # kwx-rag
//!
//! Retrieval for strategy 2 (RAG): an index over the domain dictionary and free documents that
//! finds the definitions of the terms in a sentence and fits them into a prompt's token budget.
//!
//! Not built yet: chunking, a Korean-aware lexical index, dense retrieval with kwx-core
//! embeddings, hybrid ranking and prompt-context assembly will live here.
