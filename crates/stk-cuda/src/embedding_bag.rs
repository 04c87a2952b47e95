//! Gather-mean embedding bag (`kernels/embedding_bag.cu`): StaticEmbedding and model2vec on
//! the GPU. One output row per bag of token ids.
//!
//! The table (f32, f16, bf16 or int8, as on the CPU), its optional `mapping` (token id → table row) and
//! per-token `weights` are checked once, by the check the CPU shares, when they are put on the
//! device ([`DeviceEmbeddingTable`]); the ids come as [`TokenBags`], whose ids are all below its
//! vocabulary. Together these bound every row the kernel reads.

use crate::device::{CudaDevice, DeviceTensor};
use crate::launch::{Arg, LaunchShape};
use crate::normalize::NormRule;
use crate::ptx;
use crate::views::aligned16;
use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
use stk_core::{validate, DType, Error, Result, Tensor, TokenBags};

/// Threads per block (`BAG_THREADS` in `kernels/embedding_bag.cu`): eight warps, one bag each.
pub const BAG_THREADS: u32 = 256;

/// How a bag's rows are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BagReduce {
    /// `Σ row`.
    Sum,
    /// `Σ row / count` (model2vec, StaticEmbedding); an empty bag gives zeros.
    MeanByCount,
    /// `Σ row / Σ weight` over the bag's tokens (the per-token weights, or 1 each); an empty
    /// bag or a zero weight sum gives zeros.
    MeanByWeightSum,
}

impl BagReduce {
    /// `DIVIDE_*` in `kernels/embedding_bag.cu`.
    fn code(self) -> i32 {
        match self {
            BagReduce::Sum => 0,
            BagReduce::MeanByCount => 1,
            BagReduce::MeanByWeightSum => 2,
        }
    }
}

/// An embedding table resident on the device, with its optional mapping and weights.
#[derive(Debug)]
pub struct DeviceEmbeddingTable {
    table: DeviceTensor,
    mapping: Option<CudaSlice<i32>>,
    weights: Option<CudaSlice<f32>>,
    rows: usize,
    dim: usize,
    vocab: usize,
}

impl DeviceEmbeddingTable {
    /// Check (see [`validate::EmbeddingTable::check`]) and copy to the device once; reuse for every batch.
    pub fn new(
        dev: &CudaDevice,
        table: &Tensor,
        mapping: Option<&Tensor>,
        weights: Option<&Tensor>,
    ) -> Result<Self> {
        // The checks every backend shares (the CPU EmbeddingBag makes the same call).
        let checked = validate::EmbeddingTable::check(table, mapping, weights)?;
        Ok(DeviceEmbeddingTable {
            table: dev.upload(table)?,
            // Every entry is below rows < 2^31 (checked), so it fits the kernel's i32.
            mapping: checked
                .mapping
                .as_deref()
                .map(|m| dev.htod(&m.iter().map(|&r| r as i32).collect::<Vec<_>>()))
                .transpose()?,
            weights: checked
                .weights
                .as_deref()
                .map(|w| dev.htod(w))
                .transpose()?,
            rows: checked.rows,
            dim: checked.dim,
            vocab: checked.vocab,
        })
    }
    /// Columns of the table (D).
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Rows stored in the table (after any id mapping, possibly fewer than the vocabulary).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Token ids accepted: `0..vocab`.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    /// The stored element type of the table (f32, f16, bf16 or int8).
    pub fn dtype(&self) -> DType {
        self.table.dtype()
    }
    /// Bytes of the table itself.
    pub fn table_bytes(&self) -> usize {
        self.table.size_in_bytes()
    }
}

/// Token bags on the device.
#[derive(Debug)]
pub struct DeviceTokenBags {
    /// `None` when there are no ids at all (every bag empty).
    ids: Option<CudaSlice<u32>>,
    offsets: CudaSlice<i64>,
    num_bags: usize,
    num_ids: usize,
    vocab: usize,
}

impl DeviceTokenBags {
    /// Bags (output rows).
    pub fn num_bags(&self) -> usize {
        self.num_bags
    }
    /// Token ids over all bags.
    pub fn num_ids(&self) -> usize {
        self.num_ids
    }
}

