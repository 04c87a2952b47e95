//! Gather-mean embedding bag (`kernels/embedding_bag.cu`): StaticEmbedding and model2vec on
//! the GPU. One output row per bag of token ids.
//!
//! The table (f32, f16, bf16 or int8), its optional `mapping` (token id → table row) and
//! per-token `weights` are checked once when they are put on the device
//! ([`DeviceEmbeddingTable`]); the ids come as [`TokenBags`], whose ids are all below its
//! vocabulary. Together these bound every row the kernel reads.

use crate::device::{CudaDevice, DeviceTensor};
use crate::normalize::NormRule;
use crate::ptx;
use cudarc::driver::{CudaSlice, LaunchConfig};
use stk_core::{DType, Error, Result, Tensor, TokenBags};

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

/// A table with its mapping and weights, checked against each other on the host.
#[derive(Debug, Clone)]
pub struct CheckedTable {
    /// Table rows.
    pub rows: usize,
    /// Row width D.
    pub dim: usize,
    /// Token ids the table answers: the mapping's length, else the table's rows.
    pub vocab: usize,
    pub mapping: Option<Vec<i32>>,
    pub weights: Option<Vec<f32>>,
}

impl CheckedTable {
    /// `table [rows, D]` (f32/f16/bf16/i8); `mapping [vocab]` (i32/i64, each in `0..rows`);
    /// `weights [vocab]` (any float dtype).
    pub fn new(table: &Tensor, mapping: Option<&Tensor>, weights: Option<&Tensor>) -> Result<Self> {
        table.expect_dtype(
            "embedding table",
            &[DType::F32, DType::F16, DType::BF16, DType::I8],
        )?;
        let dims = table.expect_rank("embedding table [rows, D]", 2)?;
        let (rows, dim) = (dims[0], dims[1]);
        if dim > i32::MAX as usize {
            return Err(Error::shape(
                "embedding table",
                format!("D of at most {}", i32::MAX),
                dims,
            ));
        }
        let mapping = match mapping {
            None => None,
            Some(m) => {
                m.expect_dtype("token mapping", &[DType::I32, DType::I64])?;
                m.expect_rank("token mapping [vocab]", 1)?;
                let values = m.to_i64_vec()?;
                if let Some((pos, &v)) = values
                    .iter()
                    .enumerate()
                    .find(|(_, &v)| v < 0 || v as u64 >= rows as u64)
                {
                    return Err(Error::invalid(format!(
                        "token mapping entry {pos} is {v}, outside the embedding table's {rows} rows"
                    )));
                }
                // Each value is in 0..rows, and rows of a table that fits in memory... but a
                // row index must also fit the kernel's i32: check it rather than assume.
                if rows > i32::MAX as usize && values.iter().any(|&v| v > i32::MAX as i64) {
                    return Err(Error::Unsupported(
                        "table rows beyond 2^31 behind a mapping".into(),
                        "cuda".into(),
                    ));
                }
                Some(values.into_iter().map(|v| v as i32).collect::<Vec<_>>())
            }
        };
        let vocab = mapping.as_ref().map_or(rows, Vec::len);
        let weights = match weights {
            None => None,
            Some(w) => {
                w.expect_dtype("token weights", &[DType::F32, DType::F16, DType::BF16])?;
                if w.dims() != [vocab] {
                    return Err(Error::shape(
                        "token weights",
                        format!("[{vocab}] (one per token id)"),
                        w.dims(),
                    ));
                }
                Some(w.to_f32_vec()?)
            }
        };
        Ok(CheckedTable {
            rows,
            dim,
            vocab,
            mapping,
            weights,
        })
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
    /// Check (see [`CheckedTable::new`]) and copy to the device once; reuse for every batch.
    pub fn new(
        dev: &CudaDevice,
        table: &Tensor,
        mapping: Option<&Tensor>,
        weights: Option<&Tensor>,
    ) -> Result<Self> {
        let checked = CheckedTable::new(table, mapping, weights)?;
        Ok(DeviceEmbeddingTable {
            table: dev.upload(table)?,
            mapping: checked
                .mapping
                .as_deref()
                .map(|m| dev.htod(m))
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
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Token ids accepted: `0..vocab`.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
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
    pub fn num_bags(&self) -> usize {
        self.num_bags
    }
    pub fn num_ids(&self) -> usize {
        self.num_ids
    }
}

/// Lanes of a warp that cover one row: the row's packs rounded up to a power of two, ≤ 32.
pub fn lanes_per_row(dim: usize, dtype: DType) -> u32 {
    let v = pack_for(dim, dtype);
    (dim / v).max(1).next_power_of_two().min(32) as u32
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

/// The shape and scalar arguments of one embedding-bag launch. The kernel's arguments are, in
/// order: table, `dim`, mapping (or null), weights (or null), ids (or null when there are
/// none), offsets (i64), `num_bags, divide_by, normalize, norm.add, norm.floor,
/// lanes_per_row`, output.
#[derive(Debug, Clone, PartialEq)]
pub struct BagLaunch {
    pub kernel: &'static str,
    pub grid: u32,
    pub threads: u32,
    pub dim: i32,
    pub num_bags: i64,
    pub divide_by: i32,
    pub normalize: i32,
    pub norm: NormRule,
    pub lanes_per_row: i32,
}

/// The launch computing `num_bags` bags over a `[rows, dim]` table of `dtype` (`None` when
/// there is nothing to compute).
pub fn embedding_bag_launch(
    dim: usize,
    dtype: DType,
    num_bags: usize,
    reduce: BagReduce,
    normalize: Option<NormRule>,
) -> Result<Option<BagLaunch>> {
    if num_bags == 0 || dim == 0 {
        return Ok(None);
    }
    let warps_per_block = (BAG_THREADS / 32) as usize;
    let grid = u32::try_from(num_bags.div_ceil(warps_per_block))
        .map_err(|_| Error::invalid(format!("{num_bags} bags exceed one launch")))?;
    Ok(Some(BagLaunch {
        kernel: ptx::embedding_bag_kernel(dtype, pack_for(dim, dtype) > 1)?,
        grid,
        threads: BAG_THREADS,
        dim: i32::try_from(dim).map_err(|_| Error::invalid(format!("D = {dim} exceeds 2^31")))?,
        num_bags: num_bags as i64,
        divide_by: reduce.code(),
        normalize: i32::from(normalize.is_some()),
        norm: normalize.unwrap_or(NormRule::SENTENCE_TRANSFORMERS),
        lanes_per_row: lanes_per_row(dim, dtype) as i32,
    }))
}

impl CudaDevice {
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
        check_vocab(table, bags.vocab())?;
        let dims = [bags.num_bags(), table.dim];
        if bags.num_bags() == 0 || table.dim == 0 {
            return Tensor::zeros(dims, DType::F32);
        }
        let device_bags = self.upload_bags(bags)?;
        let mut out = self.zeros(dims, DType::F32)?;
        self.embedding_bag_device(table, &device_bags, reduce, normalize, &mut out)?;
        self.download(&out)
    }

    /// The kernel on device buffers; `out` is `[bags, D]` f32.
    pub fn embedding_bag_device(
        &self,
        table: &DeviceEmbeddingTable,
        bags: &DeviceTokenBags,
        reduce: BagReduce,
        normalize: Option<NormRule>,
        out: &mut DeviceTensor,
    ) -> Result<()> {
        check_vocab(table, bags.vocab)?;
        if out.dtype() != DType::F32 || out.dims() != [bags.num_bags, table.dim] {
            return Err(Error::shape(
                "embedding bag output",
                format!("[{}, {}] f32", bags.num_bags, table.dim),
                out.dims(),
            ));
        }
        let Some(l) =
            embedding_bag_launch(table.dim, table.dtype(), bags.num_bags, reduce, normalize)?
        else {
            return Ok(());
        };
        let cfg = LaunchConfig {
            grid_dim: (l.grid, 1, 1),
            block_dim: (l.threads, 1, 1),
            shared_mem_bytes: 0,
        };
        // In bounds: offsets has bags + 1 entries ending at the ids' count (TokenBags), every
        // id < bags.vocab <= table.vocab = mapping/weights length, every mapping entry < rows
        // (CheckedTable), so each row read is table[0..rows * D]; out is [bags, D].
        self.launch(l.kernel)?
            .tensor(&table.table)
            .i32(&l.dim)
            .opt_buf(table.mapping.as_ref())
            .opt_buf(table.weights.as_ref())
            .opt_buf(bags.ids.as_ref())
            .buf(&bags.offsets)
            .i64(&l.num_bags)
            .i32(&l.divide_by)
            .i32(&l.normalize)
            .f32(&l.norm.add)
            .f32(&l.norm.floor)
            .i32(&l.lanes_per_row)
            .tensor_mut(out)
            .run(cfg)
    }
}

fn check_vocab(table: &DeviceEmbeddingTable, bags_vocab: usize) -> Result<()> {
    if bags_vocab > table.vocab {
        return Err(Error::invalid(format!(
            "token bags were checked against a vocabulary of {bags_vocab} ids, but the table answers only {}",
            table.vocab
        )));
    }
    Ok(())
}
