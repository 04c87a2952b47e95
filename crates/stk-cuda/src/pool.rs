//! Fused masked pooling (`kernels/pool.cu`): every mode of a [`PoolingSpec`] in one launch.
//!
//! The host turns the batch (padded with a mask, or varlen with `cu_seq_lens`) into a
//! [`PoolPlan`]: for each output row, the runs of token rows that count (after prompt
//! exclusion), the row `cls` and `lasttoken` read, the row whose `weightedmean` weight is 1,
//! and the three divisors. The kernel then reads each counted token row exactly once and no
//! padded row, whatever the mask looks like (left or right padding, or holes), and cannot index
//! outside the token buffer: every row number in the plan is below the batch's row count.

use crate::device::{CudaDevice, DeviceTensor};
use crate::launch::{Arg, LaunchShape};
use crate::normalize::NormRule;
use crate::ptx;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use std::ops::Range;
use stk_core::validate::{self, PoolExtras};
use stk_core::{
    DType, Error, PaddedBatch, PoolingMode, PoolingSpec, Result, SpanBatch, Tensor, VarlenBatch,
};

/// Threads per block of `pool_sum_*` (`POOL_SUM_THREADS` in `kernels/pool.cu`).
pub const POOL_SUM_THREADS: u32 = 512;
/// Threads per block of `pool_full_*` (`POOL_FULL_THREADS` in `kernels/pool.cu`).
pub const POOL_FULL_THREADS: u32 = 256;
/// Output slots one launch can fill (4 bits each in a 64-bit argument).
pub const MAX_POOL_SLOTS: usize = 16;
/// Batches of at least this many output rows fill the GPU with one block per row and are
/// never split.
pub const SPLIT_BELOW_BATCH: usize = 256;
/// A chunk of a split row has at least this many token rows (on average).
pub const SPLIT_MIN_ROWS: usize = 128;
/// Blocks a split launch aims for: a few waves on a 132-SM H200. A constant rather than the
/// device's SM count, so that the chunking, and with it the result's bits, is the same on
/// every GPU.
pub const SPLIT_TARGET_BLOCKS: usize = 512;

/// Chunks each output row is split into (1: no split) for `batch` output rows of
/// `rows_per_output` token rows on average: small batches of long rows are split until the
/// launch has about [`SPLIT_TARGET_BLOCKS`] blocks, chunks of at least [`SPLIT_MIN_ROWS`].
pub fn split_chunks(batch: usize, rows_per_output: usize) -> usize {
    if batch == 0 || batch >= SPLIT_BELOW_BATCH {
        return 1;
    }
    let by_rows = rows_per_output / SPLIT_MIN_ROWS;
    let by_grid = SPLIT_TARGET_BLOCKS.div_ceil(batch);
    by_rows.min(by_grid).max(1)
}

/// Bytes of device workspace a split pooling of `batch` rows in `chunks` chunks of `dim`
/// columns needs (0 without a split): each row's facts (8 int64), then the chunks' f32
/// partial sums, weighted sums and maxima (`[B, chunks, 3, D]`), as `kernels/pool.cu` lays
/// them out. `None` when the size overflows.
pub fn pool_workspace_bytes(batch: usize, chunks: usize, dim: usize) -> Option<usize> {
    if chunks <= 1 {
        return Some(0);
    }
    let partials = batch
        .checked_mul(chunks)?
        .checked_mul(3)?
        .checked_mul(dim)?
        .checked_mul(4)?;
    batch.checked_mul(64)?.checked_add(partials)
}

/// The kernel's code for a mode (`MODE_*` in `kernels/pool.cu`).
fn mode_code(m: PoolingMode) -> u64 {
    match m {
        PoolingMode::Cls => 0,
        PoolingMode::Max => 1,
        PoolingMode::Mean => 2,
        PoolingMode::MeanSqrtLenTokens => 3,
        PoolingMode::WeightedMean => 4,
        PoolingMode::LastToken => 5,
    }
}

