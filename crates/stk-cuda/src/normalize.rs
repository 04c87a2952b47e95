//! Row-wise L2 normalization (`kernels/normalize.cu`) and the epsilon conventions shared with
//! the normalize fused into pooling and embedding bags.

use crate::device::{CudaDevice, DeviceTensor};
use crate::ptx;
use cudarc::driver::LaunchConfig;
use stk_core::{DType, Error, Result, Tensor};

/// Threads per block of the normalize kernels (`NORMALIZE_THREADS` in `kernels/normalize.cu`):
/// eight warps, one row each.
pub const NORMALIZE_THREADS: u32 = 256;

/// How the divisor of an L2 normalization is formed from the norm: `max(‖v‖ + add, floor)`.
/// The two conventions in use differ exactly here, so the rule is a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormRule {
    pub add: f32,
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

/// The shape and scalar arguments of one normalize launch. The kernel's arguments are, in
/// order: input, output, then `rows, dim, norm.add, norm.floor`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeLaunch {
    pub kernel: &'static str,
    pub grid: u32,
    pub threads: u32,
    pub rows: i64,
    pub dim: i32,
    pub norm: NormRule,
}

/// The launch normalizing a tensor of `dims` (`None` when it has no element).
pub fn normalize_launch(
    dims: &[usize],
    dtype: DType,
    rule: NormRule,
) -> Result<Option<NormalizeLaunch>> {
    let (rows, d) = rows_and_dim("normalize input", dims)?;
    if rows == 0 || d == 0 {
        return Ok(None);
    }
    let warps_per_block = (NORMALIZE_THREADS / 32) as usize;
    let grid = u32::try_from(rows.div_ceil(warps_per_block))
        .map_err(|_| Error::shape("normalize input", "fewer rows than 2^32 * 8", dims))?;
    let packed = d % ptx::pack_width(dtype) == 0;
    Ok(Some(NormalizeLaunch {
        kernel: ptx::normalize_kernel(dtype, packed)?,
        grid,
        threads: NORMALIZE_THREADS,
        rows: rows as i64,
        dim: d as i32,
        norm: rule,
    }))
}

impl CudaDevice {
    /// `x / rule.divisor(‖x‖)` over the last dimension of `x` (f32, f16 or bf16), computed in
    /// f32 and returned in `x`'s dtype. A zero row stays zero.
    pub fn normalize(&self, x: &Tensor, rule: NormRule) -> Result<Tensor> {
        x.expect_dtype("normalize input", &[DType::F32, DType::F16, DType::BF16])?;
        let (rows, d) = rows_and_dim("normalize input", x.dims())?;
        if rows == 0 || d == 0 {
            return Tensor::zeros(x.shape().clone(), x.dtype());
        }
        let input = self.upload(x)?;
        let mut out = self.zeros(x.shape().clone(), x.dtype())?;
        self.normalize_device(&input, rule, &mut out)?;
        self.download(&out)
    }

    /// [`CudaDevice::normalize`] between device tensors of the same shape and dtype.
    pub fn normalize_device(
        &self,
        x: &DeviceTensor,
        rule: NormRule,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        let dtype = x.dtype();
        let kernel_dtype_ok = matches!(dtype, DType::F32 | DType::F16 | DType::BF16);
        if !kernel_dtype_ok {
            return Err(Error::dtype("normalize input", "f32, f16 or bf16", dtype));
        }
        if out.dtype() != dtype {
            return Err(Error::dtype(
                "normalize output",
                dtype.as_str(),
                out.dtype(),
            ));
        }
        if out.dims() != x.dims() {
            return Err(Error::shape(
                "normalize output",
                format!("{:?}", x.dims()),
                out.dims(),
            ));
        }
        let Some(l) = normalize_launch(x.dims(), dtype, rule)? else {
            return Ok(());
        };
        let cfg = LaunchConfig {
            grid_dim: (l.grid, 1, 1),
            block_dim: (l.threads, 1, 1),
            shared_mem_bytes: 0,
        };
        // In bounds: x and out hold rows * d elements (shapes checked above); each warp reads
        // and writes only its own row, packs only when d is a multiple of the pack width.
        self.launch(l.kernel)?
            .tensor(x)
            .tensor_mut(out)
            .i64(&l.rows)
            .i32(&l.dim)
            .f32(&l.norm.add)
            .f32(&l.norm.floor)
            .run(cfg)
    }
}
