//! The only module of stk-cuda that uses `unsafe`: asking whether the driver library exists,
//! reading its version, and submitting a kernel launch.
//!
//! A launch is only sound when the kernel's arguments describe buffers large enough for every
//! index the kernel computes; each op module establishes that on the host (shapes, dtypes, id
//! ranges, CSR offsets, or device-side clamping) before it calls [`launch`], and says so in a
//! `// SAFETY:` comment where it does.
#![allow(unsafe_code)]

use crate::launch::{Arg, LaunchShape};
use cudarc::driver::{result, sys, CudaFunction, DriverError};
use std::sync::OnceLock;
use stk_core::{Error, Result};

/// Whether `libcuda.so` can be loaded. cudarc panics on its first driver call when the library
/// is missing, so every entry point checks this first. The answer cannot change within a
/// process, so it is computed once.
pub(crate) fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only tries to dlopen the library names and drops the handle.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// The driver's CUDA version as `major * 1000 + minor * 10` (580 drivers report 13000).
pub(crate) fn driver_version() -> Result<i32> {
    if !driver_present() {
        return Err(Error::NoCudaDriver);
    }
    let mut version = 0i32;
    // SAFETY: the library is present (checked above); the call writes one int we own.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| driver_error("reading the driver version", e))?;
    Ok(version)
}

/// A driver error as an [`Error`]: out-of-memory is its own variant (a caller can retry with
/// less), anything else keeps the driver's error (and its `CUresult` code) as the source.
pub(crate) fn driver_error(what: impl Into<String>, e: DriverError) -> Error {
    let what = what.into();
    if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfMemory {
            what,
            source: Box::new(e),
        }
    } else {
        Error::CudaDriver {
            what,
            source: Box::new(e),
        }
    }
}

/// Enqueue `function` on `stream` with `args` (device pointers and scalars). No copy, no
/// allocation, no synchronization: the launch can be captured in a CUDA graph.
///
/// # Safety
/// * `function` was loaded from the kernel `shape.kernel` names, in the context that is
///   current on this thread, and `stream` is a live stream of that context.
/// * `args` passed [`LaunchShape::check`] (they match the kernel's PTX signature).
/// * Every `Arg::Buf` is a device address, in that context, of a buffer holding at least as
///   many elements as the kernel indexes given the scalar arguments and `shape`; buffers the
///   kernel writes do not overlap the ones it reads; all of them stay allocated until the
///   launch has run on `stream`.
pub(crate) unsafe fn launch(
    function: &CudaFunction,
    shape: &LaunchShape,
    stream: sys::CUstream,
    args: &[Arg<u64>],
) -> Result<()> {
    // Each argument in an 8-byte slot; the driver reads as many bytes as the parameter has
    // (the low ones: little-endian, as every CUDA host is).
    let mut slots: Vec<u64> = args
        .iter()
        .map(|a| match *a {
            Arg::Buf(p) => p,
            Arg::Null => 0,
            Arg::I32(v) => v as u32 as u64,
            Arg::I64(v) => v as u64,
            Arg::U64(v) => v,
            Arg::F32(v) => v.to_bits() as u64,
        })
        .collect();
    let mut params: Vec<*mut std::ffi::c_void> = slots
        .iter_mut()
        .map(|s| s as *mut u64 as *mut std::ffi::c_void)
        .collect();
    // SAFETY: the caller's contract above; `params` points into `slots`, alive for the call.
    unsafe {
        result::launch_kernel(
            function.cu_function(),
            (shape.grid, 1, 1),
            (shape.threads, 1, 1),
            shape.shared_bytes,
            stream,
            &mut params,
        )
    }
    .map_err(|e| driver_error(format!("launching {}", shape.kernel.name), e))
}
