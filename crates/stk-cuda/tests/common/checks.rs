//! Checks of kernel outputs against the CPU, written once for any [`Kernels`] implementation:
//! the GPU (`tests/parity.rs`) and the CPU simulator of the same CUDA sources
//! (`examples/kernel_sim.rs`, run by `cargo xtask kernel-sim`).

use super::{
    golden, golden_cases, normalize_reference, pool_reference_f64, pooling_case, round_to, tensors,
};
use super::{Layout, PaddedProblem, SpanProblem, VarlenProblem};
use proptest::prelude::*;
use stk_core::{DType, PoolingSpec, Result, Tensor, TokenBags};
use stk_cuda::{BagReduce, CudaDevice, DeviceEmbeddingTable, NormRule, PoolExtras, PoolInput};

/// What runs the kernels: the GPU, or the simulator.
pub trait Kernels {
    fn pool(
        &self,
        input: PoolInput<'_>,
        spec: &PoolingSpec,
        extras: &PoolExtras<'_>,
        normalize: bool,
    ) -> Result<Tensor>;
    fn normalize(&self, x: &Tensor, rule: NormRule) -> Result<Tensor>;
    fn weighted_layer_pool(
        &self,
        all_layers: &Tensor,
        layer_start: usize,
        layer_weights: &Tensor,
    ) -> Result<Tensor>;
    #[allow(clippy::too_many_arguments)]
    fn embedding_bag(
        &self,
        table: &Tensor,
        mapping: Option<&Tensor>,
        weights: Option<&Tensor>,
        bags: &TokenBags,
        reduce: BagReduce,
        normalize: Option<NormRule>,
    ) -> Result<Tensor>;
    /// Pooling through the device-buffer path: `tokens` (`[rows, D]` or `[B, T, D]`) and the
    /// layout's index buffer on the device, each row's token rows found by the kernel.
    #[allow(clippy::too_many_arguments)]
    fn pool_device_rows(
        &self,
        tokens: &Tensor,
        rows: &HostRows,
        spec: &PoolingSpec,
        token_weights_sum: Option<&[f32]>,
        normalize: bool,
        split: Split,
    ) -> Result<Tensor>;
}

/// Whether a device-path pooling splits its rows over several blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// One block per output row (`pool_views`, no workspace).
    Never,
    /// As `pool_views_with_workspace` chooses (`split_chunks`).
    Auto,
    /// This many chunks per row (also for rows too short for `Auto` to split).
    Chunks(usize),
}

impl Split {
    /// The chunks per row for `batch` rows of `rows_per_output` token rows.
    pub fn chunks(self, batch: usize, rows_per_output: usize) -> usize {
        match self {
            Split::Never => 1,
            Split::Auto => stk_cuda::pool::split_chunks(batch, rows_per_output),
            Split::Chunks(n) => n,
        }
    }
}

/// Token rows per output row, as `RawPool::chunks` counts them.
pub fn rows_per_output(rows: &HostRows, token_rows: usize) -> usize {
    match rows {
        HostRows::Mask { seq_len, .. } => *seq_len,
        _ => token_rows.checked_div(rows.batch()).unwrap_or(0),
    }
}

/// The index buffer of a device layout, as the host builds it for a test.
#[derive(Debug, Clone)]
pub enum HostRows {
    CuSeqLens(Vec<i32>),
    Spans(Vec<i64>),
    Mask { mask: Vec<i64>, seq_len: usize },
}

impl HostRows {
    pub fn batch(&self) -> usize {
        match self {
            HostRows::CuSeqLens(cu) => cu.len().saturating_sub(1),
            HostRows::Spans(s) => s.len() / 2,
            HostRows::Mask { mask, seq_len } => mask.len() / (*seq_len).max(1),
        }
    }
}

/// A host slice on the device (one element for an empty slice: a zero-byte allocation is an
/// error for the driver; views keep the real length).
fn upload<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    v: &[T],
) -> Result<cudarc::driver::CudaSlice<T>> {
    let r = if v.is_empty() {
        stream.alloc_zeros::<T>(1)
    } else {
        stream.clone_htod(v)
    };
    r.map_err(|e| stk_core::Error::Cuda(e.to_string()))
}

/// [`Kernels::pool_device_rows`] on a GPU: the caller-owned-buffer API, on a stream of the
/// caller's (not the device handle's).
fn pool_views_on<T, O>(
    dev: &CudaDevice,
    tokens: &Tensor,
    rows: &HostRows,
    spec: &PoolingSpec,
    tws: Option<&[f32]>,
    normalize: bool,
    split: Split,
) -> Result<Tensor>
where
    T: stk_cuda::FloatElement + stk_core::Element + cudarc::driver::ValidAsZeroBits,
    O: stk_cuda::FloatElement + stk_core::Element + cudarc::driver::ValidAsZeroBits,
{
    use stk_cuda::{DeviceRows, ViewPool};
    let stream = dev
        .context()
        .new_stream()
        .map_err(|e| stk_core::Error::Cuda(e.to_string()))?;
    let dim = *tokens.dims().last().unwrap();
    let values = tokens.as_slice::<T>()?;
    let tokens_dev = upload(&stream, values)?;
    let batch = rows.batch();
    let out_len = batch * spec.modes.len() * dim;
    let mut out = upload(&stream, &vec![<O as bytemuck::Zeroable>::zeroed(); out_len])?;
    let tws_dev = tws.map(|w| upload(&stream, w)).transpose()?;
    let chunks = split.chunks(batch, rows_per_output(rows, values.len() / dim.max(1)));
    let ws_bytes = stk_cuda::pool::pool_workspace_bytes(batch, chunks, dim).unwrap();
    let mut workspace = upload(&stream, &vec![0u8; ws_bytes.max(1)])?;
    // The layout's index buffer: i32 cu_seq_lens, or i64 spans or mask.
    let (cu_dev, wide_dev) = match rows {
        HostRows::CuSeqLens(cu) => (Some(upload(&stream, cu)?), None),
        HostRows::Spans(v) | HostRows::Mask { mask: v, .. } => (None, Some(upload(&stream, v)?)),
    };
    let index_len = match rows {
        HostRows::CuSeqLens(v) => v.len(),
        HostRows::Spans(v) | HostRows::Mask { mask: v, .. } => v.len(),
    };
    let cu_v = cu_dev.as_ref().map(|d| d.slice(0..index_len));
    let wide_v = wide_dev.as_ref().map(|d| d.slice(0..index_len));
    let layout = match (rows, &cu_v, &wide_v) {
        (HostRows::CuSeqLens(_), Some(cu), _) => DeviceRows::varlen(cu),
        (HostRows::Spans(_), _, Some(spans)) => DeviceRows::spans(spans),
        (HostRows::Mask { seq_len, .. }, _, Some(mask)) => DeviceRows::Padded {
            seq_len: *seq_len,
            mask,
        },
        _ => unreachable!("the index buffer uploaded above"),
    };
    {
        let mut ws_v = workspace.slice_mut(0..ws_bytes);
        let split_arg = (split != Split::Never).then_some((Some(chunks), &mut ws_v));
        let tokens_v = tokens_dev.slice(0..values.len());
        let tws_v = tws_dev.as_ref().map(|w| w.slice(0..batch));
        let p = ViewPool {
            tokens: &tokens_v,
            dim,
            rows: layout,
            spec,
            token_weights_sum: tws_v.as_ref(),
            normalize,
        };
        dev.pool_views_split(&stream, p, &mut out.slice_mut(0..out_len), split_arg)?;
    }
    let host = stream
        .clone_dtoh(&out)
        .map_err(|e| stk_core::Error::Cuda(e.to_string()))?;
    Tensor::from_slice([batch, spec.modes.len() * dim], &host[..out_len])
}

