//! stk-cpu: exact CPU implementations of the sentence-transformers modules.
//! This crate is the oracle the CUDA kernels are tested against.
#![deny(unsafe_code)]

pub mod features;
pub mod tokenize;

pub use features::{Features, Module, TextModule};
pub use tokenize::Tokenizer;