/// The token embeddings to pool, in any layout.
#[derive(Debug, Clone, Copy)]
pub enum PoolInput<'a> {
    /// `[B, T, D]` tokens with an optional `[B, T]` 0/1 attention mask.
    Padded(&'a PaddedBatch),
    /// `[N, D]` tokens and `cu_seq_lens [B + 1]`.
    Varlen(&'a VarlenBatch),
    /// Late chunking: one output row per span.
    Spans(&'a SpanBatch),
}

impl<'a> From<&'a PaddedBatch> for PoolInput<'a> {
    fn from(b: &'a PaddedBatch) -> Self {
        PoolInput::Padded(b)
    }
}
impl<'a> From<&'a VarlenBatch> for PoolInput<'a> {
    fn from(b: &'a VarlenBatch) -> Self {
        PoolInput::Varlen(b)
    }
}
impl<'a> From<&'a SpanBatch> for PoolInput<'a> {
    fn from(b: &'a SpanBatch) -> Self {
        PoolInput::Spans(b)
    }
}

impl PoolInput<'_> {
    fn tokens(&self) -> &Tensor {
        match self {
            PoolInput::Padded(b) => b.tokens(),
            PoolInput::Varlen(b) => b.tokens(),
            PoolInput::Spans(b) => b.tokens(),
        }
    }
}

/// Everything a pooling launch needs besides the buffers, checked against the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPlan {
    /// The element type the kernel reads (the tokens' dtype, or f32, see [`PoolPlan::dtype`]).
    dtype: DType,
    out_dtype: DType,
    batch: usize,
    dim: usize,
    token_rows: usize,
    modes: Vec<PoolingMode>,
    row_segments: Vec<i64>,
    segments: Vec<i64>,
    row_rows: Vec<i64>,
    row_divisors: Vec<f32>,
    cls_embeddings: bool,
}

/// The per-row facts the plan records, gathered by the layout-specific builders.
struct RowFacts {
    cls_row: i64,
    last_row: i64,
    origin: i64,
    count: usize,
    weight_total: u64,
}

impl PoolPlan {
    /// Check `input`, `spec` and `extras` against each other and build the launch description.
    pub fn new(input: PoolInput<'_>, spec: &PoolingSpec, extras: &PoolExtras<'_>) -> Result<Self> {
        let tokens = input.tokens();
        let (batch, dim, token_rows) = match input {
            PoolInput::Padded(b) => (b.batch(), b.dim(), b.batch() * b.seq_len()),
            PoolInput::Varlen(b) => (b.num_seqs(), b.dim(), b.tokens().dims()[0]),
            PoolInput::Spans(b) => (b.num_spans(), b.dim(), b.tokens().dims()[0]),
        };
        // The checks and the output dtype every backend shares (the CPU makes the same call).
        let out_dtype = validate::pool_inputs(batch, dim, tokens.dtype(), spec, extras)?;
        check_launch_limits(spec, batch, dim, tokens.dims())?;
        if let PoolInput::Spans(_) = input {
            validate::span_spec(spec)?;
        }
        let dtype = tokens.dtype();
        // cls embeddings matter only to a `cls` slot.
        let cls = extras
            .cls_token_embeddings
            .filter(|_| spec.modes.contains(&PoolingMode::Cls));
        // The kernel reads one element type for tokens and cls embeddings: when cls
        // embeddings of another dtype promote the output to f32, both are read as f32
        // (exact widening), so nothing is rounded that the reference keeps.
        let dtype = match cls {
            Some(c) if c.dtype() != dtype => DType::F32,
            _ => dtype,
        };

        let prompt = spec.excluded_prompt();
        let mut row_segments = Vec::with_capacity(batch + 1);
        let mut segments = Vec::new();
        let mut facts = Vec::with_capacity(batch);
        row_segments.push(0i64);
        match input {
            PoolInput::Padded(b) => {
                for i in 0..batch {
                    facts.push(padded_row(b, i, prompt, &mut segments));
                    row_segments.push((segments.len() / 2) as i64);
                }
            }
            PoolInput::Varlen(b) => {
                for i in 0..batch {
                    facts.push(run_row(b.seq(i), prompt, &mut segments));
                    row_segments.push((segments.len() / 2) as i64);
                }
            }
            PoolInput::Spans(b) => {
                for span in b.spans() {
                    facts.push(run_row(span.clone(), prompt, &mut segments));
                    row_segments.push((segments.len() / 2) as i64);
                }
            }
        }

        let tws = extras.token_weights_sum;
        let mut row_rows = Vec::with_capacity(3 * batch);
        let mut row_divisors = Vec::with_capacity(3 * batch);
        for (i, f) in facts.iter().enumerate() {
            row_rows.extend_from_slice(&[f.cls_row, f.last_row, f.origin]);
            // The reference's divisors, in f32 as it computes them: clamp(n, 1e-9), its square
            // root, and clamp(Σw, 1e-9); token_weights_sum replaces n and Σw when given.
            let n = tws.map_or(f.count as f32, |w| w[i]);
            let div_mean = n.max(1e-9);
            let div_weighted = tws.map_or(f.weight_total as f32, |w| w[i]).max(1e-9);
            row_divisors.extend_from_slice(&[div_mean, div_mean.sqrt(), div_weighted]);
        }

        Ok(PoolPlan {
            dtype,
            out_dtype,
            batch,
            dim,
            token_rows,
            modes: spec.modes.clone(),
            row_segments,
            segments,
            row_rows,
            row_divisors,
            cls_embeddings: cls.is_some(),
        })
    }

