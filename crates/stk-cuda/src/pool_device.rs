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
use crate::pool::{
    pool_split_launches, pool_workspace_bytes, split_chunks, split_workspace, PoolBuffers,
    PoolProblem, RowSource,
};
use crate::views::{aligned16, rows_of, FloatElement, MaskElement};
use cudarc::driver::sys::CUstream;
use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use stk_core::validate::{self, PoolExtras};
use stk_core::{DType, Error, PoolingSpec, Result};

/// How a device batch is laid out, with its index buffer on the device.
#[derive(Debug)]
pub enum DeviceRows<'a, 'b, M: MaskElement = i64> {
    /// Varlen: `[N, D]` tokens, `cu_seq_lens [B + 1]` (i32, as flash-attention keeps them).
    Varlen {
        /// Sequence `b` is token rows `cu_seq_lens[b]..cu_seq_lens[b + 1]`.
        cu_seq_lens: &'a CudaView<'b, i32>,
    },
    /// Late chunking: `[N, D]` tokens, `spans [S, 2]` (i64 start and end rows); one output
    /// row per span.
    Spans {
        /// Span `s` is token rows `spans[2s]..spans[2s + 1]`.
        spans: &'a CudaView<'b, i64>,
    },
    /// Padded: `[B, seq_len, D]` tokens and their `[B, seq_len]` attention mask (any integer
    /// width; nonzero counts).
    Padded {
        /// T: positions per sequence.
        seq_len: usize,
        /// `[B, T]` attention mask, row-major.
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
    Varlen {
        /// Device address of the i32 `cu_seq_lens`.
        cu_seq_lens: u64,
        /// B: sequences (output rows).
        batch: usize,
    },
    /// `spans`: `batch * 2` i64 values.
    Spans {
        /// Device address of the i64 (start, end) pairs.
        spans: u64,
        /// S: spans (output rows).
        batch: usize,
    },
    /// `mask`: `batch * seq_len` integers of `mask_bytes` (1, 4 or 8) bytes.
    Padded {
        /// Device address of the `[B, T]` mask.
        mask: u64,
        /// B: sequences (output rows).
        batch: usize,
        /// T: positions per sequence.
        seq_len: usize,
        /// Bytes per mask element: 1, 4 or 8.
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
    /// Element type of the tokens: f32, f16 or bf16.
    pub dtype: DType,
    /// Rows of the token buffer (`B × T` padded, `N` varlen and spans).
    pub token_rows: usize,
    /// D: columns per token row.
    pub dim: usize,
    /// How the token rows form output rows, with the layout buffer's address.
    pub rows: RawRows,
    /// The modes (in output order) and the prompt exclusion.
    pub spec: &'a PoolingSpec,
    /// `batch` f32 values replacing the token counts as divisors (WordWeights), or `None`.
    pub token_weights_sum: Option<u64>,
    /// `batch × modes × dim` elements of [`RawPool::out_dtype`].
    pub out: u64,
    /// L2-normalize each output row in the same launch.
    pub normalize: bool,
}

impl RawPool<'_> {
    /// Output rows (sequences or spans).
    pub fn batch(&self) -> usize {
        self.rows.batch()
    }
    /// Chunks each output row is split into by [`CudaDevice::pool_raw_with_workspace`]
    /// (1: one block per row, no workspace needed), from the batch size and the token rows per
    /// output row ([`crate::pool::split_chunks`]).
    pub fn chunks(&self) -> usize {
        let batch = self.batch();
        let rows_per_output = match self.rows {
            RawRows::Padded { seq_len, .. } => seq_len,
            _ => self.token_rows.checked_div(batch).unwrap_or(0),
        };
        split_chunks(batch, rows_per_output)
    }
    /// Bytes of device workspace [`CudaDevice::pool_raw_with_workspace`] needs for this
    /// pooling (0: none; `usize::MAX` when the size overflows).
    pub fn workspace_bytes(&self) -> usize {
        pool_workspace_bytes(self.batch(), self.chunks(), self.dim).unwrap_or(usize::MAX)
    }

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

/// A pooling on a caller's cudarc views ([`CudaDevice::pool_views`]): the input side of the
/// call, as [`RawPool`] is for raw pointers.
#[derive(Debug)]
pub struct ViewPool<'a, 'b, T, M: MaskElement = i64> {
    /// `[rows, dim]` token embeddings (`[B, T, dim]` for a padded layout).
    pub tokens: &'a CudaView<'b, T>,
    /// D: columns per token row.
    pub dim: usize,
    /// How the token rows form output rows, with the layout buffer.
    pub rows: DeviceRows<'a, 'b, M>,
    /// The modes (in output order) and the prompt exclusion.
    pub spec: &'a PoolingSpec,
    /// `[B]` f32 values replacing the token counts as divisors (WordWeights), or `None`.
    pub token_weights_sum: Option<&'a CudaView<'b, f32>>,
    /// L2-normalize each output row in the same launch.
    pub normalize: bool,
}

impl CudaDevice {
    /// Pool `p.tokens` laid out as `p.rows` into `out` (`[B, modes × dim]`: the tokens' type,
    /// or f32 when `token_weights_sum` divides a mode), on the caller's `stream` (a stream of
    /// this device's context), one block per output row. Every mode of `p.spec`, its prompt
    /// exclusion and the optional normalize run in one launch; nothing is copied, allocated
    /// or synchronized, so the call can be captured in a CUDA graph (with cudarc's event
    /// tracking off, see ARCHITECTURE.md "API for backends").
    pub fn pool_views<T: FloatElement, O: FloatElement, M: MaskElement>(
        &self,
        stream: &CudaStream,
        p: ViewPool<'_, '_, T, M>,
        out: &mut CudaViewMut<'_, O>,
    ) -> Result<()> {
        self.pool_views_split(stream, p, out, None)
    }

    /// [`CudaDevice::pool_views`] with a caller-owned device `workspace` of at least
    /// [`RawPool::workspace_bytes`] bytes (the same for every call of the same shapes, so a
    /// backend sizes it once): a batch too small to fill the GPU with one block per output
    /// row has its rows split over several blocks ([`crate::pool::split_chunks`]), whose
    /// partial sums are combined in a fixed order (no float atomics: the same bits every
    /// run). Three launches on `stream` then (row facts, chunk partials, combine with the
    /// fused normalize); still no copy, allocation or synchronization, so the call can be
    /// captured in a CUDA graph. The workspace's contents need not be initialized and are
    /// scratch afterwards.
    pub fn pool_views_with_workspace<T: FloatElement, O: FloatElement, M: MaskElement>(
        &self,
        stream: &CudaStream,
        p: ViewPool<'_, '_, T, M>,
        out: &mut CudaViewMut<'_, O>,
        workspace: &mut CudaViewMut<'_, u8>,
    ) -> Result<()> {
        self.pool_views_split(stream, p, out, Some((None, workspace)))
    }

    /// [`CudaDevice::pool_views_with_workspace`] with the number of chunks per row chosen by
    /// the caller (tests: splits of short rows); `None` chooses as the public call does.
    #[doc(hidden)]
    #[allow(unsafe_code)]
    pub fn pool_views_split<T: FloatElement, O: FloatElement, M: MaskElement>(
        &self,
        stream: &CudaStream,
        p: ViewPool<'_, '_, T, M>,
        out: &mut CudaViewMut<'_, O>,
        split: Option<(Option<usize>, &mut CudaViewMut<'_, u8>)>,
    ) -> Result<()> {
        let ViewPool {
            tokens,
            dim,
            rows,
            spec,
            token_weights_sum,
            normalize,
        } = p;
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
        let Some((chunks, workspace)) = split else {
            // SAFETY: every pointer comes from a cudarc view of this context (stream
            // checked) with the length the contract of `pool_raw` asks for (checked above:
            // tokens token_rows × dim, the layout buffer, token_weights_sum B, out
            // B × modes × dim); out is borrowed mutably, so it overlaps no input; the borrows
            // and guards outlive the enqueue.
            return unsafe { self.pool_raw(stream.cu_stream(), &raw) };
        };
        let chunks = chunks.unwrap_or_else(|| raw.chunks());
        let ws_len = workspace.len();
        let (ws_ptr, _w) = workspace.device_ptr_mut(stream);
        // SAFETY: as above; the workspace is a view of this context, borrowed mutably (it
        // overlaps nothing else), of workspace.len() bytes, which `pool_raw_chunks` checks
        // against what the split needs.
        unsafe { self.pool_raw_chunks(stream.cu_stream(), &raw, chunks, Some((ws_ptr, ws_len))) }
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
        // SAFETY: the caller's contract, which is this function's.
        unsafe { self.pool_raw_chunks(stream, p, 1, None) }
    }

    /// [`CudaDevice::pool_views_with_workspace`] on raw device pointers, for foreign callers.
    ///
    /// # Safety
    /// The contract of [`CudaDevice::pool_raw`], and: `workspace` is a device address in this
    /// context of `workspace_bytes` bytes, 8-byte aligned, overlapping no other buffer, that
    /// stays allocated until the launches have run on `stream`. `workspace_bytes` must be at
    /// least [`RawPool::workspace_bytes`] (checked; an error otherwise). With
    /// [`RawPool::chunks`] = 1 the workspace is not touched (it may then be 0 and 0).
    #[allow(unsafe_code)]
    pub unsafe fn pool_raw_with_workspace(
        &self,
        stream: CUstream,
        p: &RawPool<'_>,
        workspace: u64,
        workspace_bytes: usize,
    ) -> Result<()> {
        // SAFETY: the caller's contract, which is this function's.
        unsafe { self.pool_raw_chunks(stream, p, p.chunks(), Some((workspace, workspace_bytes))) }
    }

    /// [`CudaDevice::pool_raw_with_workspace`] with `chunks` per output row chosen by the
    /// caller (1: one launch, no workspace read or written).
    ///
    /// # Safety
    /// As [`CudaDevice::pool_raw_with_workspace`], with the workspace of
    /// `pool_workspace_bytes(batch, chunks, dim)` bytes.
    #[doc(hidden)]
    #[allow(unsafe_code)]
    pub unsafe fn pool_raw_chunks(
        &self,
        stream: CUstream,
        p: &RawPool<'_>,
        chunks: usize,
        workspace: Option<(u64, usize)>,
    ) -> Result<()> {
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
            // 16-byte loads of the tokens and 16-byte stores of the output.
            aligned: aligned16(&[p.tokens, p.out]),
        };
        let chunks = chunks.max(1);
        let workspace = split_workspace(batch, chunks, p.dim, workspace)?;
        let Some(launches) = pool_split_launches(&problem, chunks)? else {
            return Ok(());
        };
        for l in &launches {
            let args = l.args(PoolBuffers {
                tokens: p.tokens,
                cls: None,
                ranges: p.rows.buffer(),
                segments: None,
                row_rows: None,
                row_divisors: None,
                token_weights_sum: p.token_weights_sum,
                out: p.out,
                workspace,
            });
            // SAFETY: the caller's contract above gives every buffer's extent; the kernel
            // clamps the layout's values into token_rows (`seq_len` argument) and reads the
            // mask only at b × seq_len + j < token_rows; 16-byte loads and stores only for
            // aligned token and output buffers; a split's workspace holds `pool_workspace_bytes` (checked above),
            // which is what the kernel indexes for B rows in `chunks` chunks of D columns.
            unsafe { self.launch(&l.shape, stream, &args) }?;
        }
        Ok(())
    }
}
