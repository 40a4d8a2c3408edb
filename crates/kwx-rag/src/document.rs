//! Free documents (drug leaflets) split into chunks by field and by length.
