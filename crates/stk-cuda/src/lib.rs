//! stk-cuda: hand-written CUDA kernels for stk, embedded as PTX and launched through cudarc.
//!
//! Layers, bottom up:
//! * `kernels/*.cu` → committed `kernels/ptx/*.ptx` (`cargo xtask ptx`), embedded by [`ptx`],
//!   which also names every kernel entry point once.
//! * `sys`: driver presence and version, and the one raw launch (`unsafe fn`).
//! * [`launch`]: each kernel's argument list, written once and shared with the simulator;
//!   every launch is checked against the kernel's PTX signature ([`ptx::KERNELS`]).
//! * [`CudaDevice`] / [`DeviceTensor`]: context, own stream, loaded kernels, typed buffers.
//! * The ops, three ways each: host tensors in and out (checked by the validation every
//!   backend shares, `stk_core::validate`), `*_device` on [`DeviceTensor`]s, and the
//!   device-buffer API for backends (`*_views` on the caller's cudarc views and stream,
//!   `unsafe *_raw` on raw pointers; pooling also `*_with_workspace`, which splits the rows of
//!   small batches over several blocks): [`pool`] / [`pool_device`] (fused pooling, all modes,
//!   padded, varlen and spans), [`embedding_bag`] (StaticEmbedding / model2vec),
//!   [`normalize`], [`layer_pool`] (WeightedLayerPooling), and `bench` (CUDA-event timing
//!   against the copy bandwidth; behind the `bench` feature, which the `stk bench` command
//!   enables, so a library user does not compile it or its `rand` dependency).
//!
//! The launch descriptions (`launch`, `pool::pool_launch`, ...) are public only for the kernel
//! simulator (`examples/kernel_sim.rs`) and hidden from the documentation: they are not an API.
//!
//! Without a CUDA driver, [`CudaDevice::new`] returns [`stk_core::Error::NoCudaDriver`]; with a
//! driver older than the PTX needs, [`stk_core::Error::DriverTooOld`]; with a driver but no
//! such device, [`stk_core::Error::NoCudaDevice`]. Nothing panics.
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
mod device;
pub mod embedding_bag;
#[doc(hidden)]
pub mod launch;
pub mod layer_pool;
pub mod normalize;
pub mod pool;
pub mod pool_device;
pub mod ptx;
mod sys;
pub mod views;

pub use device::{shared_device, CudaDevice, DeviceData, DeviceTensor};
pub use embedding_bag::{BagReduce, DeviceEmbeddingTable, DeviceTokenBags};
pub use normalize::NormRule;
pub use pool::{DevicePoolPlan, PoolInput, PoolPlan};
pub use pool_device::{DeviceRows, RawPool, RawRows, ViewPool};
pub use stk_core::validate::{EmbeddingTable, LayerPooling, PoolExtras};
pub use views::{FloatElement, MaskElement};

/// Whether a CUDA driver library can be loaded in this process (no device is opened).
pub fn driver_present() -> bool {
    sys::driver_present()
}

/// The driver's CUDA version (`major * 1000 + minor * 10`), or `NoCudaDriver`.
pub fn driver_version() -> stk_core::Result<i32> {
    sys::driver_version()
}