    /// The element type the kernel reads: the tokens' dtype, or f32 when `cls` takes
    /// `cls_token_embeddings` of another dtype (both are then uploaded as f32).
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The reference's output dtype: the input dtype, promoted to f32 when an f32
    /// `token_weights_sum` divides a mode or `cls` takes embeddings of another dtype.
    pub fn out_dtype(&self) -> DType {
        self.out_dtype
    }
    /// Output rows (sequences or spans).
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Columns per mode (D).
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Rows of the token buffer (`B * T` padded, `N` varlen).
    pub fn token_rows(&self) -> usize {
        self.token_rows
    }
    /// The pooling modes, in output order.
    pub fn modes(&self) -> &[PoolingMode] {
        &self.modes
    }
    /// `[B, modes * D]`.
    pub fn out_dims(&self) -> [usize; 2] {
        [self.batch, self.modes.len() * self.dim]
    }
    /// CSR over [`PoolPlan::segments`]: row `b` owns segments `row_segments[b]..row_segments[b+1]`.
    pub fn row_segments(&self) -> &[i64] {
        &self.row_segments
    }
    /// `(begin, end)` pairs of token rows that count, flattened.
    pub fn segments(&self) -> &[i64] {
        &self.segments
    }
    /// Per row: cls token row (−1: zeros), last-token row (−1: zeros; −2 − r: row r times 0),
    /// weight-origin row.
    pub fn row_rows(&self) -> &[i64] {
        &self.row_rows
    }
    /// Per row: mean, mean_sqrt_len_tokens and weightedmean divisors.
    pub fn row_divisors(&self) -> &[f32] {
        &self.row_divisors
    }
    /// Whether `cls` reads `cls_token_embeddings` instead of token rows (given, and a `cls`
    /// slot exists).
    pub fn uses_cls_embeddings(&self) -> bool {
        self.cls_embeddings
    }
    /// The modes packed 4 bits per slot, as the kernel reads them.
    pub fn slot_codes(&self) -> u64 {
        slot_codes(&self.modes)
    }
    /// Whether the kernel must keep weighted sums and maxima (`pool_full_*`).
    pub fn needs_full_kernel(&self) -> bool {
        needs_full_kernel(&self.modes)
    }
}

/// The modes packed 4 bits per slot, as the kernel reads them.
pub fn slot_codes(modes: &[PoolingMode]) -> u64 {
    modes
        .iter()
        .enumerate()
        .fold(0u64, |acc, (k, &m)| acc | (mode_code(m) << (4 * k)))
}

/// Whether the kernel must keep weighted sums and maxima (`pool_full_*`).
pub fn needs_full_kernel(modes: &[PoolingMode]) -> bool {
    modes
        .iter()
        .any(|m| matches!(m, PoolingMode::Max | PoolingMode::WeightedMean))
}

/// What one launch can express: at most [`MAX_POOL_SLOTS`] modes, and B and D that fit the
/// kernel's 32-bit arguments.
fn check_launch_limits(spec: &PoolingSpec, batch: usize, dim: usize, dims: &[usize]) -> Result<()> {
    if spec.modes.len() > MAX_POOL_SLOTS {
        return Err(Error::Unsupported(
            format!(
                "{} pooling modes in one layer (at most {MAX_POOL_SLOTS})",
                spec.modes.len()
            ),
            "cuda".into(),
        ));
    }
    if dim > i32::MAX as usize {
        return Err(Error::shape(
            "token_embeddings",
            format!("D of at most {}", i32::MAX),
            dims,
        ));
    }
    if batch > i32::MAX as usize {
        return Err(Error::shape(
            "token_embeddings",
            format!("at most {} sequences", i32::MAX),
            dims,
        ));
    }
    Ok(())
}