impl Kernels for CudaDevice {
    fn pool(
        &self,
        input: PoolInput<'_>,
        spec: &PoolingSpec,
        extras: &PoolExtras<'_>,
        normalize: bool,
    ) -> Result<Tensor> {
        CudaDevice::pool(self, input, spec, extras, normalize)
    }
    fn normalize(&self, x: &Tensor, rule: NormRule) -> Result<Tensor> {
        CudaDevice::normalize(self, x, rule)
    }
    fn weighted_layer_pool(
        &self,
        all_layers: &Tensor,
        layer_start: usize,
        layer_weights: &Tensor,
    ) -> Result<Tensor> {
        CudaDevice::weighted_layer_pool(self, all_layers, layer_start, layer_weights)
    }
    fn embedding_bag(
        &self,
        table: &Tensor,
        mapping: Option<&Tensor>,
        weights: Option<&Tensor>,
        bags: &TokenBags,
        reduce: BagReduce,
        normalize: Option<NormRule>,
    ) -> Result<Tensor> {
        let t = DeviceEmbeddingTable::new(self, table, mapping, weights)?;
        CudaDevice::embedding_bag(self, &t, bags, reduce, normalize)
    }
    fn pool_device_rows(
        &self,
        tokens: &Tensor,
        rows: &HostRows,
        spec: &PoolingSpec,
        tws: Option<&[f32]>,
        normalize: bool,
        split: Split,
    ) -> Result<Tensor> {
        use stk_core::{bf16, f16};
        let out = stk_core::validate::pool_output_dtype(tokens.dtype(), spec, tws.is_some(), None);
        let f = match (tokens.dtype(), out) {
            (DType::F32, _) => pool_views_on::<f32, f32>,
            (DType::F16, DType::F16) => pool_views_on::<f16, f16>,
            (DType::F16, _) => pool_views_on::<f16, f32>,
            (DType::BF16, DType::BF16) => pool_views_on::<bf16, bf16>,
            _ => pool_views_on::<bf16, f32>,
        };
        f(self, tokens, rows, spec, tws, normalize, split)
    }
}

pub type Check = std::result::Result<(), String>;

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec().unwrap()
}

fn input(layout: &Layout) -> PoolInput<'_> {
    match layout {
        Layout::Padded(b) => b.into(),
        Layout::Varlen(b) => b.into(),
    }
}

/// The pooled reference rounded to the output dtype, then (optionally) normalized as a
/// separate Normalize module would: from the rounded values, in f64, rounded again.
fn expected_pool(rounded: &[f32], cols: usize, dtype: DType, normalize: bool) -> Vec<f32> {
    if !normalize {
        return rounded.to_vec();
    }
    let v: Vec<f64> = rounded.iter().map(|&x| x as f64).collect();
    let rule = NormRule::SENTENCE_TRANSFORMERS;
    round_to(
        &normalize_reference(&v, cols, rule.add as f64, rule.floor as f64),
        dtype,
    )
}

fn tol(dtype: DType) -> f32 {
    golden::tolerance_for(dtype.as_str(), false)
}

/// Every golden pooling case, plain and with the fused normalize (`normalize_every`: on every
/// n-th case only, to keep slow backends quick). Returns the number of cases.
pub fn golden_pooling(
    k: &dyn Kernels,
    normalize_every: usize,
) -> std::result::Result<usize, String> {
    let cases = golden_cases(&["pooling"]);
    for (i, case) in cases.iter().enumerate() {
        let c = pooling_case(case);
        let extras = PoolExtras {
            token_weights_sum: c.token_weights_sum.as_deref(),
            cls_token_embeddings: None,
        };
        let expected = f32s(&c.expected);
        let normalizes: &[bool] = if i % normalize_every.max(1) == 0 {
            &[false, true]
        } else {
            &[false]
        };
        for &normalize in normalizes {
            let got = k
                .pool(input(&c.layout), &c.spec, &extras, normalize)
                .map_err(|e| format!("{}: {e}", c.name))?;
            if got.dtype() != c.expected.dtype() || got.dims() != c.expected.dims() {
                return Err(format!(
                    "{}: got {:?}, expected {:?}",
                    c.name, got, c.expected
                ));
            }
            let want = expected_pool(&expected, c.expected.dims()[1], got.dtype(), normalize);
            golden::compare(&f32s(&got), &want, c.tolerance)
                .map_err(|e| format!("{} (normalize={normalize}): {e}", c.name))?;
        }
    }
    Ok(cases.len())
}

