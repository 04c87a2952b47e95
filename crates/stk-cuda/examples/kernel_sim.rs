//! The kernels of `kernels/*.cu`, compiled for the CPU (`kernels/sim/`), run through the same
//! checks as the GPU parity tests: every golden module case and random problems against
//! stk-cpu. Each launch is built from the same plans and launch descriptions as the real
//! launchers (`PoolPlan::launch`, `embedding_bag_launch`, ...), written to a file and run by
//! the simulator, which fails on any out-of-bounds access (AddressSanitizer) or on arguments
//! that do not match the kernel's C signature.
//!
//! Run by `cargo xtask kernel-sim`, which builds the simulator first; directly:
//! `cargo run -p stk-cuda --example kernel_sim -- SIMULATOR [CASES]`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::checks::{self, strategies::*, Kernels};
use common::strategies::{padded_problem, varlen_problem};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use stk_core::{DType, Error, PoolingSpec, Result, Tensor, TokenBags};
use stk_cuda::embedding_bag::embedding_bag_launch;
use stk_cuda::layer_pool::layer_pool_launch;
use stk_cuda::normalize::normalize_launch;
use stk_cuda::{BagReduce, CheckedTable, LayerPoolPlan, NormRule, PoolExtras, PoolInput, PoolPlan};

/// One argument of a simulated launch (the tags of `kernels/sim/sim_main.cpp`).
enum Arg {
    Buf(Vec<u8>),
    Null,
    I32(i32),
    I64(i64),
    U64(u64),
    F32(f32),
}

fn buf<T: bytemuck::Pod>(v: &[T]) -> Arg {
    Arg::Buf(bytemuck::cast_slice(v).to_vec())
}

struct Sim {
    exe: PathBuf,
    dir: tempfile::TempDir,
    launches: AtomicUsize,
}

impl Sim {
    /// Run `kernel` and return its buffer arguments after the run, in order.
    fn run(
        &self,
        kernel: &str,
        grid: u32,
        threads: u32,
        shared: u32,
        args: &[Arg],
    ) -> Result<Vec<Vec<u8>>> {
        let n = self.launches.fetch_add(1, Ordering::Relaxed);
        let launch = self.dir.path().join(format!("launch-{n}"));
        let out = self.dir.path().join(format!("out-{n}"));
        let mut f = b"STKSIM1\n".to_vec();
        f.extend((kernel.len() as u32).to_le_bytes());
        f.extend(kernel.as_bytes());
        for v in [grid, threads, shared, args.len() as u32] {
            f.extend(v.to_le_bytes());
        }
        for a in args {
            match a {
                Arg::Buf(b) => {
                    f.push(b'B');
                    f.extend((b.len() as u64).to_le_bytes());
                    f.extend(b);
                }
                Arg::Null => f.push(b'N'),
                Arg::I32(v) => {
                    f.push(b'I');
                    f.extend(v.to_le_bytes());
                }
                Arg::I64(v) => {
                    f.push(b'L');
                    f.extend(v.to_le_bytes());
                }
                Arg::U64(v) => {
                    f.push(b'U');
                    f.extend(v.to_le_bytes());
                }
                Arg::F32(v) => {
                    f.push(b'F');
                    f.extend(v.to_le_bytes());
                }
            }
        }
        std::fs::write(&launch, f).map_err(|e| Error::io(&launch, e))?;
        let status = Command::new(&self.exe)
            .arg(&launch)
            .arg(&out)
            .output()
            .map_err(|e| Error::io(&self.exe, e))?;
        if !status.status.success() {
            return Err(Error::Cuda(format!(
                "simulated {kernel} failed ({}):\n{}",
                status.status,
                String::from_utf8_lossy(&status.stderr)
            )));
        }
        let bytes = std::fs::read(&out).map_err(|e| Error::io(&out, e))?;
        let _ = std::fs::remove_file(&launch);
        let _ = std::fs::remove_file(&out);
        let mut at = 4;
        let count = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let mut bufs = Vec::with_capacity(count);
        for _ in 0..count {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            bufs.push(bytes[at + 8..at + 8 + len].to_vec());
            at += 8 + len;
        }
        Ok(bufs)
    }
}

