//! stk-cpu: exact CPU implementations of the sentence-transformers modules.
//! This crate is the oracle the CUDA kernels are tested against.
#![deny(unsafe_code)]

pub mod embedding_bag;
pub mod features;
pub mod static_embedding;
pub mod tokenize;

pub use embedding_bag::EmbeddingBag;
pub use features::{Features, Module, TextModule};
pub use static_embedding::StaticEmbedding;
pub use tokenize::Tokenizer;