pub fn golden_normalize(k: &dyn Kernels) -> Check {
    for case in golden_cases(&["normalize"]) {
        let file = tensors(&case);
        let x = file.get("sentence_embedding").unwrap();
        let expected = file.get("expected").unwrap();
        let got = k
            .normalize(&x, NormRule::SENTENCE_TRANSFORMERS)
            .map_err(|e| format!("{}: {e}", case.name))?;
        if got.dtype() != expected.dtype() {
            return Err(format!(
                "{}: dtype {} vs {}",
                case.name,
                got.dtype(),
                expected.dtype()
            ));
        }
        let t = golden::tolerance_for(case.case["dtype"].as_str().unwrap(), false);
        golden::compare(&f32s(&got), &f32s(&expected), t)
            .map_err(|e| format!("{}: {e}", case.name))?;
    }
    Ok(())
}

pub fn golden_layer_pool(k: &dyn Kernels) -> Check {
    for case in golden_cases(&["weighted_layer_pooling"]) {
        let file = tensors(&case);
        let layers = file.get("all_layer_embeddings").unwrap();
        let weights = file.get("layer_weights").unwrap();
        let start = case.case["layer_start"].as_u64().unwrap() as usize;
        let expected = file.get("expected").unwrap();
        let got = k
            .weighted_layer_pool(&layers, start, &weights)
            .map_err(|e| format!("{}: {e}", case.name))?;
        if (got.dtype(), got.dims()) != (expected.dtype(), expected.dims()) {
            return Err(format!("{}: got {got:?}, expected {expected:?}", case.name));
        }
        golden::compare(&f32s(&got), &f32s(&expected), 1e-5)
            .map_err(|e| format!("{}: {e}", case.name))?;
    }
    Ok(())
}

pub fn padded(k: &dyn Kernels, p: &PaddedProblem) -> Check {
    let layout = Layout::Padded(p.batch());
    let spec = p.spec();
    let cls = p.cls_tensor();
    let extras = PoolExtras {
        token_weights_sum: p.tws.as_deref(),
        cls_token_embeddings: cls.as_ref(),
    };
    let got = k
        .pool(input(&layout), &spec, &extras, p.normalize)
        .map_err(|e| e.to_string())?;
    let Layout::Padded(batch) = &layout else {
        unreachable!()
    };
    let cpu_extras = stk_cpu::PoolExtras {
        token_weights_sum: p.tws.as_deref(),
        cls_token_embeddings: cls.as_ref(),
    };
    let cpu = stk_cpu::pool_padded(batch, &spec, &cpu_extras).map_err(|e| e.to_string())?;
    if got.dtype() != cpu.dtype() || got.dims() != cpu.dims() {
        return Err(format!("got {got:?}, the CPU gives {cpu:?}"));
    }
    let reference = round_to(
        &pool_reference_f64(&layout, &spec, p.tws.as_deref(), cls.as_ref()),
        cpu.dtype(),
    );
    let want = expected_pool(&reference, cpu.dims()[1], cpu.dtype(), p.normalize);
    golden::compare(&f32s(&got), &want, tol(p.dtype))
}

pub fn varlen(k: &dyn Kernels, p: &VarlenProblem) -> Check {
    let layout = Layout::Varlen(p.batch());
    let spec = p.spec();
    let got = k
        .pool(input(&layout), &spec, &PoolExtras::default(), p.normalize)
        .map_err(|e| e.to_string())?;
    if got.dtype() != p.dtype {
        return Err(format!("dtype {} instead of {}", got.dtype(), p.dtype));
    }
    let reference = round_to(&pool_reference_f64(&layout, &spec, None, None), p.dtype);
    let want = expected_pool(&reference, spec.modes.len() * p.dim, p.dtype, p.normalize);
    golden::compare(&f32s(&got), &want, tol(p.dtype))
}

/// The pooled reference for `layout`, rounded and (optionally) normalized, against `got`.
fn against_reference(
    got: &Tensor,
    layout: &Layout,
    spec: &PoolingSpec,
    tws: Option<&[f32]>,
    dtype: DType,
    normalize: bool,
) -> Check {
    let out_dtype = stk_core::validate::pool_output_dtype(dtype, spec, tws.is_some(), None);
    if got.dtype() != out_dtype {
        return Err(format!("dtype {} instead of {out_dtype}", got.dtype()));
    }
    let reference = round_to(&pool_reference_f64(layout, spec, tws, None), out_dtype);
    let cols = got.dims()[1];
    let want = expected_pool(&reference, cols, out_dtype, normalize);
    golden::compare(&f32s(got), &want, tol(dtype))
}

/// A padded batch through the device path: the kernel finds each row's tokens in the mask
/// (right, left, holes, all-zero rows; no mask = all ones), with prompt exclusion and
/// token_weights_sum.
pub fn device_padded(k: &dyn Kernels, p: &PaddedProblem) -> Check {
    let [b, t, _] = p.dims;
    let batch = p.batch();
    let mask: Vec<i64> = match &p.mask {
        Some(m) => m.iter().map(|&v| v as i64).collect(),
        None => vec![1; b * t],
    };
    if t == 0 {
        return Ok(()); // a [B, 0] mask has no row width to state; the host plan covers T = 0
    }
    let spec = p.spec();
    let rows = HostRows::Mask { mask, seq_len: t };
    let layout = Layout::Padded(batch.clone());
    // One block per row, and each row split in 2 to 4 chunks (uneven, some empty).
    for split in [Split::Never, Split::Chunks(2 + t % 3)] {
        let got = k
            .pool_device_rows(
                batch.tokens(),
                &rows,
                &spec,
                p.tws.as_deref(),
                p.normalize,
                split,
            )
            .map_err(|e| e.to_string())?;
        against_reference(&got, &layout, &spec, p.tws.as_deref(), p.dtype, p.normalize)
            .map_err(|e| format!("{split:?}: {e}"))?;
    }
    Ok(())
}

