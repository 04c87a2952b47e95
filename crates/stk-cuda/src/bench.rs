//! GPU timing for `stk bench ... --device cuda`: CUDA events around many launches after a
//! warm-up, and the device-to-device copy bandwidth measured in the same process as the
//! yardstick, so each kernel is reported as a fraction of what the memory system delivers.

use crate::device::{cuda_err, CudaDevice};
use crate::embedding_bag::{BagReduce, DeviceEmbeddingTable};
use crate::normalize::NormRule;
use crate::pool_device::{RawPool, RawRows};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::DevicePtr;
use rand::{Rng, SeedableRng};
use stk_core::{DType, Error, PoolingSpec, Result, Tensor, TokenBags};

/// Warm-up and timed repetitions of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Repeats {
    /// Untimed runs first (clocks up, caches and JIT warm).
    pub warmup: usize,
    /// Timed runs, averaged.
    pub iters: usize,
}

impl Default for Repeats {
    fn default() -> Self {
        Repeats {
            warmup: 10,
            iters: 50,
        }
    }
}

/// One kernel's measurement next to the copy bandwidth of the same device and process.
#[derive(Debug, Clone)]
pub struct KernelMeasurement {
    /// What was measured, e.g. `pool mean bf16 [256, 512, 1024]`.
    pub label: String,
    /// Mean milliseconds per launch.
    pub ms: f64,
    /// Bytes the launch must move at least (inputs read once + outputs written).
    pub bytes: usize,
    /// Device-to-device copy bandwidth (bytes read + written per second).
    pub copy_bytes_per_s: f64,
    /// What the byte count covers, for the reader.
    pub detail: String,
}

impl KernelMeasurement {
    /// Effective bandwidth: [`KernelMeasurement::bytes`] per second.
    pub fn bytes_per_s(&self) -> f64 {
        self.bytes as f64 / (self.ms * 1e-3)
    }
    /// Effective bandwidth as a fraction of the copy bandwidth.
    pub fn fraction_of_copy(&self) -> f64 {
        self.bytes_per_s() / self.copy_bytes_per_s
    }
    /// One line for logs: label, time, GB/s, % of copy.
    pub fn line(&self) -> String {
        format!(
            "{}: {:.4} ms, {:.1} GB/s = {:.1}% of device copy ({:.1} GB/s)",
            self.label,
            self.ms,
            self.bytes_per_s() / 1e9,
            100.0 * self.fraction_of_copy(),
            self.copy_bytes_per_s / 1e9
        )
    }
}

impl CudaDevice {
    /// Mean milliseconds of `op` (which submits work to this device's stream), timed with CUDA
    /// events around `iters` back-to-back runs after `warmup` untimed ones.
    pub fn time_ms(&self, repeats: Repeats, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
        if repeats.iters == 0 {
            return Err(Error::invalid("timing needs at least one iteration"));
        }
        for _ in 0..repeats.warmup {
            op()?;
        }
        self.synchronize()?;
        let event = || {
            self.context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(cuda_err("creating a timing event"))
        };
        let (start, end) = (event()?, event()?);
        start
            .record(self.stream())
            .map_err(cuda_err("recording an event"))?;
        for _ in 0..repeats.iters {
            op()?;
        }
        end.record(self.stream())
            .map_err(cuda_err("recording an event"))?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(cuda_err("reading event times"))?;
        Ok(ms as f64 / repeats.iters as f64)
    }

    /// Device-to-device copy bandwidth over a `bytes`-byte buffer, counting bytes read plus
    /// bytes written per second (the same accounting as [`KernelMeasurement::bytes`]).
    pub fn copy_bandwidth(&self, bytes: usize, repeats: Repeats) -> Result<f64> {
        let src = self.alloc_zeros::<u8>(bytes)?;
        let mut dst = self.alloc_zeros::<u8>(bytes)?;
        let ms = self.time_ms(repeats, || {
            self.stream()
                .memcpy_dtod(&src, &mut dst)
                .map_err(cuda_err("device-to-device copy"))
        })?;
        Ok(2.0 * bytes as f64 / (ms * 1e-3))
    }
}

fn random_tensor(dims: &[usize], dtype: DType, rng: &mut impl Rng) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(dims.to_vec(), v)?.to_dtype(dtype)
}

/// How many tokens of each sequence are real in a pooling benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchLengths {
    /// Every position is a real token (pure streaming of `[B, T, D]`).
    Full,
    /// Lengths uniform in `1..=T`, right-padded: only real rows are read and counted.
    Random,
}