/// Index of the output among the buffer arguments (nulls are not buffers).
fn out_index(args: &[Arg], position: usize) -> usize {
    args[..position]
        .iter()
        .filter(|a| matches!(a, Arg::Buf(_)))
        .count()
}

fn zeros(n: usize, dtype: DType) -> Arg {
    Arg::Buf(vec![0u8; n * dtype.size_in_bytes()])
}

impl Kernels for Sim {
    fn pool(
        &self,
        input: PoolInput<'_>,
        spec: &PoolingSpec,
        extras: &PoolExtras<'_>,
        normalize: bool,
    ) -> Result<Tensor> {
        let plan = PoolPlan::new(input, spec, extras)?;
        let Some(l) = plan.launch(normalize)? else {
            return Tensor::zeros(plan.out_dims(), plan.out_dtype());
        };
        let tokens = match input {
            PoolInput::Padded(b) => b.tokens().to_dtype(plan.dtype())?,
            PoolInput::Varlen(b) => b.tokens().to_dtype(plan.dtype())?,
        };
        let cls = match extras.cls_token_embeddings {
            Some(c) if plan.uses_cls_embeddings() => {
                Arg::Buf(c.to_dtype(plan.dtype())?.bytes().to_vec())
            }
            _ => Arg::Null,
        };
        let [b, w] = plan.out_dims();
        let args = [
            Arg::Buf(tokens.bytes().to_vec()),
            cls,
            buf(plan.row_segments()),
            buf(plan.segments()),
            buf(plan.row_rows()),
            buf(plan.row_divisors()),
            zeros(b * w, plan.out_dtype()),
            Arg::I32(l.out_f32),
            Arg::I32(l.dim),
            Arg::I32(l.lanes),
            Arg::U64(l.slots),
            Arg::I32(l.num_slots),
            Arg::I32(l.normalize),
            Arg::F32(l.norm.add),
            Arg::F32(l.norm.floor),
        ];
        let out = self.run(l.kernel, l.grid, l.threads, l.shared_bytes, &args)?;
        Tensor::from_bytes(plan.out_dims(), plan.out_dtype(), &out[out_index(&args, 6)])
    }

    fn normalize(&self, x: &Tensor, rule: NormRule) -> Result<Tensor> {
        x.expect_dtype("normalize input", &[DType::F32, DType::F16, DType::BF16])?;
        let Some(l) = normalize_launch(x.dims(), x.dtype(), rule)? else {
            return Tensor::zeros(x.shape().clone(), x.dtype());
        };
        let args = [
            Arg::Buf(x.bytes().to_vec()),
            zeros(x.numel(), x.dtype()),
            Arg::I64(l.rows),
            Arg::I32(l.dim),
            Arg::F32(l.norm.add),
            Arg::F32(l.norm.floor),
        ];
        let out = self.run(l.kernel, l.grid, l.threads, 0, &args)?;
        Tensor::from_bytes(x.shape().clone(), x.dtype(), &out[1])
    }

