//! Pooling on a caller's device buffers and stream: no host plan, copy, allocation or
//! synchronization in the launch path, so a serving backend can call it on its own stream and
//! capture it in a CUDA graph.
//!
//! Each output row's token rows are found by the kernel itself ([`RowSource`]): from
//! `cu_seq_lens` (varlen), from spans (late chunking), or from a padded batch's attention mask
//! (right or left padding, and masks with holes, which the kernel reads row by row). The
//! bounds come from device memory the host never sees, so the kernel clamps them into the
//! token buffer: wrong values give wrong rows, never a read outside the caller's buffers.

use crate::device::CudaDevice;
use crate::pool::{pool_launch, PoolBuffers, PoolProblem, RowSource};
use crate::views::{aligned16, rows_of, FloatElement, MaskElement};
use cudarc::driver::sys::CUstream;
use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use stk_core::validate::{self, PoolExtras};
use stk_core::{DType, Error, PoolingSpec, Result};

/// How a device batch is laid out, with its index buffer on the device.
#[derive(Debug)]
pub enum DeviceRows<'a, 'b, M: MaskElement = i64> {
    /// Varlen: `[N, D]` tokens, `cu_seq_lens [B + 1]` (i32, as flash-attention keeps them).
    Varlen { cu_seq_lens: &'a CudaView<'b, i32> },
    /// Late chunking: `[N, D]` tokens, `spans [S, 2]` (i64 start and end rows); one output
    /// row per span.
    Spans { spans: &'a CudaView<'b, i64> },
    /// Padded: `[B, seq_len, D]` tokens and their `[B, seq_len]` attention mask (any integer
    /// width; nonzero counts).
    Padded {
        seq_len: usize,
        mask: &'a CudaView<'b, M>,
    },
}

impl<'a, 'b> DeviceRows<'a, 'b, i64> {
    /// [`DeviceRows::Varlen`] (the mask type, unused, fixed).
    pub fn varlen(cu_seq_lens: &'a CudaView<'b, i32>) -> Self {
        DeviceRows::Varlen { cu_seq_lens }
    }
    /// [`DeviceRows::Spans`] (the mask type, unused, fixed).
    pub fn spans(spans: &'a CudaView<'b, i64>) -> Self {
        DeviceRows::Spans { spans }
    }
}

/// A device batch as raw pointers, for [`CudaDevice::pool_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRows {
    /// `cu_seq_lens`: `batch + 1` i32 values.
    Varlen { cu_seq_lens: u64, batch: usize },
    /// `spans`: `batch * 2` i64 values.
    Spans { spans: u64, batch: usize },
    /// `mask`: `batch * seq_len` integers of `mask_bytes` (1, 4 or 8) bytes.
    Padded {
        mask: u64,
        batch: usize,
        seq_len: usize,
        mask_bytes: i32,
    },
}

impl RawRows {
    fn batch(self) -> usize {
        match self {
            RawRows::Varlen { batch, .. }
            | RawRows::Spans { batch, .. }
            | RawRows::Padded { batch, .. } => batch,
        }
    }
    fn buffer(self) -> u64 {
        match self {
            RawRows::Varlen { cu_seq_lens, .. } => cu_seq_lens,
            RawRows::Spans { spans, .. } => spans,
            RawRows::Padded { mask, .. } => mask,
        }
    }
    fn source(self, token_rows: usize) -> Result<RowSource> {
        Ok(match self {
            RawRows::Varlen { .. } => RowSource::CuSeqLens { token_rows },
            RawRows::Spans { .. } => RowSource::Spans { token_rows },
            RawRows::Padded {
                batch,
                seq_len,
                mask_bytes,
                ..
            } => {
                if !matches!(mask_bytes, 1 | 4 | 8) {
                    return Err(Error::invalid(format!(
                        "mask elements of {mask_bytes} bytes (1, 4 or 8)"
                    )));
                }
                if batch.checked_mul(seq_len) != Some(token_rows) {
                    return Err(Error::shape(
                        "padded token_embeddings",
                        format!("{batch} × {seq_len} rows (the mask's)"),
                        &[token_rows],
                    ));
                }
                RowSource::Mask {
                    seq_len,
                    mask_bytes,
                }
            }
        })
    }
}