/// A varlen batch through the device path (`cu_seq_lens` read by the kernel).
pub fn device_varlen(k: &dyn Kernels, p: &VarlenProblem) -> Check {
    let batch = p.batch();
    let cu: Vec<i32> = batch.cu_seq_lens().iter().map(|&c| c as i32).collect();
    let spec = p.spec();
    let rows = HostRows::CuSeqLens(cu);
    let chunks = 2 + batch.tokens().dims()[0] % 3;
    for split in [Split::Never, Split::Chunks(chunks)] {
        let got = k
            .pool_device_rows(batch.tokens(), &rows, &spec, None, p.normalize, split)
            .map_err(|e| e.to_string())?;
        against_reference(
            &got,
            &Layout::Varlen(batch.clone()),
            &spec,
            None,
            p.dtype,
            p.normalize,
        )
        .map_err(|e| format!("{split:?}: {e}"))?;
    }
    Ok(())
}

/// Span pooling (late chunking), through the host plan and through the device path, against
/// the reference applied to each span's slice as its own sequence; the CPU's `pool_spans`
/// gives the same dtype and shape.
pub fn spans(k: &dyn Kernels, p: &SpanProblem) -> Check {
    let spec = p.spec();
    let batch = p.batch();
    let sequences = Layout::Varlen(p.as_sequences());
    let cpu = stk_cpu::pool_spans(&batch, &spec, &stk_cpu::PoolExtras::default())
        .map_err(|e| e.to_string())?;
    against_reference(&cpu, &sequences, &spec, None, p.dtype, false)
        .map_err(|e| format!("CPU pool_spans: {e}"))?;
    let planned = k
        .pool((&batch).into(), &spec, &PoolExtras::default(), p.normalize)
        .map_err(|e| e.to_string())?;
    against_reference(&planned, &sequences, &spec, None, p.dtype, p.normalize)
        .map_err(|e| format!("host plan: {e}"))?;
    let flat: Vec<i64> = p.spans.iter().flatten().copied().collect();
    let rows = HostRows::Spans(flat);
    for split in [Split::Never, Split::Chunks(3)] {
        let device = k
            .pool_device_rows(batch.tokens(), &rows, &spec, None, p.normalize, split)
            .map_err(|e| e.to_string())?;
        against_reference(&device, &sequences, &spec, None, p.dtype, p.normalize)
            .map_err(|e| format!("device spans, {split:?}: {e}"))?;
    }
    Ok(())
}

/// `n` values in [-4, 4), the same every run.
fn spread(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 8.0)
        .collect()
}

/// Small batches of rows long enough that the host plans split them (2 to 4 chunks a row),
/// with what only the host plan handles: masks with holes and left padding, cls embeddings of
/// another dtype (tokens read as f32), token_weights_sum, prompt exclusion, the fused
/// normalize; varlen with an empty sequence, overlapping spans. Host path and device paths
/// against the f64 reference (the random problems are too short to split on the host).
pub fn split_host_plans(k: &dyn Kernels) -> Check {
    use stk_core::PoolingMode;
    let (b, t) = (2usize, 600usize);
    // Row 0: right padding (the last 50 positions) and a hole every 7th position; row 1: the
    // first 100 positions left padding.
    let mask: Vec<u8> = (0..b * t)
        .map(|i| {
            let (row, j) = (i / t, i % t);
            u8::from(if row == 0 {
                j < t - 50 && j % 7 != 3
            } else {
                j >= 100
            })
        })
        .collect();
    for (dtype, d, modes, with_extras) in [
        (DType::BF16, 16, PoolingMode::ALL.to_vec(), true),
        (
            DType::F16,
            12,
            vec![PoolingMode::Max, PoolingMode::WeightedMean],
            false,
        ),
        (
            DType::F32,
            8,
            vec![PoolingMode::Mean, PoolingMode::LastToken],
            true,
        ),
    ] {
        let p = PaddedProblem {
            dims: [b, t, d],
            dtype,
            values: spread(b * t * d),
            mask: Some(mask.clone()),
            modes,
            prompt: Some(3),
            tws: with_extras.then(|| vec![7.5, 0.25]),
            cls: with_extras.then(|| spread(b * d + 1)[1..].to_vec()),
            cls_dtype: DType::F32,
            normalize: true,
        };
        host_plan_splits((&p.batch()).into(), &p.spec())?;
        padded(k, &p).map_err(|e| format!("padded {dtype} D = {d}, host plan: {e}"))?;
        device_padded(k, &PaddedProblem { cls: None, ..p })
            .map_err(|e| format!("padded {dtype} D = {d}, device mask: {e}"))?;
    }
    let v = VarlenProblem {
        lens: vec![700, 0, 300],
        dim: 8,
        dtype: DType::BF16,
        values: spread(1000 * 8),
        modes: PoolingMode::ALL.to_vec(),
        prompt: Some(2),
        normalize: true,
    };
    host_plan_splits((&v.batch()).into(), &v.spec())?;
    varlen(k, &v).map_err(|e| format!("varlen, host plan: {e}"))?;
    device_varlen(k, &v).map_err(|e| format!("varlen, device: {e}"))?;
    let sp = SpanProblem {
        n: 1200,
        dim: 8,
        dtype: DType::F16,
        values: spread(1200 * 8),
        spans: vec![[0, 1200], [100, 700], [850, 851], [650, 1200]],
        modes: PoolingMode::ALL.to_vec(),
        prompt: None,
        normalize: true,
    };
    host_plan_splits((&sp.batch()).into(), &sp.spec())?;
    spans(k, &sp).map_err(|e| format!("spans: {e}"))
}

/// The host plan of `input` splits its rows (so a check of it covers the split launches).
fn host_plan_splits(input: PoolInput<'_>, spec: &PoolingSpec) -> Check {
    let plan =
        stk_cuda::PoolPlan::new(input, spec, &PoolExtras::default()).map_err(|e| e.to_string())?;
    match plan.chunks() {
        1 => Err(format!(
            "the host plan of {:?} does not split",
            plan.out_dims()
        )),
        _ => Ok(()),
    }
}

