//! stk-core: the types every other stk crate speaks.
//!
//! * [`Tensor`]: shape + [`DType`] + host bytes, either owned or borrowed from a memory-mapped
//!   safetensors file (no copy at load).
//! * safetensors files: read ([`SafetensorsFile`]) and atomic write ([`write_safetensors`]).
//! * Batch layouts for pooling ([`PaddedBatch`], [`VarlenBatch`]) and for embedding bags
//!   ([`TokenBags`]): validated once at construction so that every consumer (CPU loops, CUDA
//!   kernels) can index without bounds surprises.
//! * [`validate`]: the checks relating a layout to an operation's other inputs, shared by
//!   every backend.
//! * [`Error`]: one typed error for the whole workspace.
//!
//! `unsafe` is allowed only in `st.rs` (the mmap); everything else denies it.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod batch;
mod device;
mod dtype;
mod error;
mod output_file;
mod pooling_mode;
mod shape;
mod st;
mod tensor;
#[doc(hidden)]
pub mod testing;
pub mod validate;

pub use batch::{PaddedBatch, SpanBatch, TokenBags, VarlenBatch};
pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{counted, Error, Result};
pub use output_file::{AlignedVec, OutputFile, WriteMode};
pub use pooling_mode::{PoolingMode, PoolingSpec};
pub use shape::Shape;
pub use st::{write_file_atomic, write_safetensors, SafetensorsFile};
pub use tensor::{zeroed_f32s, SharedBytes, Tensor};

/// Re-exported so that downstream crates use the same `half` version.
pub use half::{bf16, f16};