/// A pooling on raw device pointers ([`CudaDevice::pool_raw`]).
#[derive(Debug, Clone, Copy)]
pub struct RawPool<'a> {
    /// `token_rows × dim` elements of `dtype`.
    pub tokens: u64,
    pub dtype: DType,
    pub token_rows: usize,
    pub dim: usize,
    pub rows: RawRows,
    pub spec: &'a PoolingSpec,
    /// `batch` f32 values replacing the token counts as divisors (WordWeights), or `None`.
    pub token_weights_sum: Option<u64>,
    /// `batch × modes × dim` elements of [`RawPool::out_dtype`].
    pub out: u64,
    /// L2-normalize each output row in the same launch.
    pub normalize: bool,
}

impl RawPool<'_> {
    /// The output dtype the reference gives: the tokens' dtype, f32 when `token_weights_sum`
    /// divides a mode.
    pub fn out_dtype(&self) -> DType {
        validate::pool_output_dtype(
            self.dtype,
            self.spec,
            self.token_weights_sum.is_some(),
            None,
        )
    }
}

impl CudaDevice {
    /// Pool `tokens` (`[rows, dim]` elements of `T`) laid out as `rows` into `out`
    /// (`[B, modes × dim]`: `T`, or f32 when `token_weights_sum` divides a mode), on the
    /// caller's `stream` (a stream of this device's context). Every mode of `spec`, its prompt
    /// exclusion and the optional normalize run in one launch; nothing is copied, allocated
    /// or synchronized, so the call can be captured in a CUDA graph (with cudarc's event
    /// tracking off, see ARCHITECTURE.md "API for backends").
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    pub fn pool_views<T: FloatElement, O: FloatElement, M: MaskElement>(
        &self,
        stream: &CudaStream,
        tokens: &CudaView<'_, T>,
        dim: usize,
        rows: DeviceRows<'_, '_, M>,
        spec: &PoolingSpec,
        token_weights_sum: Option<&CudaView<'_, f32>>,
        normalize: bool,
        out: &mut CudaViewMut<'_, O>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let token_rows = rows_of("token_embeddings", tokens.len(), dim)?;
        let (_layout_guard, raw_rows) = match rows {
            DeviceRows::Varlen { cu_seq_lens } => {
                let (p, guard) = cu_seq_lens.device_ptr(stream);
                let Some(batch) = cu_seq_lens.len().checked_sub(1) else {
                    return Err(Error::shape("cu_seq_lens", "[B + 1]", &[0]));
                };
                let raw = RawRows::Varlen {
                    cu_seq_lens: p,
                    batch,
                };
                (guard, raw)
            }
            DeviceRows::Spans { spans } => {
                if spans.len() % 2 != 0 {
                    return Err(Error::shape("spans", "[S, 2]", &[spans.len()]));
                }
                let (p, guard) = spans.device_ptr(stream);
                let raw = RawRows::Spans {
                    spans: p,
                    batch: spans.len() / 2,
                };
                (guard, raw)
            }
            DeviceRows::Padded { seq_len, mask } => {
                if seq_len == 0 || mask.len() % seq_len != 0 {
                    return Err(Error::shape(
                        "attention_mask",
                        format!("[B, {seq_len}]"),
                        &[mask.len()],
                    ));
                }
                let (p, guard) = mask.device_ptr(stream);
                let raw = RawRows::Padded {
                    mask: p,
                    batch: mask.len() / seq_len,
                    seq_len,
                    mask_bytes: M::BYTES,
                };
                (guard, raw)
            }
        };
        let batch = raw_rows.batch();
        if let Some(w) = token_weights_sum {
            if w.len() != batch {
                return Err(Error::shape(
                    "token_weights_sum",
                    format!("[{batch}] (one value per row)"),
                    &[w.len()],
                ));
            }
        }
        let (tokens_ptr, _t) = tokens.device_ptr(stream);
        let tws = token_weights_sum.map(|w| w.device_ptr(stream));
        let out_dtype =
            validate::pool_output_dtype(T::DTYPE, spec, token_weights_sum.is_some(), None);
        if O::DTYPE != out_dtype {
            return Err(Error::dtype("pooling output", out_dtype.as_str(), O::DTYPE));
        }
        let want = batch * spec.modes.len() * dim;
        if out.len() != want {
            return Err(Error::shape(
                "pooling output",
                format!("[{batch}, {}] ({want} elements)", spec.modes.len() * dim),
                &[out.len()],
            ));
        }
        let (out_ptr, _o) = out.device_ptr_mut(stream);
        let raw = RawPool {
            tokens: tokens_ptr,
            dtype: T::DTYPE,
            token_rows,
            dim,
            rows: raw_rows,
            spec,
            token_weights_sum: tws.as_ref().map(|(p, _)| *p),
            out: out_ptr,
            normalize,
        };
        // SAFETY: every pointer comes from a cudarc view of this context (stream checked)
        // with the length the contract of `pool_raw` asks for (checked above: tokens
        // token_rows × dim, the layout buffer, token_weights_sum B, out B × modes × dim); out
        // is borrowed mutably, so it overlaps no input; the borrows and guards outlive the
        // enqueue.
        unsafe { self.pool_raw(stream.cu_stream(), &raw) }
    }