/// Row `i` of a padded batch: its runs of counted positions and facts.
fn padded_row(b: &PaddedBatch, i: usize, prompt: usize, segments: &mut Vec<i64>) -> RowFacts {
    let t = b.seq_len();
    let base = (i * t) as i64;
    let mask = b.mask().map(|m| &m[i * t..(i + 1) * t]);
    let counts = |j: usize| mask.is_none_or(|m| m[j] == 1);
    // Weights and prompt exclusion are numbered from the original mask's first 1.
    let first = (0..t).find(|&j| counts(j)).unwrap_or(0);
    let excluded_end = if prompt > 0 { first + prompt } else { 0 };
    let (mut count, mut weight_total) = (0usize, 0u64);
    let (mut first_real, mut last_real) = (None, None);
    let mut run_start = None;
    for j in 0..=t {
        let real = j < t && j >= excluded_end && counts(j);
        if real {
            count += 1;
            weight_total += (j + 1 - first) as u64;
            first_real.get_or_insert(j);
            last_real = Some(j);
            run_start.get_or_insert(j);
        } else if let Some(s) = run_start.take() {
            segments.extend_from_slice(&[base + s as i64, base + j as i64]);
        }
    }
    RowFacts {
        // argmax of an all-zero mask row is position 0; a row of no positions has no token.
        cls_row: match first_real {
            Some(j) => base + j as i64,
            None if t > 0 => base,
            None => -1,
        },
        // No real token: the reference gathers position 0 of `x × mask`, that row times 0
        // (which keeps signs, and makes NaN of NaN and inf); encoded as −2 − row.
        last_row: match last_real {
            Some(j) => base + j as i64,
            None if t > 0 => -2 - base,
            None => -1,
        },
        origin: base + first as i64,
        count,
        weight_total,
    }
}

/// A run of token rows that all count (a varlen sequence or a span): one segment (the rows
/// after the prompt).
fn run_row(range: Range<usize>, prompt: usize, segments: &mut Vec<i64>) -> RowFacts {
    let len = range.len();
    let skip = prompt.min(len);
    let (start, end) = (range.start + skip, range.end);
    if start < end {
        segments.extend_from_slice(&[start as i64, end as i64]);
    }
    // Weights are the in-sequence position + 1: Σ_{k = skip+1}^{len} k.
    let tri = |n: u64| n * (n + 1) / 2;
    RowFacts {
        cls_row: if len > prompt {
            start as i64
        } else if len > 0 {
            range.start as i64
        } else {
            -1
        },
        last_row: if len > 0 { end as i64 - 1 } else { -1 },
        origin: range.start as i64,
        count: end - start,
        weight_total: tri(len as u64) - tri(skip as u64),
    }
}

#[doc(hidden)]
/// Where a launch finds each output row's token rows (`SOURCE_*` in `kernels/pool.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSource {
    /// A host [`PoolPlan`]'s tables (any mask, cls embeddings).
    Plan,
    /// `cu_seq_lens [B + 1]` (i32) over `token_rows` varlen rows.
    CuSeqLens { token_rows: usize },
    /// `spans [B, 2]` (i64 start, end) over `token_rows` rows.
    Spans { token_rows: usize },
    /// A padded batch's mask `[B, seq_len]` of `mask_bytes`-wide integers (nonzero counts).
    Mask { seq_len: usize, mask_bytes: i32 },
}

impl RowSource {
    fn code(self) -> i32 {
        match self {
            RowSource::Plan => 0,
            RowSource::CuSeqLens { .. } => 1,
            RowSource::Spans { .. } => 2,
            RowSource::Mask { .. } => 3,
        }
    }
    /// The kernel's `seq_len` argument: T of a mask, the token rows of cu_seq_lens and spans.
    fn extent(self) -> usize {
        match self {
            RowSource::Plan => 0,
            RowSource::CuSeqLens { token_rows } | RowSource::Spans { token_rows } => token_rows,
            RowSource::Mask { seq_len, .. } => seq_len,
        }
    }
}

#[doc(hidden)]
/// What one pooling launch computes, whatever its row source.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolProblem<'a> {
    /// The element type the kernel reads.
    pub dtype: DType,
    pub out_dtype: DType,
    /// Output rows (sequences or spans).
    pub batch: usize,
    pub dim: usize,
    pub modes: &'a [PoolingMode],
    pub source: RowSource,
    /// Positions left out at the start of each row (device sources; a plan has applied it).
    pub prompt: usize,
    pub normalize: bool,
    /// Whether the tokens (and cls embeddings) and the output are 16-byte aligned (the
    /// packed kernels load and store 16 bytes at a time): whole allocations are; a caller's
    /// view may not be, and then gets the element-wise kernel.
    pub aligned: bool,
}