/// `tokens` (`[T, D]`) pooled as one row of T tokens through every entry point: the
/// host-tensor API (padded without a mask, varlen, one whole-array span; split as
/// `PoolPlan::chunks` decides, over 256 blocks for T = 32768) and the device row sources (the
/// mask, cu_seq_lens, a whole-array span), in one block and split as a small batch is
/// (`Split::Auto`). Each output comes with the path it took.
fn one_long_row(
    k: &dyn Kernels,
    tokens: &Tensor,
    spec: &PoolingSpec,
    normalize: bool,
) -> std::result::Result<Vec<(String, Tensor)>, String> {
    use stk_core::{PaddedBatch, SpanBatch, VarlenBatch};
    let err = |e: stk_core::Error| e.to_string();
    let [t, d] = [tokens.dims()[0], tokens.dims()[1]];
    let padded = PaddedBatch::new(tokens.reshape([1, t, d]).map_err(err)?, None).map_err(err)?;
    let varlen = VarlenBatch::new(tokens.clone(), &[0, t as i64]).map_err(err)?;
    let spans = SpanBatch::new(tokens.clone(), &[[0, t as i64]]).map_err(err)?;
    let extras = PoolExtras::default();
    let mut out = Vec::new();
    for (what, input) in [
        ("host padded", PoolInput::from(&padded)),
        ("host varlen", (&varlen).into()),
        ("host spans", (&spans).into()),
    ] {
        let got = k.pool(input, spec, &extras, normalize).map_err(err)?;
        out.push((what.to_string(), got));
    }
    for rows in [
        HostRows::Mask {
            mask: vec![1; t],
            seq_len: t,
        },
        HostRows::CuSeqLens(vec![0, t as i32]),
        HostRows::Spans(vec![0, t as i64]),
    ] {
        for split in [Split::Never, Split::Auto] {
            let got = k
                .pool_device_rows(tokens, &rows, spec, None, normalize, split)
                .map_err(err)?;
            let source = format!("{rows:?}").chars().take(12).collect::<String>();
            out.push((format!("device {source}.. {split:?}"), got));
        }
    }
    Ok(out)
}

/// One sequence of 32768 tokens (B = 1, the shape a small batch of long documents gives):
/// every mode, through every entry point ([`one_long_row`]: host tensors, the mask,
/// cu_seq_lens and a whole-array span), in f32 and bf16, in one block and split over 256
/// blocks, with the fused normalize, against the f64 reference.
pub fn long_sequence(k: &dyn Kernels) -> Check {
    use stk_core::{PoolingMode, VarlenBatch};
    const T: usize = 32768;
    const D: usize = 8;
    let spec = PoolingSpec::new(PoolingMode::ALL.to_vec()).unwrap();
    // Values with a nonzero mean, so the sums are large and rounding would show.
    let values: Vec<f32> = (0..T * D)
        .map(|i| 1.0 + ((i * 7919 % 1000) as f32) / 1000.0)
        .collect();
    for dtype in [DType::F32, DType::BF16] {
        let tokens = Tensor::from_vec([T, D], values.clone())
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let layout = Layout::Varlen(VarlenBatch::new(tokens.clone(), &[0, T as i64]).unwrap());
        for (what, got) in one_long_row(k, &tokens, &spec, true)? {
            against_reference(&got, &layout, &spec, None, dtype, true)
                .map_err(|e| format!("{dtype} {what}: {e}"))?;
        }
    }
    Ok(())
}

/// Long sums do not drift: T = 20,000 rows, identical (where one running f32 sum drifts
/// most: ~7e-5 relative) and varied, through every entry point ([`one_long_row`]), and a bag
/// of 20,000 ids; mean, weighted mean and mean/sqrt(n) within 1e-6 (relative to values of at
/// least 1) of the f64 reference. The same launches twice give the same bits.
pub fn long_sums(k: &dyn Kernels) -> Check {
    use stk_core::{PoolingMode, VarlenBatch};
    const T: usize = 20_000;
    const D: usize = 8;
    let identical: Vec<f32> = (0..T * D).map(|i| 0.1 + (i % D) as f32 * 0.37).collect();
    let varied: Vec<f32> = (0..T * D)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.3) * 1.7)
        .collect();
    let spec = PoolingSpec::new(vec![
        PoolingMode::Mean,
        PoolingMode::WeightedMean,
        PoolingMode::MeanSqrtLenTokens,
    ])
    .unwrap();
    let within = |got: &Tensor, exact: &[f64], what: &str| -> Check {
        for (i, (&g, &w)) in f32s(got).iter().zip(exact).enumerate() {
            let err = (f64::from(g) - w).abs();
            if err > 1e-6 * w.abs().max(1.0) || g.is_nan() {
                return Err(format!(
                    "{what}: value {i}: {g} vs exact {w} (error {err:e})"
                ));
            }
        }
        Ok(())
    };
    for (name, values) in [("identical rows", identical), ("varied rows", varied)] {
        let tokens = Tensor::from_vec([T, D], values.clone()).unwrap();
        let varlen = VarlenBatch::new(tokens.clone(), &[0, T as i64]).unwrap();
        let exact = pool_reference_f64(&Layout::Varlen(varlen), &spec, None, None);
        let outputs = one_long_row(k, &tokens, &spec, false)?;
        for (what, got) in &outputs {
            within(got, &exact, &format!("{name}, {what}"))?;
        }
        // The host plans of a padded and a varlen row split alike: the same bits.
        if outputs[0].1.bytes() != outputs[1].1.bytes() {
            return Err(format!(
                "{name}: padded and varlen plans differ in their bits"
            ));
        }
    }
    // One bag of 20,000 ids of one table row: its mean is that row.
    let table = Tensor::from_vec(
        [2, D],
        (0..2 * D)
            .map(|i| 0.1 + i as f32 * 0.37)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let bags = TokenBags::from_bags(&[vec![1u32; T]], 2).unwrap();
    let got = k
        .embedding_bag(&table, None, None, &bags, BagReduce::MeanByCount, None)
        .map_err(|e| e.to_string())?;
    let exact: Vec<f64> = f32s(&table)[D..].iter().map(|&v| f64::from(v)).collect();
    within(&got, &exact, "embedding bag of 20,000 ids")
}

