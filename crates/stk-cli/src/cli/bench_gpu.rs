//! The GPU arms of `stk bench` (`--device cuda[:N]`) and `stk bench embedding-bag`. GPU kernels
//! are timed with CUDA events after a warm-up, and reported as a fraction of the
//! device-to-device copy bandwidth measured in the same process (`stk_cuda::bench`).

use clap::Args;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::hint::black_box;

use stk::{DType, Device, Error, PoolingSpec, Result, Tensor};
use stk_core::TokenBags;
use stk_cuda::bench::{self, BenchLengths, KernelMeasurement, Repeats};
use stk_cuda::{CudaDevice, NormRule};

/// Warm-up launches before the timed ones.
const WARMUP: usize = 10;

/// `stk bench pool --device cuda[:N]`: the fused pooling kernel on random data of `shape`
/// (sequence lengths as the CPU arm draws them: random in 1..=T, or all T), against the copy
/// bandwidth.
#[allow(clippy::too_many_arguments)]
pub fn pool(
    ordinal: usize,
    shape: [usize; 3],
    dtype: DType,
    spec: &PoolingSpec,
    lengths: BenchLengths,
    runs: usize,
    seed: u64,
    json: bool,
) -> Result<()> {
    let dev = stk_cuda::shared_device(ordinal)?;
    let repeats = Repeats {
        warmup: WARMUP,
        iters: runs.max(1),
    };
    let m = bench::bench_pool(&dev, shape, dtype, spec, lengths, false, repeats, seed)?;
    report(&dev, "pool", &m, repeats, json);
    Ok(())
}

#[derive(Args)]
pub struct EmbeddingBagArgs {
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Table rows (a table far larger than the GPU's L2 cache makes every row a DRAM read)
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Table row width D
    #[arg(long, default_value_t = 256)]
    dim: usize,
    /// Table dtype: f32, f16, bf16 or i8
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Bags (texts) per launch
    #[arg(long, default_value_t = 16384)]
    bags: usize,
    /// Token ids per bag, uniformly random over the table
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Normalize each bag's mean: `st` (max(‖v‖, 1e-12)) or `model2vec` (‖v‖ + 1e-32)
    #[arg(long)]
    normalize: Option<String>,
    /// Timed runs (after warm-up)
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Seed of the random table and ids
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON line instead of text
    #[arg(long)]
    json: bool,
}

/// Refuse benchmark tables above this size rather than die allocating them.
const MAX_TABLE_BYTES: usize = 16 << 30;

pub fn embedding_bag(args: EmbeddingBagArgs) -> Result<()> {
    let device: Device = args.device.parse()?;
    let dtype = DType::parse(&args.dtype)?;
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::I8) {
        return Err(Error::invalid(format!(
            "--dtype must be f32, f16, bf16 or i8, got {dtype}"
        )));
    }
    let rule = match args.normalize.as_deref() {
        None => None,
        Some("st") | Some("sentence-transformers") => Some(NormRule::SENTENCE_TRANSFORMERS),
        Some("model2vec") => Some(NormRule::MODEL2VEC),
        Some(other) => {
            return Err(Error::invalid(format!(
                "--normalize must be st or model2vec, got `{other}`"
            )))
        }
    };
    if args.rows == 0 || args.dim == 0 || args.rows > u32::MAX as usize {
        return Err(Error::invalid(
            "--rows must be in 1..2^32 and --dim at least 1",
        ));
    }
    args.rows
        .checked_mul(args.dim)
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
        .filter(|&n| n <= MAX_TABLE_BYTES)
        .ok_or_else(|| Error::invalid("the table is larger than this benchmark allows (16 GiB)"))?;
    args.bags
        .checked_mul(args.tokens)
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or_else(|| Error::invalid("--bags × --tokens must stay below 2^32"))?;
    let runs = args.runs.max(1);
    match device {
        Device::Cuda(n) => {
            let dev = stk_cuda::shared_device(n)?;
            let repeats = Repeats {
                warmup: WARMUP,
                iters: runs,
            };
            let m = bench::bench_embedding_bag(
                &dev,
                args.rows,
                args.dim,
                dtype,
                args.bags,
                args.tokens,
                rule,
                repeats,
                args.seed,
            )?;
            report(&dev, "embedding-bag", &m, repeats, args.json);
            Ok(())
        }
        Device::Cpu => embedding_bag_cpu(&args, dtype, rule, runs),
    }
}

