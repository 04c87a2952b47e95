//! stk facade: load model folders, build pipelines, encode text. The `stk` command line
//! (package `stk-cli`) is a thin layer over this library, which carries no CLI dependencies.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub use stk_core::{DType, Device, Error, PoolingMode, PoolingSpec, Result, Tensor};

pub mod embedded;
mod folder;
mod gpu;
pub mod model;
pub mod model2vec;
pub mod ops;
pub mod pipeline;
pub mod quantize;
pub mod text_io;

pub use model::{Embeddings, LoadOptions, Model, Semantics};
pub use model2vec::{MaxLength, TokenEmbeddings};
pub use pipeline::Pipeline;
pub use quantize::{
    ElementSlice, ElementType, Elements, EncodeOptions, EncodedArray, Precision, Ranges,
};