#[doc(hidden)]
/// One pooling launch: its shape and scalar arguments ([`PoolLaunch::args`] gives the order).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolLaunch {
    pub shape: LaunchShape,
    pub source: i32,
    pub seq_len: i64,
    pub mask_bytes: i32,
    pub prompt: i64,
    pub out_f32: i32,
    pub dim: i32,
    pub lanes: i32,
    pub slots: u64,
    pub num_slots: i32,
    pub normalize: i32,
    pub norm: NormRule,
    /// `PHASE_*` of `kernels/pool.cu`: 0 one launch per batch, else 1 (row facts), 2 (chunk
    /// partials), 3 (combine and epilogue) of a split.
    pub phase: i32,
    /// Chunks per output row (1 without a split).
    pub chunks: i32,
}

#[doc(hidden)]
/// The buffers of one pooling launch. `ranges` is the plan's `row_segments` or the device
/// source's buffer; the plan's other tables are given exactly with [`RowSource::Plan`].
#[derive(Debug, Clone)]
pub struct PoolBuffers<B> {
    pub tokens: B,
    pub cls: Option<B>,
    pub ranges: B,
    pub segments: Option<B>,
    pub row_rows: Option<B>,
    pub row_divisors: Option<B>,
    pub token_weights_sum: Option<B>,
    pub out: B,
    /// The split launches' workspace ([`pool_workspace_bytes`]); `None` without a split.
    pub workspace: Option<B>,
}

impl PoolLaunch {
    /// The kernel's argument list, in the order of `POOL_KERNEL` in `kernels/pool.cu`.
    pub fn args<B>(&self, b: PoolBuffers<B>) -> Vec<Arg<B>> {
        vec![
            Arg::Buf(b.tokens),
            Arg::opt(b.cls),
            Arg::I32(self.source),
            Arg::Buf(b.ranges),
            Arg::opt(b.segments),
            Arg::opt(b.row_rows),
            Arg::opt(b.row_divisors),
            Arg::opt(b.token_weights_sum),
            Arg::I64(self.seq_len),
            Arg::I32(self.mask_bytes),
            Arg::I64(self.prompt),
            Arg::Buf(b.out),
            Arg::I32(self.out_f32),
            Arg::I32(self.dim),
            Arg::I32(self.lanes),
            Arg::U64(self.slots),
            Arg::I32(self.num_slots),
            Arg::I32(self.normalize),
            Arg::F32(self.norm.add),
            Arg::F32(self.norm.floor),
            Arg::I32(self.phase),
            Arg::I32(self.chunks),
            Arg::opt(b.workspace),
        ]
    }
}

#[doc(hidden)]
/// Threads per block, threads per group (`lanes`) and dynamic shared memory bytes of a
/// pooling kernel reading `dim` columns in packs of `v`.
pub fn block_shape(full: bool, dim: usize, v: usize) -> (u32, u32, u32) {
    let threads = if full {
        POOL_FULL_THREADS
    } else {
        POOL_SUM_THREADS
    };
    let packs = (dim / v).max(1);
    // A group spans the row's packs, in whole warps, at most the whole block.
    let lanes = (packs.div_ceil(32) * 32).min(threads as usize) as u32;
    // Each thread's f64 sum totals (which first hold the mask reductions' int64s), with the
    // full kernel its f64 weighted-sum totals and the maxima's f32 combine area, then
    // block_sum's 32 floats and the row's epilogue facts (8 int64), as `pool_body` lays them
    // out.
    let per_thread = if full { 8 + 8 + 4 } else { 8 };
    let shared = threads as usize * v * per_thread + (32 + 16) * 4;
    (threads, lanes, shared as u32)
}

