//! stk-cuda: hand-written CUDA kernels for stk, embedded as PTX and launched through cudarc.
//!
//! Layers, bottom up:
//! * `kernels/*.cu` → committed `kernels/ptx/*.ptx` (`cargo xtask ptx`), embedded by [`ptx`],
//!   which also names every kernel entry point once.
//! * `sys`: the only module with `unsafe` (driver presence, driver version, the launch call).
//! * [`CudaDevice`] / [`DeviceTensor`]: context, stream, loaded kernels, typed device buffers;
//!   every launch's argument list is checked against the kernel's PTX signature.
//! * The ops, each with a host-side plan checked before any launch: [`pool`] (fused masked
//!   pooling), [`embedding_bag`] (StaticEmbedding / model2vec), [`normalize`], [`layer_pool`]
//!   (WeightedLayerPooling), and [`bench`] (CUDA-event timing against the copy bandwidth).
//!
//! Without a CUDA driver, [`CudaDevice::new`] returns [`stk_core::Error::NoCudaDriver`]; with a
//! driver but no such device, [`stk_core::Error::NoCudaDevice`]. Nothing panics.
#![deny(unsafe_code)]

pub mod bench;
mod device;
pub mod embedding_bag;
pub mod layer_pool;
pub mod normalize;
pub mod pool;
pub mod ptx;
mod sys;

pub use device::{shared_device, CudaDevice, DeviceData, DeviceTensor};
pub use embedding_bag::{BagReduce, CheckedTable, DeviceEmbeddingTable, DeviceTokenBags};
pub use layer_pool::LayerPoolPlan;
pub use normalize::NormRule;
pub use pool::{DevicePoolPlan, PoolExtras, PoolInput, PoolPlan};

/// Whether a CUDA driver library can be loaded in this process (no device is opened).
pub fn driver_present() -> bool {
    sys::driver_present()
}

/// The driver's CUDA version (`major * 1000 + minor * 10`), or `NoCudaDriver`.
pub fn driver_version() -> stk_core::Result<i32> {
    sys::driver_version()
}
