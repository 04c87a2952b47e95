//! The only module of stk-cuda that uses `unsafe`: asking whether the driver library exists,
//! reading its version, and submitting a kernel launch.
//!
//! Everything above this module is safe code. A launch is only sound when the kernel's
//! arguments describe buffers large enough for every index the kernel computes; each op module
//! establishes that on the host (shapes, dtypes, id ranges, CSR offsets) before it calls
//! [`launch`], and says so where it does.
#![allow(unsafe_code)]

use cudarc::driver::{sys, LaunchArgs, LaunchConfig};
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
        .map_err(|e| Error::Cuda(format!("cuDriverGetVersion: {e}")))?;
    Ok(version)
}

/// Submit a launch whose arguments have been pushed onto `args`.
///
/// Callers guarantee (each op module checks it on the host just before): the argument list
/// matches the kernel's C signature in `kernels/*.cu` in number, order and type, and every
/// device buffer passed holds at least as many elements as the kernel can index given the
/// scalar arguments and `cfg`.
pub(crate) fn launch(kernel: &str, args: &mut LaunchArgs<'_>, cfg: LaunchConfig) -> Result<()> {
    // SAFETY: see the contract above; cudarc records the buffers' stream dependencies.
    unsafe { args.launch(cfg) }
        .map(|_| ())
        .map_err(|e| Error::Cuda(format!("launching {kernel}: {e}")))
}