#[doc(hidden)]
/// The launch carrying out `p` (`None` when there is nothing to compute: no row or D = 0).
pub fn pool_launch(p: &PoolProblem<'_>) -> Result<Option<PoolLaunch>> {
    if p.modes.is_empty() || p.modes.len() > MAX_POOL_SLOTS {
        return Err(Error::invalid(format!(
            "{} pooling modes in one launch (1 to {MAX_POOL_SLOTS})",
            p.modes.len()
        )));
    }
    if p.batch == 0 || p.dim == 0 {
        return Ok(None);
    }
    let dim =
        i32::try_from(p.dim).map_err(|_| Error::invalid(format!("D = {} exceeds 2^31", p.dim)))?;
    let grid = u32::try_from(p.batch)
        .map_err(|_| Error::invalid(format!("{} rows exceed one launch", p.batch)))?;
    let full = needs_full_kernel(p.modes);
    let packed = p.aligned && p.dim % ptx::pack_width(p.dtype) == 0;
    let v = if packed { ptx::pack_width(p.dtype) } else { 1 };
    let (threads, lanes, shared_bytes) = block_shape(full, p.dim, v);
    let op = if full { "pool_full" } else { "pool_sum" };
    Ok(Some(PoolLaunch {
        shape: LaunchShape {
            kernel: ptx::select(op, p.dtype, packed)?,
            grid,
            threads,
            shared_bytes,
        },
        source: p.source.code(),
        seq_len: p.source.extent() as i64,
        mask_bytes: match p.source {
            RowSource::Mask { mask_bytes, .. } => mask_bytes,
            _ => 0,
        },
        prompt: p.prompt as i64,
        out_f32: i32::from(p.out_dtype == DType::F32 && p.dtype != DType::F32),
        dim,
        lanes: lanes as i32,
        slots: slot_codes(p.modes),
        num_slots: p.modes.len() as i32,
        normalize: i32::from(p.normalize),
        norm: NormRule::SENTENCE_TRANSFORMERS,
        phase: 0,
        chunks: 1,
    }))
}

/// The launches carrying out `p` with each output row split into `chunks` chunks, in the
/// order they are enqueued on one stream: one launch when `chunks <= 1`, else the row facts,
/// the chunk partials (`batch × chunks` blocks) and the combine (`None`: nothing to compute).
/// The split launches need a workspace of [`pool_workspace_bytes`].
#[doc(hidden)]
pub fn pool_split_launches(p: &PoolProblem<'_>, chunks: usize) -> Result<Option<Vec<PoolLaunch>>> {
    let Some(whole) = pool_launch(p)? else {
        return Ok(None);
    };
    if chunks <= 1 {
        return Ok(Some(vec![whole]));
    }
    let too_many = || {
        Error::invalid(format!(
            "{} rows in {chunks} chunks exceed one launch",
            p.batch
        ))
    };
    let split_grid =
        u32::try_from(p.batch.checked_mul(chunks).ok_or_else(too_many)?).map_err(|_| too_many())?;
    let chunks = i32::try_from(chunks).map_err(|_| too_many())?;
    let phase = |phase: i32, grid: u32| {
        let mut l = whole.clone();
        l.phase = phase;
        l.chunks = chunks;
        l.shape.grid = grid;
        l
    };
    Ok(Some(vec![
        phase(1, whole.shape.grid),
        phase(2, split_grid),
        phase(3, whole.shape.grid),
    ]))
}

impl PoolPlan {
    /// Chunks each output row is split into ([`split_chunks`] of the batch and the token rows
    /// per output row, counted as [`crate::RawPool::chunks`] counts them): 1 for batches that
    /// fill the GPU with one block per row.
    pub fn chunks(&self) -> usize {
        split_chunks(
            self.batch,
            self.token_rows.checked_div(self.batch).unwrap_or(0),
        )
    }

    /// Bytes of device workspace the plan's launches need ([`pool_workspace_bytes`]; 0
    /// without a split).
    pub fn workspace_bytes(&self) -> Result<usize> {
        split_workspace_bytes(self.batch, self.chunks(), self.dim)
    }

    #[doc(hidden)]
    /// The launches that carry out this plan, in stream order: one, or the three of a split
    /// ([`pool_split_launches`] with [`PoolPlan::chunks`]); `None` when there is nothing to
    /// compute (no sequence or D = 0).
    pub fn launches(&self, normalize: bool) -> Result<Option<Vec<PoolLaunch>>> {
        let problem = PoolProblem {
            dtype: self.dtype,
            out_dtype: self.out_dtype,
            batch: self.batch,
            dim: self.dim,
            modes: &self.modes,
            source: RowSource::Plan,
            prompt: 0,
            normalize,
            aligned: true,
        };
        pool_split_launches(&problem, self.chunks())
    }

