//! Row-wise L2 normalization (`kernels/normalize.cu`) and the epsilon conventions shared with
//! the normalize fused into pooling and embedding bags.

use crate::device::{CudaDevice, DeviceTensor};
use crate::launch::{Arg, LaunchShape};
use crate::ptx;
use crate::views::{aligned16, rows_of, FloatElement};
use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use stk_core::{validate, DType, Error, Result, Tensor};

/// Threads per block of the normalize kernels (`NORMALIZE_THREADS` in `kernels/normalize.cu`):
/// eight warps, one row each.
pub const NORMALIZE_THREADS: u32 = 256;

/// How the divisor of an L2 normalization is formed from the norm: `max(‖v‖ + add, floor)`.
/// The two conventions in use differ exactly here, so the rule is a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormRule {
    /// Added to the norm (`1e-32` for model2vec, 0 for sentence-transformers).
    pub add: f32,
    /// The smallest divisor (`1e-12` for sentence-transformers, 0 for model2vec).
    pub floor: f32,
}

impl NormRule {
    /// sentence-transformers `Normalize`: `v / max(‖v‖, 1e-12)`.
    pub const SENTENCE_TRANSFORMERS: NormRule = NormRule {
        add: 0.0,
        floor: 1e-12,
    };
    /// model2vec `normalize: true`: `v / (‖v‖ + 1e-32)`.
    pub const MODEL2VEC: NormRule = NormRule {
        add: 1e-32,
        floor: 0.0,
    };

    /// The divisor for a vector of norm `norm` (a NaN norm stays NaN, as torch's clamp keeps it).
    pub fn divisor(self, norm: f32) -> f32 {
        let d = norm + self.add;
        if d < self.floor {
            self.floor
        } else {
            d
        }
    }
}

/// The checked shape of a row-wise operation on the last dimension.
pub(crate) fn rows_and_dim(what: &str, dims: &[usize]) -> Result<(usize, usize)> {
    let Some((&d, lead)) = dims.split_last() else {
        return Err(Error::shape(what, "at least one dimension [..., D]", dims));
    };
    let rows = lead.iter().product::<usize>();
    if d > i32::MAX as usize {
        return Err(Error::shape(
            what,
            format!("a last dimension of at most {}", i32::MAX),
            dims,
        ));
    }
    Ok((rows, d))
}

#[doc(hidden)]
/// One normalize launch: its shape and scalar arguments. The kernel's arguments are, in
/// order: input, output, then `rows, dim, norm.add, norm.floor` ([`NormalizeLaunch::args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeLaunch {
    pub shape: LaunchShape,
    pub rows: i64,
    pub dim: i32,
    pub norm: NormRule,
}

impl NormalizeLaunch {
    /// The argument list with the input and output buffers.
    pub fn args<B>(&self, x: B, out: B) -> Vec<Arg<B>> {
        vec![
            Arg::Buf(x),
            Arg::Buf(out),
            Arg::I64(self.rows),
            Arg::I32(self.dim),
            Arg::F32(self.norm.add),
            Arg::F32(self.norm.floor),
        ]
    }
}

#[doc(hidden)]
/// The launch normalizing `rows` rows of `dim` elements of `dtype` (`None` when there is no
/// element); 16-byte loads only when the buffers are `aligned` to 16 bytes.
pub fn normalize_launch(
    rows: usize,
    dim: usize,
    dtype: DType,
    rule: NormRule,
    aligned: bool,
) -> Result<Option<NormalizeLaunch>> {
    if dim > i32::MAX as usize {
        return Err(Error::shape(
            "normalize input",
            format!("a last dimension of at most {}", i32::MAX),
            &[rows, dim],
        ));
    }
    if rows == 0 || dim == 0 {
        return Ok(None);
    }
    let warps_per_block = (NORMALIZE_THREADS / 32) as usize;
    let grid = u32::try_from(rows.div_ceil(warps_per_block))
        .map_err(|_| Error::shape("normalize input", "fewer rows than 2^32 * 8", &[rows, dim]))?;
    let packed = aligned && dim % ptx::pack_width(dtype) == 0;
    Ok(Some(NormalizeLaunch {
        shape: LaunchShape {
            kernel: ptx::select("normalize", dtype, packed)?,
            grid,
            threads: NORMALIZE_THREADS,
            shared_bytes: 0,
        },
        rows: rows as i64,
        dim: dim as i32,
        norm: rule,
    }))
}