    /// [`CudaDevice::pool_views`] on raw device pointers, for foreign callers (C, Python).
    ///
    /// # Safety
    /// `stream` is a live stream of this device's context. In that context: `p.tokens` holds
    /// `p.token_rows × p.dim` elements of `p.dtype`; the buffer of `p.rows` holds what its
    /// variant documents; `p.token_weights_sum`, when given, `batch` f32 values; `p.out`
    /// `batch × modes × dim` elements of [`RawPool::out_dtype`], overlapping no input. All stay
    /// allocated until the launch has run on `stream`. The *values* in the layout buffer need
    /// not be valid: the kernel clamps them into the token rows.
    #[allow(unsafe_code)]
    pub unsafe fn pool_raw(&self, stream: CUstream, p: &RawPool<'_>) -> Result<()> {
        let batch = p.rows.batch();
        if let RawRows::Spans { .. } = p.rows {
            validate::span_spec(p.spec)?;
        }
        // The checks every backend shares: modes, dtype (no extras on this path).
        let out_dtype =
            validate::pool_inputs(batch, p.dim, p.dtype, p.spec, &PoolExtras::default())
                .map(|_| p.out_dtype())?;
        let problem = PoolProblem {
            dtype: p.dtype,
            out_dtype,
            batch,
            dim: p.dim,
            modes: &p.spec.modes,
            source: p.rows.source(p.token_rows)?,
            prompt: p.spec.excluded_prompt(),
            normalize: p.normalize,
            aligned: aligned16(&[p.tokens]),
        };
        let Some(l) = pool_launch(&problem)? else {
            return Ok(());
        };
        let args = l.args(PoolBuffers {
            tokens: p.tokens,
            cls: None,
            ranges: p.rows.buffer(),
            segments: None,
            row_rows: None,
            row_divisors: None,
            token_weights_sum: p.token_weights_sum,
            out: p.out,
        });
        // SAFETY: the caller's contract above gives every buffer's extent; the kernel clamps
        // the layout's values into token_rows (`seq_len` argument) and reads the mask only at
        // b × seq_len + j < token_rows; 16-byte loads only for an aligned token buffer.
        unsafe { self.launch(&l.shape, stream, &args) }
    }
}