    /// Check the buffers of a launch of this plan, each as its dtype and dimensions:
    /// `tokens` holds the plan's token rows × D elements of [`PoolPlan::dtype`], `cls` is
    /// given exactly when the plan uses cls embeddings (`[B, D]`, same dtype), `out` is
    /// [`PoolPlan::out_dims`] of [`PoolPlan::out_dtype`]. [`CudaDevice::pool_device`] makes
    /// this check before any launch.
    pub fn check_buffers(
        &self,
        tokens: (DType, &[usize]),
        cls: Option<(DType, &[usize])>,
        out: (DType, &[usize]),
    ) -> Result<()> {
        if tokens.0 != self.dtype {
            return Err(Error::dtype(
                "pooling tokens",
                self.dtype.as_str(),
                tokens.0,
            ));
        }
        if tokens.1.iter().product::<usize>() != self.token_rows * self.dim {
            return Err(Error::shape(
                "pooling tokens",
                format!("{} rows of {}", self.token_rows, self.dim),
                tokens.1,
            ));
        }
        match (cls, self.cls_embeddings) {
            (None, false) => {}
            (Some((dtype, dims)), true) => {
                if dtype != self.dtype || dims != [self.batch, self.dim] {
                    return Err(Error::shape(
                        "cls_token_embeddings",
                        format!("[{}, {}] {}", self.batch, self.dim, self.dtype),
                        dims,
                    ));
                }
            }
            _ => {
                return Err(Error::invalid(
                    "cls_token_embeddings must be given exactly when the plan was built with them",
                ))
            }
        }
        if out.0 != self.out_dtype {
            return Err(Error::dtype(
                "pooling output",
                self.out_dtype.as_str(),
                out.0,
            ));
        }
        if out.1 != self.out_dims() {
            return Err(Error::shape(
                "pooling output",
                format!("{:?}", self.out_dims()),
                out.1,
            ));
        }
        Ok(())
    }
}

/// [`pool_workspace_bytes`], an error when the size overflows.
pub(crate) fn split_workspace_bytes(batch: usize, chunks: usize, dim: usize) -> Result<usize> {
    pool_workspace_bytes(batch, chunks, dim).ok_or_else(|| {
        Error::invalid(format!(
            "a workspace for {batch} rows in {chunks} chunks of {dim} columns overflows"
        ))
    })
}

/// The workspace address a launch of `batch` rows in `chunks` chunks of `dim` columns gets:
/// `None` without a split (nothing is read or written then); with one, the caller's
/// `(address, bytes)`, checked to be 8-byte aligned and at least [`pool_workspace_bytes`] long.
pub(crate) fn split_workspace(
    batch: usize,
    chunks: usize,
    dim: usize,
    workspace: Option<(u64, usize)>,
) -> Result<Option<u64>> {
    if chunks <= 1 {
        return Ok(None);
    }
    let need = split_workspace_bytes(batch, chunks, dim)?;
    match workspace {
        Some((ptr, bytes)) if bytes >= need && ptr % 8 == 0 => Ok(Some(ptr)),
        Some((ptr, bytes)) => Err(Error::invalid(format!(
            "pooling workspace of {bytes} bytes at {ptr:#x}: {need} bytes, 8-byte aligned, needed"
        ))),
        None => Err(Error::invalid("a split pooling needs a workspace")),
    }
}

/// A [`PoolPlan`] with its tables on the device, reusable across launches.
#[derive(Debug)]
pub struct DevicePoolPlan {
    plan: PoolPlan,
    row_segments: CudaSlice<i64>,
    segments: CudaSlice<i64>,
    row_rows: CudaSlice<i64>,
    row_divisors: CudaSlice<f32>,
}

impl DevicePoolPlan {
    /// The host plan these tables were uploaded from.
    pub fn plan(&self) -> &PoolPlan {
        &self.plan
    }
}

