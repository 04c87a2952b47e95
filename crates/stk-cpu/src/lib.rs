//! stk-cpu: exact CPU implementations of the sentence-transformers modules.
//! This crate is the oracle the CUDA kernels are tested against.
#![deny(unsafe_code)]

pub mod embedding_bag;
pub mod features;
pub mod normalize;
pub mod pooling;
pub mod static_embedding;
pub mod tokenize;
pub mod weighted_layer_pooling;

pub use embedding_bag::EmbeddingBag;
pub use features::{Features, Module, TextModule};
pub use normalize::{normalize, Normalize};
pub use pooling::{pool_padded, pool_varlen, PoolExtras, Pooling};
pub use static_embedding::StaticEmbedding;
pub use tokenize::Tokenizer;
pub use weighted_layer_pooling::{weighted_layer_pooling, WeightedLayerPooling};
