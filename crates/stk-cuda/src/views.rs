//! Helpers of the device-buffer API: the element types a caller's views may hold, and the
//! checks that relate view lengths to the shapes the caller states.

use cudarc::driver::DeviceRepr;
use stk_core::{bf16, f16, DType, Error, Result};

/// A float element a kernel reads (f32, f16, bf16).
pub trait FloatElement: DeviceRepr {
    /// The stk dtype of this element type.
    const DTYPE: DType;
}
impl FloatElement for f32 {
    const DTYPE: DType = DType::F32;
}
impl FloatElement for f16 {
    const DTYPE: DType = DType::F16;
}
impl FloatElement for bf16 {
    const DTYPE: DType = DType::BF16;
}

/// An attention-mask element: any integer width the kernels read (nonzero counts).
pub trait MaskElement: DeviceRepr {
    /// The width of one mask element in bytes (1, 4 or 8), as the kernel reads it.
    const BYTES: i32;
}
impl MaskElement for u8 {
    const BYTES: i32 = 1;
}
impl MaskElement for i32 {
    const BYTES: i32 = 4;
}
impl MaskElement for u32 {
    const BYTES: i32 = 4;
}
impl MaskElement for i64 {
    const BYTES: i32 = 8;
}

/// Rows of `dim` elements in a buffer of `len` (which must be a whole number of rows).
pub(crate) fn rows_of(what: &str, len: usize, dim: usize) -> Result<usize> {
    if dim == 0 || len % dim != 0 {
        return Err(Error::shape(
            what,
            format!("a whole number of rows of D = {dim} (D > 0)"),
            &[len],
        ));
    }
    Ok(len / dim)
}

/// Whether every address is 16-byte aligned, which the 16-byte-load kernels need (a view into
/// the middle of an allocation may not be; it then gets the element-wise kernel).
pub(crate) fn aligned16(ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p % 16 == 0)
}