impl CudaDevice {
    /// Pool a batch on the GPU (host in, host out): `[B, modes × D]` in the input dtype, or f32
    /// with `token_weights_sum`. With `normalize`, each output row is then divided by
    /// `max(‖row‖, 1e-12)` as a sentence-transformers `Normalize` module would, in the same launch.
    /// A small batch of long rows is split over several blocks as the device-buffer API
    /// splits it ([`PoolPlan::chunks`]), with a workspace allocated for the call.
    pub fn pool<'a>(
        &self,
        input: impl Into<PoolInput<'a>>,
        spec: &PoolingSpec,
        extras: &PoolExtras<'_>,
        normalize: bool,
    ) -> Result<Tensor> {
        let input = input.into();
        let plan = PoolPlan::new(input, spec, extras)?;
        if plan.batch() == 0 || plan.dim() == 0 {
            return Tensor::zeros(plan.out_dims(), plan.out_dtype());
        }
        let tokens = self.upload(&input.tokens().to_dtype(plan.dtype())?)?;
        let cls = match extras.cls_token_embeddings {
            Some(c) if plan.uses_cls_embeddings() => Some(self.upload(&c.to_dtype(plan.dtype())?)?),
            _ => None,
        };
        let device_plan = self.upload_pool_plan(&plan)?;
        let mut out = self.zeros(plan.out_dims(), plan.out_dtype())?;
        self.pool_device(&tokens, cls.as_ref(), &device_plan, normalize, &mut out)?;
        self.download(&out)
    }

    /// Copy a plan's tables to the device.
    pub fn upload_pool_plan(&self, plan: &PoolPlan) -> Result<DevicePoolPlan> {
        Ok(DevicePoolPlan {
            plan: plan.clone(),
            row_segments: self.htod(&plan.row_segments)?,
            segments: self.htod(&plan.segments)?,
            row_rows: self.htod(&plan.row_rows)?,
            row_divisors: self.htod(&plan.row_divisors)?,
        })
    }

    /// The pooling kernel on device buffers: `tokens` holds the plan's token rows × D elements
    /// of its dtype, `cls` is given exactly when the plan uses cls embeddings (`[B, D]`, same
    /// dtype), `out` is `[B, modes × D]` of the plan's output dtype. When the plan splits its
    /// rows ([`PoolPlan::chunks`] > 1), the call allocates the workspace of
    /// [`PoolPlan::workspace_bytes`] on this handle's stream and runs the three launches there.
    #[allow(unsafe_code)]
    pub fn pool_device(
        &self,
        tokens: &DeviceTensor,
        cls: Option<&DeviceTensor>,
        plan: &DevicePoolPlan,
        normalize: bool,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        let p = &plan.plan;
        p.check_buffers(
            (tokens.dtype(), tokens.dims()),
            cls.map(|c| (c.dtype(), c.dims())),
            (out.dtype(), out.dims()),
        )?;
        let Some(launches) = p.launches(normalize)? else {
            return Ok(());
        };
        let chunks = p.chunks();
        let mut workspace = match p.workspace_bytes()? {
            0 => None,
            bytes => Some(self.alloc_zeros::<u8>(bytes)?),
        };
        let stream = self.stream();
        let (tokens_ptr, _t) = tokens.ptr(stream);
        let cls_ptr = cls.map(|c| c.ptr(stream));
        let tables = [
            plan.row_segments.device_ptr(stream),
            plan.segments.device_ptr(stream),
            plan.row_rows.device_ptr(stream),
        ];
        let (divisors_ptr, _d) = plan.row_divisors.device_ptr(stream);
        let (out_ptr, _o) = out.ptr_mut(stream);
        let ws = workspace.as_mut().map(|w| {
            let bytes = w.len();
            (w.device_ptr_mut(stream), bytes)
        });
        let ws_ptr = split_workspace(
            p.batch,
            chunks,
            p.dim,
            ws.as_ref().map(|((ptr, _), bytes)| (*ptr, *bytes)),
        )?;
        for l in &launches {
            let args = l.args(PoolBuffers {
                tokens: tokens_ptr,
                cls: cls_ptr.as_ref().map(|(p, _)| *p),
                ranges: tables[0].0,
                segments: Some(tables[1].0),
                row_rows: Some(tables[2].0),
                row_divisors: Some(divisors_ptr),
                token_weights_sum: None,
                out: out_ptr,
                workspace: ws_ptr,
            });
            // SAFETY: whole allocations of this device. Every row number in the plan is below
            // token_rows (built from the validated batch); tokens holds token_rows * D
            // elements, cls [B, D], out [B, slots * D] (checked above); the tables hold B + 1,
            // 2 * segments, 3 * B and 3 * B entries; a split's workspace was allocated here
            // with the plan's `pool_workspace_bytes` (checked by `split_workspace`); shared
            // memory is what `block_shape` sizes for the kernel. The guards keep every buffer
            // alive past the enqueue, and the launches run in order on this one stream.
            unsafe { self.launch(&l.shape, stream.cu_stream(), &args) }?;
        }
        Ok(())
    }
}
