//! `stk bench ...`: throughput measurements, reported as ratios against a baseline measured in
//! the same process (absolute figures depend on the machine; the ratios are what to compare).

use clap::{Args, Subcommand};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};
use stk::{DType, Device, Error, PoolingMode, PoolingSpec, Result, Tensor};
use stk_core::PaddedBatch;
use stk_cpu::pooling::{self, PoolExtras};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Pooling throughput on random padded token embeddings, against a plain copy of the same
    /// tensor
    Pool(PoolBenchArgs),
    /// Encoding throughput (sentences/s) of a model on the lines of a file
    Encode(super::bench_encode::Args),
    /// Embedding-bag (static model) throughput on a random table, against the copy bandwidth
    EmbeddingBag(super::bench_gpu::EmbeddingBagArgs),
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Pool(args) => pool(args),
        BenchCommand::Encode(args) => super::bench_encode::run(args),
        BenchCommand::EmbeddingBag(args) => super::bench_gpu::embedding_bag(args),
    }
}

#[derive(Args)]
pub struct PoolBenchArgs {
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Token embeddings shape BxTxD; each sequence gets a random length in 1..=T (right
    /// padding) unless --full-length
    #[arg(long, default_value = "64x256x768")]
    shape: String,
    /// f32, f16 or bf16
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Pooling modes, comma-separated
    #[arg(long, default_value = "mean")]
    mode: String,
    /// Timed runs of each of pool and copy (after warm-up); the median is reported
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Every sequence T tokens long (no padding) instead of random lengths
    #[arg(long)]
    full_length: bool,
    /// Seed of the random data and lengths
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON line instead of text
    #[arg(long)]
    json: bool,
}

/// Refuse benchmark tensors above this size rather than die allocating them.
const MAX_BENCH_BYTES: usize = 16 << 30;

fn parse_shape(s: &str) -> Result<[usize; 3]> {
    let bad = || {
        Error::invalid(format!(
            "--shape must be BxTxD with three whole numbers ≥ 1, got `{s}`"
        ))
    };
    let dims: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>().ok().filter(|&n| n >= 1))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    dims.try_into().map_err(|_| bad())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median times of `work` and of a plain parallel copy of `src` (into a buffer touched
/// beforehand, split across the same rayon threads), after 3 warm-up runs of each. The runs
/// are interleaved so that both see the same machine state; the copy is the bandwidth the
/// benchmarks report their fraction of.
pub(super) fn time_against_host_copy(
    src: &[u8],
    runs: usize,
    mut work: impl FnMut() -> Result<()>,
) -> Result<(Duration, Duration)> {
    let mut dst = vec![0u8; src.len()];
    const COPY_CHUNK: usize = 1 << 20;
    let mut copy = || {
        dst.par_chunks_mut(COPY_CHUNK)
            .zip(src.par_chunks(COPY_CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
        black_box(&dst);
    };
    for _ in 0..3 {
        work()?;
        copy();
    }
    let (mut work_times, mut copy_times) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let start = Instant::now();
        work()?;
        work_times.push(start.elapsed());
        let start = Instant::now();
        copy();
        copy_times.push(start.elapsed());
    }
    Ok((median(work_times), median(copy_times)))
}

fn pool(args: PoolBenchArgs) -> Result<()> {
    let device: Device = args.device.parse()?;
    let [b, t, d] = parse_shape(&args.shape)?;
    let dtype = DType::parse(&args.dtype)?;
    if !dtype.is_float() {
        return Err(Error::invalid(format!(
            "--dtype must be f32, f16 or bf16, got {dtype}"
        )));
    }
    let spec = PoolingSpec::new(PoolingMode::parse_list(&args.mode)?)?;
    let runs = args.runs.max(1);
    let bytes = b
        .checked_mul(t)
        .and_then(|n| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
        .filter(|&n| n <= MAX_BENCH_BYTES)
        .ok_or_else(|| {
            Error::invalid(format!(
                "--shape {} is larger than this benchmark allows (16 GiB)",
                args.shape
            ))
        })?;
    if let Device::Cuda(n) = device {
        let lengths = if args.full_length {
            stk_cuda::bench::BenchLengths::Full
        } else {
            stk_cuda::bench::BenchLengths::Random
        };
        return super::bench_gpu::pool(
            n,
            [b, t, d],
            dtype,
            &spec,
            lengths,
            runs,
            args.seed,
            args.json,
        );
    }

    // Random values and lengths (each sequence 1..=T real tokens, then padding).
    let mut rng = StdRng::seed_from_u64(args.seed);
    let values: Vec<f32> = (0..b * t * d)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    let tokens = Tensor::from_vec([b, t, d], values)?.to_dtype(dtype)?;
    let lengths: Vec<usize> = (0..b)
        .map(|_| {
            if args.full_length {
                t
            } else {
                rng.gen_range(1..=t)
            }
        })
        .collect();
    let mask: Vec<u8> = lengths
        .iter()
        .flat_map(|&len| (0..t).map(move |j| (j < len) as u8))
        .collect();
    let real_fraction = lengths.iter().sum::<usize>() as f64 / (b * t) as f64;
    let batch = PaddedBatch::with_mask_values(tokens.clone(), Some(mask))?;
    let extras = PoolExtras::default();

    let pool_once = || -> Result<()> {
        black_box(pooling::pool_padded(&batch, &spec, &extras)?);
        Ok(())
    };
    let (pool_t, copy_t) = time_against_host_copy(tokens.bytes(), runs, pool_once)?;
    let gbps = bytes as f64 / pool_t.as_secs_f64() / 1e9;
    let copy_gbps = 2.0 * bytes as f64 / copy_t.as_secs_f64() / 1e9;
    let fraction = gbps / copy_gbps;
    let modes: Vec<&str> = spec.modes.iter().map(|m| m.as_str()).collect();
    let threads = rayon::current_num_threads();

    if args.json {
        let line = serde_json::json!({
            "bench": "pool",
            "device": device.to_string(),
            "shape": [b, t, d],
            "dtype": dtype.as_str(),
            "modes": modes,
            "runs": runs,
            "threads": threads,
            "input_bytes": bytes,
            "real_token_fraction": real_fraction,
            "pool_ms": pool_t.as_secs_f64() * 1e3,
            "copy_ms": copy_t.as_secs_f64() * 1e3,
            "gbps": gbps,
            "copy_gbps": copy_gbps,
            "fraction_of_copy": fraction,
        });
        println!("{line}");
    } else {
        println!(
            "stk bench pool: [{b}, {t}, {d}] {dtype}, modes {}, {device} ({threads} threads), median of {runs} runs",
            modes.join(",")
        );
        println!(
            "  pool  {:9.3} ms  {gbps:7.1} GB/s of input (all B×T×D bytes; {:.1}% of positions are real tokens, padding is not read)",
            pool_t.as_secs_f64() * 1e3,
            real_fraction * 100.0
        );
        println!(
            "  copy  {:9.3} ms  {copy_gbps:7.1} GB/s (read + write of the same bytes)",
            copy_t.as_secs_f64() * 1e3
        );
        println!("  fraction of copy bandwidth: {fraction:.2}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("64x256x768").unwrap(), [64, 256, 768]);
        for bad in ["64x256", "0x1x1", "axbxc", "1x2x3x4", ""] {
            let e = parse_shape(bad).unwrap_err();
            let message = e.to_string();
            assert!(
                matches!(e, Error::InvalidArgument(_))
                    && message.contains("--shape must be BxTxD")
                    && message.contains(&format!("got `{bad}`")),
                "{bad}: {e:?}"
            );
        }
    }
}