fn report(dev: &CudaDevice, bench: &str, m: &KernelMeasurement, repeats: Repeats, json: bool) {
    if json {
        let line = serde_json::json!({
            "bench": bench,
            "device": format!("cuda:{}", dev.ordinal()),
            "device_name": dev.name(),
            "driver_version": dev.driver_version(),
            "what": m.label,
            "warmup": repeats.warmup,
            "runs": repeats.iters,
            "kernel_ms": m.ms,
            "bytes": m.bytes,
            "gbps": m.bytes_per_s() / 1e9,
            "copy_gbps": m.copy_bytes_per_s / 1e9,
            "fraction_of_copy": m.fraction_of_copy(),
        });
        println!("{line}");
    } else {
        let driver = dev.driver_version();
        println!(
            "stk bench {bench}: {} on cuda:{} ({}, driver CUDA {}.{}), CUDA events, mean of {} runs after {} warm-up",
            m.label,
            dev.ordinal(),
            dev.name(),
            driver / 1000,
            driver % 1000 / 10,
            repeats.iters,
            repeats.warmup
        );
        println!(
            "  kernel {:9.4} ms  {:7.1} GB/s ({})",
            m.ms,
            m.bytes_per_s() / 1e9,
            m.detail
        );
        println!(
            "  copy              {:7.1} GB/s (device to device, read + write)",
            m.copy_bytes_per_s / 1e9
        );
        println!("  fraction of copy bandwidth: {:.2}", m.fraction_of_copy());
    }
}

/// The CPU arm: stk-cpu's embedding bag (what `--device cpu` encoding runs) on the same
/// random table and ids, against a parallel copy of the table's bytes.
fn embedding_bag_cpu(
    args: &EmbeddingBagArgs,
    dtype: DType,
    rule: Option<NormRule>,
    runs: usize,
) -> Result<()> {
    if rule.is_some() {
        return Err(Error::Unsupported(
            "--normalize".into(),
            "the cpu arm of bench embedding-bag".into(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let n = args.rows * args.dim;
    let table = match dtype {
        DType::I8 => Tensor::from_vec(
            [args.rows, args.dim],
            (0..n).map(|_| rng.gen_range(-127i8..=127)).collect(),
        )?,
        _ => Tensor::from_vec(
            [args.rows, args.dim],
            (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect(),
        )?
        .to_dtype(dtype)?,
    };
    let ids: Vec<u32> = (0..args.bags * args.tokens)
        .map(|_| rng.gen_range(0..args.rows as u32))
        .collect();
    let offsets: Vec<usize> = (0..=args.bags).map(|i| i * args.tokens).collect();
    let bags = TokenBags::new(ids, offsets, args.rows)?;
    let src = table.bytes().to_vec();
    let bag = stk_cpu::EmbeddingBag::new(table, None, None)?;

    let (bag_t, copy_t) = super::bench::time_against_host_copy(&src, runs, || {
        black_box(bag.bag_mean(&bags)?);
        Ok(())
    })?;
    let n_ids = args.bags * args.tokens;
    let bytes = n_ids * args.dim * dtype.size_in_bytes()
        + n_ids * 4
        + (args.bags + 1) * 8
        + args.bags * args.dim * 4;
    let gbps = bytes as f64 / bag_t.as_secs_f64() / 1e9;
    let copy_gbps = 2.0 * src.len() as f64 / copy_t.as_secs_f64() / 1e9;
    let threads = rayon::current_num_threads();
    if args.json {
        let line = serde_json::json!({
            "bench": "embedding-bag",
            "device": "cpu",
            "table": [args.rows, args.dim],
            "dtype": dtype.as_str(),
            "bags": args.bags,
            "tokens": args.tokens,
            "runs": runs,
            "threads": threads,
            "bag_ms": bag_t.as_secs_f64() * 1e3,
            "gbps": gbps,
            "copy_gbps": copy_gbps,
            "fraction_of_copy": gbps / copy_gbps,
        });
        println!("{line}");
    } else {
        println!(
            "stk bench embedding-bag: table [{}, {}] {dtype}, {} bags x {} ids, cpu ({threads} threads), median of {runs} runs",
            args.rows, args.dim, args.bags, args.tokens
        );
        println!(
            "  bag   {:9.3} ms  {gbps:7.1} GB/s (rows gathered + ids + offsets + f32 output)",
            bag_t.as_secs_f64() * 1e3
        );
        println!(
            "  copy  {:9.3} ms  {copy_gbps:7.1} GB/s (read + write of the table's bytes)",
            copy_t.as_secs_f64() * 1e3
        );
        println!("  fraction of copy bandwidth: {:.2}", gbps / copy_gbps);
    }
    Ok(())
}
