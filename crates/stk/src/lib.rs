//! stk facade: load model folders, build pipelines, encode text. The `stk` binary
//! (`src/main.rs` + `src/cli/`) is a thin layer over this library.
#![deny(unsafe_code)]

pub use stk_core::{DType, Device, Error, PoolingMode, PoolingSpec, Result, Tensor};

mod folder;
mod gpu;
pub mod model;
pub mod model2vec;
pub mod ops;
pub mod pipeline;
pub mod text_io;

pub use model::{Embeddings, LoadOptions, Model, Semantics};
pub use pipeline::Pipeline;