impl CudaDevice {
    /// `x / rule.divisor(‖x‖)` over the last dimension of `x` (f32, f16 or bf16), computed in
    /// f32 and returned in `x`'s dtype. A zero row stays zero.
    pub fn normalize(&self, x: &Tensor, rule: NormRule) -> Result<Tensor> {
        x.expect_dtype("normalize input", &validate::FLOATS)?;
        let (rows, d) = rows_and_dim("normalize input", x.dims())?;
        if rows == 0 || d == 0 {
            return Tensor::zeros(x.shape().clone(), x.dtype());
        }
        let input = self.upload(x)?;
        let mut out = self.zeros(x.shape().clone(), x.dtype())?;
        self.normalize_device(&input, rule, &mut out)?;
        self.download(&out)
    }

    /// [`CudaDevice::normalize`] between device tensors of the same shape and dtype, on this
    /// handle's stream.
    #[allow(unsafe_code)]
    pub fn normalize_device(
        &self,
        x: &DeviceTensor,
        rule: NormRule,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        let dtype = x.dtype();
        if out.dtype() != dtype || out.dims() != x.dims() {
            return Err(Error::shape(
                "normalize output",
                format!("{:?} {dtype}", x.dims()),
                out.dims(),
            ));
        }
        let (rows, d) = rows_and_dim("normalize input", x.dims())?;
        let Some(l) = normalize_launch(rows, d, dtype, rule, true)? else {
            return Ok(());
        };
        let stream = self.stream();
        let (x_ptr, _x_guard) = x.ptr(stream);
        let (out_ptr, _out_guard) = out.ptr_mut(stream);
        // SAFETY: x and out are distinct whole allocations (256-byte aligned) of this device
        // holding rows * d elements (shapes checked above); each warp reads and writes only
        // its own row, in packs only when d is a multiple of the pack width. The guards keep
        // both alive past the enqueue; cudarc frees them in stream order.
        unsafe { self.launch(&l.shape, stream.cu_stream(), &l.args(x_ptr, out_ptr)) }
    }

    /// Normalize `rows × dim` elements of `x` into `out` on the caller's `stream` (a stream of
    /// this device's context): no copy, allocation or synchronization, so the call can be
    /// captured in a CUDA graph.
    #[allow(unsafe_code)]
    pub fn normalize_views<T: FloatElement>(
        &self,
        stream: &CudaStream,
        x: &CudaView<'_, T>,
        dim: usize,
        rule: NormRule,
        out: &mut CudaViewMut<'_, T>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let rows = rows_of("normalize input", x.len(), dim)?;
        if out.len() != x.len() {
            return Err(Error::shape(
                "normalize output",
                format!("[{}] (as the input)", x.len()),
                &[out.len()],
            ));
        }
        let (x_ptr, _x_guard) = x.device_ptr(stream);
        let (out_ptr, _out_guard) = out.device_ptr_mut(stream);
        // SAFETY: both views belong to this context's allocations (the stream check and
        // cudarc's views), hold rows * dim elements (checked), and cannot overlap (one is
        // borrowed mutably); the borrows outlive the enqueue, the caller's stream orders the
        // rest.
        unsafe {
            self.normalize_raw(
                stream.cu_stream(),
                x_ptr,
                out_ptr,
                rows,
                dim,
                T::DTYPE,
                rule,
            )
        }
    }

    /// [`CudaDevice::normalize_views`] on raw device pointers, for foreign callers.
    ///
    /// # Safety
    /// `stream` is a live stream of this device's context; `x` and `out` are device addresses
    /// in that context of `rows * dim` elements of `dtype` each (any element-aligned address),
    /// not overlapping, and stay allocated until the launch has run on `stream`.
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn normalize_raw(
        &self,
        stream: cudarc::driver::sys::CUstream,
        x: u64,
        out: u64,
        rows: usize,
        dim: usize,
        dtype: DType,
        rule: NormRule,
    ) -> Result<()> {
        let aligned = aligned16(&[x, out]);
        let Some(l) = normalize_launch(rows, dim, dtype, rule, aligned)? else {
            return Ok(());
        };
        // SAFETY: the caller's contract above is the launch's (rows * dim elements each); the
        // 16-byte loads are chosen only for aligned addresses.
        unsafe { self.launch(&l.shape, stream, &l.args(x, out)) }
    }
}
