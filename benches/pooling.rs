//! Pooling throughput (criterion). Throughput is counted as the bytes of the whole padded
//! `[B, T, D]` input; each sequence has a random length in 1..=T, and padding is not read.
//! The `copy` entry is the baseline: a plain copy of the same bytes.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use stk_core::{DType, PaddedBatch, PoolingMode, PoolingSpec, Tensor};
use stk_cpu::pooling::{self, PoolExtras};

fn padded_batch(b: usize, t: usize, d: usize, dtype: DType) -> PaddedBatch {
    let mut rng = StdRng::seed_from_u64(7);
    let values: Vec<f32> = (0..b * t * d)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    let tokens = Tensor::from_vec([b, t, d], values)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let mask = (0..b)
        .flat_map(|_| {
            let len = rng.gen_range(1..=t);
            (0..t).map(move |j| (j < len) as u8)
        })
        .collect();
    PaddedBatch::with_mask_values(tokens, Some(mask)).unwrap()
}

fn bench_pooling(c: &mut Criterion) {
    let shapes = [(8, 32, 384), (64, 256, 768)];
    for (b, t, d) in shapes {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let batch = padded_batch(b, t, d, dtype);
            let bytes = batch.tokens().bytes().len();
            let mut group = c.benchmark_group(format!("pool/{b}x{t}x{d}/{dtype}"));
            group.throughput(Throughput::Bytes(bytes as u64));
            group.sample_size(20);
            for modes in ["mean", "max", "cls,max,mean", "weightedmean,lasttoken"] {
                let spec = PoolingSpec::new(PoolingMode::parse_list(modes).unwrap()).unwrap();
                group.bench_with_input(BenchmarkId::from_parameter(modes), &spec, |bench, spec| {
                    bench.iter(|| {
                        pooling::pool_padded(black_box(&batch), spec, &PoolExtras::default())
                            .unwrap()
                    })
                });
            }
            let src = batch.tokens().bytes();
            let mut dst = vec![0u8; src.len()];
            group.bench_function("copy", |bench| {
                bench.iter(|| {
                    dst.copy_from_slice(black_box(src));
                    black_box(&dst);
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_pooling);
criterion_main!(benches);