#[doc(hidden)]
/// Lanes of a warp that cover one row: the row's packs rounded up to a power of two, ≤ 32.
pub fn lanes_per_row(dim: usize, dtype: DType) -> u32 {
    lanes_for(dim, pack_for(dim, dtype))
}

/// [`lanes_per_row`] for packs of `pack` elements.
fn lanes_for(dim: usize, pack: usize) -> u32 {
    (dim / pack).max(1).next_power_of_two().min(32) as u32
}

/// Elements per load: the 16-byte pack when D is a multiple of it, else one.
fn pack_for(dim: usize, dtype: DType) -> usize {
    let v = ptx::pack_width(dtype);
    if dim % v == 0 {
        v
    } else {
        1
    }
}

#[doc(hidden)]
/// One embedding-bag launch. The kernel's arguments are, in order: table, `dim`, mapping (or
/// null), weights (or null), ids (or null when there are none), offsets (i64), `num_ids,
/// vocab, num_bags, divide_by, normalize, norm.add, norm.floor, lanes_per_row`, output
/// ([`BagLaunch::args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BagLaunch {
    pub shape: LaunchShape,
    pub dim: i32,
    pub num_ids: i64,
    pub vocab: i64,
    pub num_bags: i64,
    pub divide_by: i32,
    pub normalize: i32,
    pub norm: NormRule,
    pub lanes_per_row: i32,
}

#[doc(hidden)]
/// The buffers of one embedding-bag launch.
#[derive(Debug, Clone)]
pub struct BagBuffers<B> {
    pub table: B,
    pub mapping: Option<B>,
    pub weights: Option<B>,
    pub ids: Option<B>,
    pub offsets: B,
    pub out: B,
}

impl BagLaunch {
    pub fn args<B>(&self, b: BagBuffers<B>) -> Vec<Arg<B>> {
        vec![
            Arg::Buf(b.table),
            Arg::I32(self.dim),
            Arg::opt(b.mapping),
            Arg::opt(b.weights),
            Arg::opt(b.ids),
            Arg::Buf(b.offsets),
            Arg::I64(self.num_ids),
            Arg::I64(self.vocab),
            Arg::I64(self.num_bags),
            Arg::I32(self.divide_by),
            Arg::I32(self.normalize),
            Arg::F32(self.norm.add),
            Arg::F32(self.norm.floor),
            Arg::I32(self.lanes_per_row),
            Arg::Buf(b.out),
        ]
    }
}

#[doc(hidden)]
/// What a bag launch computes: the table's shape, the bags, the reduction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BagProblem {
    pub dim: usize,
    pub dtype: DType,
    /// Ids the table answers (the mapping's length, else its rows).
    pub vocab: usize,
    pub num_ids: usize,
    pub num_bags: usize,
    pub reduce: BagReduce,
    pub normalize: Option<NormRule>,
    /// Whether the output is 16-byte aligned (the packed kernels store 16 bytes at a time):
    /// a whole allocation is; a caller's view may not be, and then gets the element-wise
    /// kernel.
    pub aligned: bool,
}

#[doc(hidden)]
/// The launch computing `p.num_bags` bags (`None` when there is nothing to compute). The
/// table is a whole allocation ([`DeviceEmbeddingTable`]), so 16-byte loads need D to be a
/// multiple of the pack, and 16-byte stores an aligned output as well.
pub fn embedding_bag_launch(p: &BagProblem) -> Result<Option<BagLaunch>> {
    if p.num_bags == 0 || p.dim == 0 {
        return Ok(None);
    }
    let warps_per_block = (BAG_THREADS / 32) as usize;
    let grid = u32::try_from(p.num_bags.div_ceil(warps_per_block))
        .map_err(|_| Error::invalid(format!("{} bags exceed one launch", p.num_bags)))?;
    let dim = p.dim;
    let pack = if p.aligned { pack_for(dim, p.dtype) } else { 1 };
    Ok(Some(BagLaunch {
        shape: LaunchShape {
            kernel: ptx::select("embedding_bag", p.dtype, pack > 1)?,
            grid,
            threads: BAG_THREADS,
            // Each thread's f64 totals, one per element of its pack.
            shared_bytes: BAG_THREADS * pack as u32 * 8,
        },
        dim: i32::try_from(dim).map_err(|_| Error::invalid(format!("D = {dim} exceeds 2^31")))?,
        num_ids: p.num_ids as i64,
        vocab: p.vocab as i64,
        num_bags: p.num_bags as i64,
        divide_by: p.reduce.code(),
        normalize: i32::from(p.normalize.is_some()),
        norm: p.normalize.unwrap_or(NormRule::SENTENCE_TRANSFORMERS),
        lanes_per_row: lanes_for(dim, pack) as i32,
    }))
}