/// NaN and infinities propagate as stk-cpu (and torch) propagate them: max keeps a NaN,
/// inf − inf sums are NaN, a NaN anywhere in a normalized row makes the row NaN, lasttoken of
/// a row without real tokens is position 0 times 0, and padding is never read.
pub fn non_finite(k: &dyn Kernels) -> Check {
    use stk_core::{PaddedBatch, PoolingMode, VarlenBatch};
    const NAN: f32 = f32::NAN;
    const INF: f32 = f32::INFINITY;
    let rows: [[f32; 4]; 6] = [
        [1.0, NAN, INF, -2.0],
        [3.0, 2.0, -INF, INF],
        [NAN, INF, 0.5, 7.0], // padding of row 0
        [INF, NAN, -1.0, 4.0],
        [2.0, 2.0, 2.0, 2.0],
        [-INF, 1.0, NAN, 0.0],
    ];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let spec = PoolingSpec::new(PoolingMode::ALL.to_vec()).unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let tokens = Tensor::from_vec([2, 3, 4], flat.clone())
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        // Row 1 has no real token.
        let batch =
            PaddedBatch::with_mask_values(tokens.clone(), Some(vec![1, 1, 0, 0, 0, 0])).unwrap();
        let cpu = stk_cpu::pool_padded(&batch, &spec, &stk_cpu::PoolExtras::default()).unwrap();
        for normalize in [false, true] {
            let got = k
                .pool((&batch).into(), &spec, &PoolExtras::default(), normalize)
                .map_err(|e| e.to_string())?;
            let want = if normalize {
                stk_cpu::normalize(&cpu).unwrap()
            } else {
                cpu.clone()
            };
            golden::compare(&f32s(&got), &f32s(&want), tol(dtype))
                .map_err(|e| format!("padded {dtype} normalize={normalize}: {e}"))?;
        }
        let varlen = VarlenBatch::new(tokens.reshape([6, 4]).unwrap(), &[0, 2, 2, 6]).unwrap();
        let cpu = stk_cpu::pool_varlen(&varlen, &spec, &stk_cpu::PoolExtras::default()).unwrap();
        let got = k
            .pool((&varlen).into(), &spec, &PoolExtras::default(), false)
            .map_err(|e| e.to_string())?;
        golden::compare(&f32s(&got), &f32s(&cpu), tol(dtype))
            .map_err(|e| format!("varlen {dtype}: {e}"))?;

        let x = Tensor::from_vec([6, 4], flat.clone())
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let got = k
            .normalize(&x, NormRule::SENTENCE_TRANSFORMERS)
            .map_err(|e| e.to_string())?;
        golden::compare(
            &f32s(&got),
            &f32s(&stk_cpu::normalize(&x).unwrap()),
            tol(dtype),
        )
        .map_err(|e| format!("normalize {dtype}: {e}"))?;

        let layers = Tensor::from_vec([3, 2, 1, 4], flat.clone())
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let w = Tensor::from_vec([2], vec![1.0f32, 2.0])
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let got = k
            .weighted_layer_pool(&layers, 1, &w)
            .map_err(|e| e.to_string())?;
        let cpu = stk_cpu::weighted_layer_pooling(&layers, 1, &w).unwrap();
        golden::compare(&f32s(&got), &f32s(&cpu), tol(dtype))
            .map_err(|e| format!("layer pooling {dtype}: {e}"))?;
    }
    // Embedding bag: only the bags that use a non-finite row are affected.
    let table = Tensor::from_vec([3, 2], vec![1.0f32, 2.0, NAN, 0.0, INF, -1.0]).unwrap();
    let bags = TokenBags::from_bags(&[vec![0u32], vec![0, 1], vec![0, 2], vec![]], 3).unwrap();
    let got = k
        .embedding_bag(&table, None, None, &bags, BagReduce::MeanByCount, None)
        .map_err(|e| e.to_string())?;
    let cpu = stk_cpu::EmbeddingBag::new(table, None, None)
        .unwrap()
        .bag_mean(&bags)
        .unwrap();
    golden::compare(&f32s(&got), &f32s(&cpu), 1e-6).map_err(|e| format!("embedding bag: {e}"))
}

/// A random normalize problem.
#[derive(Debug, Clone)]
pub struct NormalizeProblem {
    pub rows: usize,
    pub dim: usize,
    pub dtype: DType,
    /// Row 0 is all zeros when there are several rows (it must stay zero).
    pub values: Vec<f32>,
    pub model2vec: bool,
}

pub fn normalize(k: &dyn Kernels, p: &NormalizeProblem) -> Check {
    let x = Tensor::from_vec([p.rows, p.dim], p.values.clone())
        .unwrap()
        .to_dtype(p.dtype)
        .unwrap();
    let rule = if p.model2vec {
        NormRule::MODEL2VEC
    } else {
        NormRule::SENTENCE_TRANSFORMERS
    };
    let got = k.normalize(&x, rule).map_err(|e| e.to_string())?;
    if got.dtype() != p.dtype {
        return Err(format!("dtype {}", got.dtype()));
    }
    let want = if p.model2vec {
        let v: Vec<f64> = f32s(&x).iter().map(|&v| v as f64).collect();
        round_to(&normalize_reference(&v, p.dim, 1e-32, 0.0), p.dtype)
    } else {
        f32s(&stk_cpu::normalize(&x).unwrap())
    };
    golden::compare(&f32s(&got), &want, tol(p.dtype))
}

/// A random weighted-layer-pooling problem.
#[derive(Debug, Clone)]
pub struct LayerPoolProblem {
    pub dims: [usize; 4],
    pub start: usize,
    pub dtype: DType,
    pub weights_dtype: DType,
    pub values: Vec<f32>,
    pub weights: Vec<f32>,
}

pub fn layer_pool(k: &dyn Kernels, p: &LayerPoolProblem) -> Check {
    let all = Tensor::from_vec(p.dims.to_vec(), p.values.clone())
        .unwrap()
        .to_dtype(p.dtype)
        .unwrap();
    let w = Tensor::from_vec([p.weights.len()], p.weights.clone())
        .unwrap()
        .to_dtype(p.weights_dtype)
        .unwrap();
    let got = k
        .weighted_layer_pool(&all, p.start, &w)
        .map_err(|e| e.to_string())?;
    let cpu = stk_cpu::weighted_layer_pooling(&all, p.start, &w).unwrap();
    if (got.dtype(), got.dims()) != (cpu.dtype(), cpu.dims()) {
        return Err(format!("got {got:?}, the CPU gives {cpu:?}"));
    }
    golden::compare(&f32s(&got), &f32s(&cpu), tol(cpu.dtype()))
}

