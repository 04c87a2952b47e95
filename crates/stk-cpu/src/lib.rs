//! stk-cpu: exact CPU implementations of the sentence-transformers modules.
//! This crate is the oracle the CUDA kernels are tested against.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod bow;
pub mod cnn;
pub mod dense;
pub mod dropout;
pub mod embedding_bag;
pub mod features;
pub mod layer_norm;
pub mod lstm;
pub mod module_files;
pub mod normalize;
pub mod phrase_tokenizer;
pub mod pooling;
mod simd;
pub mod static_embedding;
pub mod tokenize;
pub mod weighted_layer_pooling;
pub mod whitespace_tokenizer;
pub mod word_embeddings;
pub mod word_weights;

pub use embedding_bag::EmbeddingBag;
pub use features::{Features, Module, TextModule};
pub use normalize::{normalize, Normalize};
pub use pooling::{pool_padded, pool_spans, pool_varlen, PoolExtras, Pooling};
pub use static_embedding::StaticEmbedding;
pub use tokenize::Tokenizer;
pub use weighted_layer_pooling::{weighted_layer_pooling, WeightedLayerPooling};