impl CudaDevice {
    /// Copy validated bags (their ids and CSR offsets) to the device, for
    /// [`CudaDevice::embedding_bag_device`].
    pub fn upload_bags(&self, bags: &TokenBags) -> Result<DeviceTokenBags> {
        let offsets: Vec<i64> = bags.offsets().iter().map(|&o| o as i64).collect();
        Ok(DeviceTokenBags {
            ids: if bags.ids().is_empty() {
                None
            } else {
                Some(self.htod(bags.ids())?)
            },
            offsets: self.htod(&offsets)?,
            num_bags: bags.num_bags(),
            num_ids: bags.ids().len(),
            vocab: bags.vocab(),
        })
    }

    /// One row per bag, `[bags, D]` f32: the bag's rows (`table[mapping[id]] · weights[id]`)
    /// combined by `reduce`, then divided by `normalize`'s divisor of their norm when given.
    pub fn embedding_bag(
        &self,
        table: &DeviceEmbeddingTable,
        bags: &TokenBags,
        reduce: BagReduce,
        normalize: Option<NormRule>,
    ) -> Result<Tensor> {
        check_vocab(table.vocab, bags.vocab())?;
        let dims = [bags.num_bags(), table.dim];
        if bags.num_bags() == 0 || table.dim == 0 {
            return Tensor::zeros(dims, DType::F32);
        }
        let device_bags = self.upload_bags(bags)?;
        let mut out = self.zeros(dims, DType::F32)?;
        self.embedding_bag_device(table, &device_bags, reduce, normalize, &mut out)?;
        self.download(&out)
    }

    /// The kernel on device buffers, on this handle's stream; `out` is `[bags, D]` f32.
    #[allow(unsafe_code)]
    pub fn embedding_bag_device(
        &self,
        table: &DeviceEmbeddingTable,
        bags: &DeviceTokenBags,
        reduce: BagReduce,
        normalize: Option<NormRule>,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        check_vocab(table.vocab, bags.vocab)?;
        check_output(bags.num_bags, table.dim, (out.dtype(), out.dims()))?;
        let stream = self.stream();
        let ids = bags.ids.as_ref().map(|i| i.device_ptr(stream));
        let offsets = bags.offsets.device_ptr(stream);
        let (out_ptr, _o) = out.ptr_mut(stream);
        // SAFETY: offsets has bags + 1 entries ending at the ids' count (TokenBags), every id
        // < bags.vocab <= table.vocab (checked), and the table's buffers passed the shared
        // table check (mapping entries < rows); out is [bags, D] f32 (checked). The guards
        // keep every buffer alive past the enqueue.
        unsafe {
            self.embedding_bag_raw(
                stream.cu_stream(),
                table,
                ids.as_ref().map(|(p, _)| *p),
                offsets.0,
                bags.num_ids,
                bags.num_bags,
                reduce,
                normalize,
                out_ptr,
            )
        }
    }