/// A random embedding-bag problem.
#[derive(Debug, Clone)]
pub struct BagProblem {
    pub rows: usize,
    pub dim: usize,
    pub dtype: DType,
    pub table: Vec<f32>,
    pub mapping: Option<Vec<i32>>,
    pub weights: Option<Vec<f32>>,
    pub bags: Vec<Vec<u32>>,
    pub reduce: BagReduce,
    pub rule: Option<NormRule>,
}

impl BagProblem {
    pub fn vocab(&self) -> usize {
        self.mapping.as_ref().map_or(self.rows, Vec::len)
    }
    pub fn table_tensor(&self) -> Tensor {
        let t = Tensor::from_vec([self.rows, self.dim], self.table.clone()).unwrap();
        if self.dtype == DType::I8 {
            let v: Vec<i8> = self.table.iter().map(|&x| x as i8).collect();
            Tensor::from_vec([self.rows, self.dim], v).unwrap()
        } else {
            t.to_dtype(self.dtype).unwrap()
        }
    }
}

pub fn embedding_bag(k: &dyn Kernels, p: &BagProblem) -> Check {
    let vocab = p.vocab();
    let table = p.table_tensor();
    let mapping = p
        .mapping
        .as_ref()
        .map(|m| Tensor::from_slice([vocab], m).unwrap());
    let weights = p
        .weights
        .as_ref()
        .map(|w| Tensor::from_slice([vocab], w).unwrap());
    let bags = TokenBags::from_bags(&p.bags, vocab).unwrap();
    let got = k
        .embedding_bag(
            &table,
            mapping.as_ref(),
            weights.as_ref(),
            &bags,
            p.reduce,
            p.rule,
        )
        .map_err(|e| e.to_string())?;
    let got = f32s(&got);

    // f64 oracle: row(id) = table[mapping[id]] · weights[id], combined, normalized; with the
    // size of the terms behind each value (Σ |row · w|, divided alike), which bounds what f32
    // sums may lose when the terms cancel (int8 rows sum to thousands, the result may be ~1).
    let tv = f32s(&table);
    let d = p.dim;
    let (mut want, mut scale) = (Vec::new(), Vec::new());
    for bag in &p.bags {
        let (mut acc, mut mag) = (vec![0f64; d], vec![0f64; d]);
        let mut wsum = 0f64;
        for &id in bag {
            let r = p
                .mapping
                .as_ref()
                .map_or(id as usize, |m| m[id as usize] as usize);
            let w = p.weights.as_ref().map_or(1.0, |w| w[id as usize] as f64);
            wsum += w;
            for ((a, m), &x) in acc.iter_mut().zip(&mut mag).zip(&tv[r * d..(r + 1) * d]) {
                *a += x as f64 * w;
                *m += (x as f64 * w).abs();
            }
        }
        let div = match p.reduce {
            BagReduce::Sum => 1.0,
            BagReduce::MeanByCount => bag.len() as f64,
            BagReduce::MeanByWeightSum => wsum,
        };
        let divided = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .map(|&a| {
                    if bag.is_empty() || div == 0.0 {
                        0.0
                    } else {
                        a / div
                    }
                })
                .collect()
        };
        let (acc, mag) = (divided(&acc), divided(&mag));
        let (acc, mag) = match p.rule {
            Some(r) => {
                let n = normalize_reference(&acc, d, r.add as f64, r.floor as f64);
                // The same divisor for the sizes: the row's value over its normalized value.
                let ratio = acc
                    .iter()
                    .zip(&n)
                    .find(|(a, _)| **a != 0.0)
                    .map_or(1.0, |(a, b)| b / a);
                (n, mag.iter().map(|m| m * ratio.abs()).collect())
            }
            None => (acc, mag),
        };
        want.extend(acc);
        scale.extend(mag);
    }
    // Within 2e-5 of the value or of the size of its terms, whichever is larger.
    let close = |want: &[f64], what: &str| -> Check {
        if got.len() != want.len() {
            return Err(format!(
                "{what}: {} values, expected {}",
                got.len(),
                want.len()
            ));
        }
        for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(&scale).enumerate() {
            let err = (f64::from(g) - w).abs();
            if err.is_nan() || err > 2e-5 * m.max(w.abs()).max(1.0) {
                return Err(format!(
                    "{what}: element {i}: got {g}, expected {w} (terms of size {m}, tol 2e-5)"
                ));
            }
        }
        Ok(())
    };
    close(&want, "vs the f64 oracle")?;
    // stk-cpu's embedding bag (model2vec / StaticEmbedding mean) agrees too.
    if p.reduce == BagReduce::MeanByCount && p.rule.is_none() && p.dtype != DType::BF16 {
        let cpu = stk_cpu::EmbeddingBag::new(table, mapping.as_ref(), weights.as_ref()).unwrap();
        let cpu_out: Vec<f64> = f32s(&cpu.bag_mean(&bags).unwrap())
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        close(&cpu_out, "vs stk-cpu")?;
    }
    Ok(())
}

pub mod strategies {
    use super::*;
    use crate::common::strategies::float_dtype;

    pub fn normalize_problem() -> impl Strategy<Value = NormalizeProblem> {
        (
            0usize..20,
            prop_oneof![1usize..40, Just(256), Just(1030)],
            float_dtype(),
            any::<bool>(),
        )
            .prop_flat_map(|(rows, dim, dtype, model2vec)| {
                prop::collection::vec(-3.0f32..3.0, rows * dim).prop_map(move |mut values| {
                    if rows > 1 {
                        values[..dim].iter_mut().for_each(|v| *v = 0.0);
                    }
                    NormalizeProblem {
                        rows,
                        dim,
                        dtype,
                        values,
                        model2vec,
                    }
                })
            })
    }

    pub fn layer_pool_problem() -> impl Strategy<Value = LayerPoolProblem> {
        (
            1usize..6,
            0usize..6,
            1usize..4,
            0usize..6,
            prop_oneof![1usize..20, Just(64)],
            float_dtype(),
            float_dtype(),
        )
            .prop_flat_map(|(layers, start, b, t, d, dtype, weights_dtype)| {
                let start = start % layers;
                (
                    prop::collection::vec(-2.0f32..2.0, layers * b * t * d),
                    prop::collection::vec(0.1f32..2.0, layers - start),
                )
                    .prop_map(move |(values, weights)| LayerPoolProblem {
                        dims: [layers, b, t, d],
                        start,
                        dtype,
                        weights_dtype,
                        values,
                        weights,
                    })
            })
    }