    fn weighted_layer_pool(
        &self,
        all_layers: &Tensor,
        layer_start: usize,
        layer_weights: &Tensor,
    ) -> Result<Tensor> {
        let plan = LayerPoolPlan::new(all_layers, layer_start, layer_weights)?;
        let n = plan.layer_len();
        let Some(l) = layer_pool_launch(plan.weights.len(), n, plan.out_dtype, plan.weight_sum)?
        else {
            return Tensor::zeros(plan.layer_shape.clone(), plan.out_dtype);
        };
        let all = all_layers.to_dtype(plan.out_dtype)?;
        let size = plan.out_dtype.size_in_bytes();
        let args = [
            Arg::Buf(all.bytes()[layer_start * n * size..].to_vec()),
            buf(&plan.weights),
            Arg::I32(l.num_layers),
            Arg::I64(l.n),
            Arg::F32(l.weight_sum),
            zeros(n, plan.out_dtype),
        ];
        let out = self.run(l.kernel, l.grid, l.threads, 0, &args)?;
        Tensor::from_bytes(plan.layer_shape.clone(), plan.out_dtype, &out[2])
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
        let checked = CheckedTable::new(table, mapping, weights)?;
        if bags.vocab() > checked.vocab {
            return Err(Error::invalid("bags beyond the table's vocabulary"));
        }
        let dims = [bags.num_bags(), checked.dim];
        let Some(l) = embedding_bag_launch(
            checked.dim,
            table.dtype(),
            bags.num_bags(),
            reduce,
            normalize,
        )?
        else {
            return Tensor::zeros(dims, DType::F32);
        };
        let offsets: Vec<i64> = bags.offsets().iter().map(|&o| o as i64).collect();
        let args = [
            Arg::Buf(table.bytes().to_vec()),
            Arg::I32(l.dim),
            checked.mapping.as_deref().map_or(Arg::Null, buf),
            checked.weights.as_deref().map_or(Arg::Null, buf),
            if bags.ids().is_empty() {
                Arg::Null
            } else {
                buf(bags.ids())
            },
            buf(&offsets),
            Arg::I64(l.num_bags),
            Arg::I32(l.divide_by),
            Arg::I32(l.normalize),
            Arg::F32(l.norm.add),
            Arg::F32(l.norm.floor),
            Arg::I32(l.lanes_per_row),
            zeros(dims[0] * dims[1], DType::F32),
        ];
        let out = self.run(l.kernel, l.grid, l.threads, 0, &args)?;
        Tensor::from_bytes(dims, DType::F32, &out[out_index(&args, 12)])
    }
}

/// Run `check` on `cases` random problems; on a failure, report the shrunk problem.
fn random<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    check: impl Fn(&S::Value) -> checks::Check,
) -> bool
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let start = std::time::Instant::now();
    match runner.run(&strategy, |p| {
        check(&p).map_err(|e| TestCaseError::fail(format!("{e}\n{p:?}")))
    }) {
        Ok(()) => {
            println!(
                "ok   {name}: {cases} random problems ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            true
        }
        Err(e) => {
            println!("FAIL {name}: {e}");
            false
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(exe) = args.get(1) else {
        eprintln!("usage: kernel_sim SIMULATOR [CASES]");
        std::process::exit(2);
    };
    let cases: u32 = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(24);
    let sim = Sim {
        exe: Path::new(exe).to_path_buf(),
        dir: tempfile::tempdir().expect("a temporary folder"),
        launches: AtomicUsize::new(0),
    };
    let mut ok = true;
    let mut report = |name: &str, r: checks::Check| match r {
        Ok(()) => println!("ok   {name}"),
        Err(e) => {
            println!("FAIL {name}: {e}");
            ok = false;
        }
    };
    report("NaN and infinities", checks::non_finite(&sim));
    report("golden normalize cases", checks::golden_normalize(&sim));
    report(
        "golden weighted layer pooling cases",
        checks::golden_layer_pool(&sim),
    );
    report(
        "golden pooling cases (fused normalize on every 8th)",
        checks::golden_pooling(&sim, 8).map(|_| ()),
    );
    ok &= random("padded pooling", cases, padded_problem(), |p| {
        checks::padded(&sim, p)
    });
    ok &= random("varlen pooling", cases, varlen_problem(), |p| {
        checks::varlen(&sim, p)
    });
    ok &= random("normalize", cases, normalize_problem(), |p| {
        checks::normalize(&sim, p)
    });
    ok &= random("weighted layer pooling", cases, layer_pool_problem(), |p| {
        checks::layer_pool(&sim, p)
    });
    ok &= random("embedding bag", cases, bag_problem(), |p| {
        checks::embedding_bag(&sim, p)
    });
    println!(
        "{} simulated launches",
        sim.launches.load(Ordering::Relaxed)
    );
    if !ok {
        std::process::exit(1);
    }
}