/// Masked pooling of a random `[batch, seq, dim]` batch: the fused kernel's time and effective
/// bandwidth (real token rows read + output written) against the copy bandwidth.
#[allow(clippy::too_many_arguments)]
pub fn bench_pool(
    dev: &CudaDevice,
    dims: [usize; 3],
    dtype: DType,
    spec: &PoolingSpec,
    lengths: BenchLengths,
    normalize: bool,
    repeats: Repeats,
    seed: u64,
) -> Result<KernelMeasurement> {
    let [b, t, d] = dims;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tokens = random_tensor(&dims, dtype, &mut rng)?;
    let mask: Vec<u8> = (0..b)
        .flat_map(|_| {
            let len = match lengths {
                BenchLengths::Full => t,
                BenchLengths::Random => rng.gen_range(1..=t.max(1)),
            };
            (0..t).map(move |j| u8::from(j < len))
        })
        .collect();
    let real_rows = mask.iter().filter(|&&m| m == 1).count();
    // The device-buffer path a backend calls: tokens and mask already on the device, the
    // rows found by the kernel from the mask; nothing but the launch is timed.
    let mask_i64: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
    let x = dev.upload(&tokens)?;
    let mask_dev = dev.upload(&Tensor::from_vec([b, t], mask_i64)?)?;
    let out_dtype = stk_core::validate::pool_output_dtype(dtype, spec, false, None);
    let mut out = dev.zeros([b, spec.modes.len() * d], out_dtype)?;
    let stream = dev.stream().clone();
    let rows = |mask: u64| RawRows::Padded {
        mask,
        batch: b,
        seq_len: t,
        mask_bytes: 8,
    };
    // The split a small batch gets: its workspace, allocated once outside the timed part,
    // as a backend would.
    let probe = RawPool {
        tokens: 0,
        dtype,
        token_rows: b * t,
        dim: d,
        rows: rows(0),
        spec,
        token_weights_sum: None,
        out: 0,
        normalize,
    };
    let (chunks, workspace_bytes) = (probe.chunks(), probe.workspace_bytes());
    let workspace = dev.alloc_zeros::<u8>(workspace_bytes.max(1))?;
    let ms = dev.time_ms(repeats, || {
        let (x_ptr, _x) = x.ptr(&stream);
        let (mask_ptr, _m) = mask_dev.ptr(&stream);
        let (out_ptr, _o) = out.ptr_mut(&stream);
        let (ws_ptr, _w) = workspace.device_ptr(&stream);
        let raw = RawPool {
            tokens: x_ptr,
            rows: rows(mask_ptr),
            out: out_ptr,
            ..probe
        };
        // SAFETY: whole allocations of this device on its stream: x holds b × t × d elements
        // of dtype, the mask b × t i64, out b × modes × d of the output dtype, the workspace
        // the bytes the split needs (allocated above from the same shapes); the guards keep
        // them alive past the enqueue.
        #[allow(unsafe_code)]
        unsafe {
            dev.pool_raw_with_workspace(stream.cu_stream(), &raw, ws_ptr, workspace_bytes)
        }
    })?;
    let size = dtype.size_in_bytes();
    // The workspace traffic (chunk partials written and read back) is not counted: it is
    // overhead of the split, not work the pooling must do.
    let bytes = real_rows * d * size + b * t * 8 + out.size_in_bytes();
    let copy = dev.copy_bandwidth(tokens.bytes().len().max(1 << 26), repeats)?;
    let modes: Vec<_> = spec.modes.iter().map(|m| m.as_str()).collect();
    Ok(KernelMeasurement {
        label: format!(
            "pool {} {dtype} [{b}, {t}, {d}] lengths={lengths:?}{} chunks={chunks}",
            modes.join("+"),
            if normalize { " +normalize" } else { "" }
        ),
        ms,
        bytes,
        copy_bytes_per_s: copy,
        detail: format!(
            "device-buffer path (mask read on the device, no host plan; rows split in {chunks} chunks with a {workspace_bytes}-byte workspace); real token rows + the i64 mask read, output written; {:.1}% of the {} positions are real tokens, padding is not read",
            100.0 * real_rows as f64 / (b * t).max(1) as f64,
            b * t
        ),
    })
}

/// Embedding bag over a random `[rows, dim]` table: `bags` bags of `tokens_per_bag` uniformly
/// random ids (a table larger than L2 makes nearly every row a DRAM read). Bytes counted: the
/// rows gathered, the ids and offsets, and the output.
#[allow(clippy::too_many_arguments)]
pub fn bench_embedding_bag(
    dev: &CudaDevice,
    rows: usize,
    dim: usize,
    dtype: DType,
    bags: usize,
    tokens_per_bag: usize,
    normalize: Option<NormRule>,
    repeats: Repeats,
    seed: u64,
) -> Result<KernelMeasurement> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let table = match dtype {
        DType::I8 => {
            let v: Vec<i8> = (0..rows * dim)
                .map(|_| rng.gen_range(-127i8..=127))
                .collect();
            Tensor::from_vec([rows, dim], v)?
        }
        _ => random_tensor(&[rows, dim], dtype, &mut rng)?,
    };
    let ids: Vec<u32> = (0..bags * tokens_per_bag)
        .map(|_| rng.gen_range(0..rows as u32))
        .collect();
    let offsets: Vec<usize> = (0..=bags).map(|i| i * tokens_per_bag).collect();
    let token_bags = TokenBags::new(ids, offsets, rows)?;
    let device_table = DeviceEmbeddingTable::new(dev, &table, None, None)?;
    let device_bags = dev.upload_bags(&token_bags)?;
    let mut out = dev.zeros([bags, dim], DType::F32)?;
    let ms = dev.time_ms(repeats, || {
        dev.embedding_bag_device(
            &device_table,
            &device_bags,
            BagReduce::MeanByCount,
            normalize,
            &mut out,
        )
    })?;
    let n = bags * tokens_per_bag;
    let bytes = n * dim * dtype.size_in_bytes() + n * 4 + (bags + 1) * 8 + out.size_in_bytes();
    let copy = dev.copy_bandwidth(device_table.table_bytes().max(1 << 26), repeats)?;
    Ok(KernelMeasurement {
        label: format!(
            "embedding_bag mean {dtype} table [{rows}, {dim}] ({:.0} MiB), {bags} bags x {tokens_per_bag} ids{}",
            device_table.table_bytes() as f64 / (1 << 20) as f64,
            if normalize.is_some() { " +normalize" } else { "" }
        ),
        ms,
        bytes,
        copy_bytes_per_s: copy,
        detail: "table rows gathered + 4-byte ids + 8-byte offsets + f32 output".into(),
    })
}