    pub fn bag_problem() -> impl Strategy<Value = BagProblem> {
        let dims = (
            1usize..50,
            prop_oneof![
                1usize..20,
                Just(32),
                Just(64),
                Just(70),
                Just(256),
                Just(512)
            ],
        );
        // The table dtypes every backend reads (stk_core::validate::TABLE_DTYPES).
        let dtype = prop_oneof![
            Just(DType::F32),
            Just(DType::F16),
            Just(DType::BF16),
            Just(DType::I8)
        ];
        let reduce = prop_oneof![
            Just(BagReduce::MeanByCount),
            Just(BagReduce::Sum),
            Just(BagReduce::MeanByWeightSum)
        ];
        let rule = prop_oneof![
            Just(None),
            Just(Some(NormRule::SENTENCE_TRANSFORMERS)),
            Just(Some(NormRule::MODEL2VEC))
        ];
        (
            dims,
            dtype,
            any::<(bool, bool)>(),
            prop::collection::vec(0usize..12, 0..20),
            reduce,
            rule,
        )
            .prop_flat_map(
                |((rows, dim), dtype, (with_mapping, with_weights), lens, reduce, rule)| {
                    let vocab = if with_mapping { rows + 17 } else { rows };
                    let table = if dtype == DType::I8 {
                        prop::collection::vec((-127i32..=127).prop_map(|v| v as f32), rows * dim)
                            .boxed()
                    } else {
                        prop::collection::vec(-2.0f32..2.0, rows * dim).boxed()
                    };
                    let mapping = if with_mapping {
                        prop::collection::vec(0..rows as i32, vocab)
                            .prop_map(Some)
                            .boxed()
                    } else {
                        Just(None).boxed()
                    };
                    let weights = if with_weights {
                        prop::collection::vec(0.0f32..2.0, vocab)
                            .prop_map(Some)
                            .boxed()
                    } else {
                        Just(None).boxed()
                    };
                    let bags = lens
                        .into_iter()
                        .map(|n| prop::collection::vec(0..vocab as u32, n))
                        .collect::<Vec<_>>();
                    (table, mapping, weights, bags).prop_map(
                        move |(table, mapping, weights, bags)| BagProblem {
                            rows,
                            dim,
                            dtype,
                            table,
                            mapping,
                            weights,
                            bags,
                            reduce,
                            rule,
                        },
                    )
                },
            )
    }
}

/// One set of pooling buffers (each its dtype and dimensions) for the plan of
/// [`mismatched_buffers_plan`], and what the check before any launch says of them.
pub struct BuffersCase {
    pub what: &'static str,
    pub tokens: (DType, Vec<usize>),
    pub cls: Option<(DType, Vec<usize>)>,
    pub out: (DType, Vec<usize>),
    /// `None`: accepted; else the kind of error and words its message holds.
    pub refused: Option<(stk_core::testing::ErrorKind, &'static [&'static str])>,
}

/// The plan the [`mismatched_buffers`] cases are checked against: `[2, 3, 8]` f32 tokens (no
/// mask) pooled by mean and cls, `[2, 16]` f32 out.
pub fn mismatched_buffers_plan() -> stk_cuda::PoolPlan {
    use stk_core::{PaddedBatch, PoolingMode};
    let batch = PaddedBatch::new(Tensor::zeros([2, 3, 8], DType::F32).unwrap(), None).unwrap();
    let spec = PoolingSpec::new(vec![PoolingMode::Mean, PoolingMode::Cls]).unwrap();
    stk_cuda::PoolPlan::new((&batch).into(), &spec, &PoolExtras::default()).unwrap()
}

/// Too few token rows, the wrong dtype, the wrong output shape, cls embeddings the plan
/// does not use: refused before any launch (`PoolPlan::check_buffers`, which
/// `CudaDevice::pool_device` calls); the right buffers pass.
pub fn mismatched_buffers() -> Vec<BuffersCase> {
    use stk_core::Error;
    // (what, tokens' dtype and dims, cls dims (f32), out dims (f32), what is refused).
    type Row = (
        &'static str,
        (DType, &'static [usize]),
        Option<&'static [usize]>,
        &'static [usize],
        Option<(stk_core::testing::ErrorKind, &'static [&'static str])>,
    );
    let rows: [Row; 5] = [
        (
            "matching buffers",
            (DType::F32, &[2, 3, 8]),
            None,
            &[2, 16],
            None,
        ),
        (
            "too few token rows",
            (DType::F32, &[2, 2, 8]),
            None,
            &[2, 16],
            Some((
                |e| matches!(e, Error::Shape { .. }),
                &["pooling tokens", "6 rows of 8"],
            )),
        ),
        (
            "f16 tokens for an f32 plan",
            (DType::F16, &[2, 3, 8]),
            None,
            &[2, 16],
            Some((|e| matches!(e, Error::DType { .. }), &["pooling tokens"])),
        ),
        (
            "an output one mode wide",
            (DType::F32, &[2, 3, 8]),
            None,
            &[2, 8],
            Some((
                |e| matches!(e, Error::Shape { .. }),
                &["pooling output", "[2, 16]"],
            )),
        ),
        (
            "cls embeddings the plan was built without",
            (DType::F32, &[2, 3, 8]),
            Some(&[2, 8]),
            &[2, 16],
            Some((
                |e| matches!(e, Error::InvalidArgument(_)),
                &[
                    "cls_token_embeddings",
                    "exactly when the plan was built with them",
                ],
            )),
        ),
    ];
    rows.into_iter()
        .map(|(what, (dtype, tokens), cls, out, refused)| BuffersCase {
            what,
            tokens: (dtype, tokens.to_vec()),
            cls: cls.map(|c| (DType::F32, c.to_vec())),
            out: (DType::F32, out.to_vec()),
            refused,
        })
        .collect()
}