    /// Embedding bags of a caller's device buffers on the caller's `stream` (a stream of this
    /// device's context): `ids` (u32) and `offsets` (i64, `bags + 1` CSR offsets into `ids`)
    /// against a table put on the device once ([`DeviceEmbeddingTable`]), into `out`
    /// (`[bags, D]` f32). No copy, allocation or synchronization: graph-capturable. The ids
    /// and offsets are not read on the host: an id outside the table adds nothing and offsets
    /// are clamped into the ids, so bad values give wrong rows, never a read out of bounds.
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    pub fn embedding_bag_views(
        &self,
        stream: &CudaStream,
        table: &DeviceEmbeddingTable,
        ids: &CudaView<'_, u32>,
        offsets: &CudaView<'_, i64>,
        reduce: BagReduce,
        normalize: Option<NormRule>,
        out: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let Some(num_bags) = offsets.len().checked_sub(1) else {
            return Err(Error::shape("bag offsets", "[bags + 1]", &[0]));
        };
        if out.len() != num_bags * table.dim {
            return Err(Error::shape(
                "embedding bag output",
                format!("[{num_bags}, {}] f32", table.dim),
                &[out.len()],
            ));
        }
        let ids_ptr = (!ids.is_empty()).then(|| ids.device_ptr(stream));
        let (offsets_ptr, _f) = offsets.device_ptr(stream);
        let (out_ptr, _o) = out.device_ptr_mut(stream);
        // SAFETY: the table was checked and uploaded by this device; ids holds ids.len()
        // values (passed as num_ids, so the clamped offsets stay inside), offsets num_bags + 1,
        // out num_bags * D (checked); the borrows outlive the enqueue.
        unsafe {
            self.embedding_bag_raw(
                stream.cu_stream(),
                table,
                ids_ptr.as_ref().map(|(p, _)| *p),
                offsets_ptr,
                ids.len(),
                num_bags,
                reduce,
                normalize,
                out_ptr,
            )
        }
    }

    /// [`CudaDevice::embedding_bag_views`] on raw device pointers, for foreign callers.
    ///
    /// # Safety
    /// `stream` is a live stream of this device's context; `ids` (or null when `num_ids` is
    /// 0) is a device address of `num_ids` u32 values, `offsets` of `num_bags + 1` i64 values,
    /// `out` of `num_bags * table.dim()` f32 values not overlapping the others; all stay
    /// allocated until the launch has run on `stream`.
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn embedding_bag_raw(
        &self,
        stream: cudarc::driver::sys::CUstream,
        table: &DeviceEmbeddingTable,
        ids: Option<u64>,
        offsets: u64,
        num_ids: usize,
        num_bags: usize,
        reduce: BagReduce,
        normalize: Option<NormRule>,
        out: u64,
    ) -> Result<()> {
        let problem = BagProblem {
            dim: table.dim,
            dtype: table.dtype(),
            vocab: table.vocab,
            num_ids,
            num_bags,
            reduce,
            normalize,
            aligned: aligned16(&[out]),
        };
        let Some(l) = embedding_bag_launch(&problem)? else {
            return Ok(());
        };
        let (table_ptr, _t) = table.table.ptr(self.stream());
        let mapping = table.mapping.as_ref().map(|m| m.device_ptr(self.stream()));
        let weights = table.weights.as_ref().map(|w| w.device_ptr(self.stream()));
        let args = l.args(BagBuffers {
            table: table_ptr,
            mapping: mapping.as_ref().map(|(p, _)| *p),
            weights: weights.as_ref().map(|(p, _)| *p),
            ids,
            offsets,
            out,
        });
        // SAFETY: the table's buffers are this device's, checked by the shared table check
        // (mapping entries < rows, mapping and weights of vocab entries); the kernel skips
        // ids >= vocab and clamps offsets into num_ids; the rest is the caller's contract.
        unsafe { self.launch(&l.shape, stream, &args) }
    }
}

#[doc(hidden)]
/// Refuse bags checked against a larger vocabulary than the table answers (the ids are then
/// not all below the table's vocabulary). The device entries make this check before any copy
/// or launch.
pub fn check_vocab(table_vocab: usize, bags_vocab: usize) -> Result<()> {
    if bags_vocab > table_vocab {
        return Err(Error::invalid(format!(
            "token bags were checked against a vocabulary of {bags_vocab} ids, but the table answers only {table_vocab}"
        )));
    }
    Ok(())
}

#[doc(hidden)]
/// Refuse an output buffer (its dtype and dimensions) other than `[num_bags, dim]` f32.
pub fn check_output(num_bags: usize, dim: usize, out: (DType, &[usize])) -> Result<()> {
    if out.0 != DType::F32 || out.1 != [num_bags, dim] {
        return Err(Error::shape(
            "embedding bag output",
            format!("[{num_bags}, {dim}] f32"),
            out.1,
        ));
    }
    Ok(())
}
