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

use common::checks::{self, rows_per_output, strategies::*, HostRows, Kernels, Split};
use common::strategies::{padded_problem, span_problem, varlen_problem};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use stk_core::validate::{self, EmbeddingTable, LayerPooling, PoolExtras};
use stk_core::{DType, Error, PoolingSpec, Result, Tensor, TokenBags};
use stk_cuda::embedding_bag::{
    check_output, check_vocab, embedding_bag_launch, BagBuffers, BagProblem,
};
use stk_cuda::launch::LaunchShape;
use stk_cuda::layer_pool::layer_pool_launch;
use stk_cuda::normalize::normalize_launch;
use stk_cuda::pool::{
    pool_split_launches, pool_workspace_bytes, PoolBuffers, PoolLaunch, PoolProblem, RowSource,
};
use stk_cuda::{BagReduce, NormRule, PoolInput, PoolPlan};

/// One argument of a simulated launch: a buffer is its bytes.
type Arg = stk_cuda::launch::Arg<Vec<u8>>;

fn buf<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

struct Sim {
    exe: PathBuf,
    dir: tempfile::TempDir,
    launches: AtomicUsize,
}

impl Sim {
    /// Run `kernel` and return its buffer arguments after the run, in order.
    fn run(&self, shape: &LaunchShape, args: &[Arg]) -> Result<Vec<Vec<u8>>> {
        // The check the GPU launcher makes, against the PTX's signature of the kernel.
        shape.check(args)?;
        let (kernel, grid, threads, shared) = (
            shape.kernel.name,
            shape.grid,
            shape.threads,
            shape.shared_bytes,
        );
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

impl Sim {
    /// Run a pooling's launches in order, as on one stream: each launch sees the output and
    /// the workspace the previous one left (the workspace starts as garbage, 0xA5 bytes, as
    /// a caller's uninitialized buffer would). Returns the output's bytes.
    fn run_pool(&self, launches: &[PoolLaunch], mut b: PoolBuffers<Vec<u8>>) -> Result<Vec<u8>> {
        for l in launches {
            let args = l.args(b.clone());
            let mut bufs = self.run(&l.shape, &args)?;
            // The buffers come back in argument order: ..., out, workspace (when given).
            if b.workspace.is_some() {
                b.workspace = bufs.pop();
            }
            b.out = bufs.pop().expect("the output buffer");
        }
        Ok(b.out)
    }
}

/// Index of the output among the buffer arguments (nulls are not buffers).
fn out_index(args: &[Arg]) -> usize {
    args.iter().filter(|a| matches!(a, Arg::Buf(_))).count() - 1
}

fn zeros(n: usize, dtype: DType) -> Vec<u8> {
    vec![0u8; n * dtype.size_in_bytes()]
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
        let Some(launches) = plan.launches(normalize)? else {
            return Tensor::zeros(plan.out_dims(), plan.out_dtype());
        };
        let tokens = match input {
            PoolInput::Padded(b) => b.tokens().to_dtype(plan.dtype())?,
            PoolInput::Varlen(b) => b.tokens().to_dtype(plan.dtype())?,
            PoolInput::Spans(b) => b.tokens().to_dtype(plan.dtype())?,
        };
        let cls = match extras.cls_token_embeddings {
            Some(c) if plan.uses_cls_embeddings() => {
                Some(c.to_dtype(plan.dtype())?.bytes().to_vec())
            }
            _ => None,
        };
        let [b, w] = plan.out_dims();
        // The check `CudaDevice::pool_device` makes before its launches.
        plan.check_buffers(
            (tokens.dtype(), tokens.dims()),
            extras
                .cls_token_embeddings
                .filter(|_| plan.uses_cls_embeddings())
                .map(|c| (plan.dtype(), c.dims())),
            (plan.out_dtype(), &[b, w]),
        )?;
        // A split's workspace, as `CudaDevice::pool_device` allocates it for the call.
        let workspace = match plan.workspace_bytes()? {
            0 => None,
            bytes => Some(vec![0xA5u8; bytes]),
        };
        let out = self.run_pool(
            &launches,
            PoolBuffers {
                tokens: tokens.bytes().to_vec(),
                cls,
                ranges: buf(plan.row_segments()),
                segments: Some(buf(plan.segments())),
                row_rows: Some(buf(plan.row_rows())),
                row_divisors: Some(buf(plan.row_divisors())),
                token_weights_sum: None,
                out: zeros(b * w, plan.out_dtype()),
                workspace,
            },
        )?;
        Tensor::from_bytes(plan.out_dims(), plan.out_dtype(), &out)
    }

    fn normalize(&self, x: &Tensor, rule: NormRule) -> Result<Tensor> {
        x.expect_dtype("normalize input", &[DType::F32, DType::F16, DType::BF16])?;
        let d = x.dims().last().copied().unwrap_or(0);
        let rows = x.numel().checked_div(d).unwrap_or(0);
        let Some(l) = normalize_launch(rows, d, x.dtype(), rule, true)? else {
            return Tensor::zeros(x.shape().clone(), x.dtype());
        };
        let args = l.args(x.bytes().to_vec(), zeros(x.numel(), x.dtype()));
        let out = self.run(&l.shape, &args)?;
        Tensor::from_bytes(x.shape().clone(), x.dtype(), &out[1])
    }

    fn weighted_layer_pool(
        &self,
        all_layers: &Tensor,
        layer_start: usize,
        layer_weights: &Tensor,
    ) -> Result<Tensor> {
        let plan = LayerPooling::check(all_layers, layer_start, layer_weights)?;
        let n = plan.layer_len();
        let Some(l) =
            layer_pool_launch(plan.weights.len(), n, plan.out_dtype, plan.weight_sum, true)?
        else {
            return Tensor::zeros(plan.layer_shape.clone(), plan.out_dtype);
        };
        let all = all_layers.to_dtype(plan.out_dtype)?;
        let size = plan.out_dtype.size_in_bytes();
        let args = l.args(
            all.bytes()[layer_start * n * size..].to_vec(),
            buf(&plan.weights),
            zeros(n, plan.out_dtype),
        );
        let out = self.run(&l.shape, &args)?;
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
        let checked = EmbeddingTable::check(table, mapping, weights)?;
        // The checks `CudaDevice::embedding_bag_device` makes before its launch.
        check_vocab(checked.vocab, bags.vocab())?;
        let dims = [bags.num_bags(), checked.dim];
        check_output(dims[0], dims[1], (DType::F32, &dims))?;
        let problem = BagProblem {
            dim: checked.dim,
            dtype: table.dtype(),
            vocab: checked.vocab,
            num_ids: bags.ids().len(),
            num_bags: bags.num_bags(),
            reduce,
            normalize,
            aligned: true,
        };
        let Some(l) = embedding_bag_launch(&problem)? else {
            return Tensor::zeros(dims, DType::F32);
        };
        let offsets: Vec<i64> = bags.offsets().iter().map(|&o| o as i64).collect();
        let args = l.args(BagBuffers {
            table: table.bytes().to_vec(),
            mapping: checked.mapping.as_deref().map(buf),
            weights: checked.weights.as_deref().map(buf),
            ids: (!bags.ids().is_empty()).then(|| buf(bags.ids())),
            offsets: buf(&offsets),
            out: zeros(dims[0] * dims[1], DType::F32),
        });
        let out = self.run(&l.shape, &args)?;
        Tensor::from_bytes(dims, DType::F32, &out[out_index(&args)])
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
        let dim = *tokens.dims().last().unwrap();
        let token_rows = tokens.numel() / dim.max(1);
        let batch = rows.batch();
        let (source, ranges) = match rows {
            HostRows::CuSeqLens(cu) => (RowSource::CuSeqLens { token_rows }, buf(cu)),
            HostRows::Spans(sp) => (RowSource::Spans { token_rows }, buf(sp)),
            HostRows::Mask { mask, seq_len } => (
                RowSource::Mask {
                    seq_len: *seq_len,
                    mask_bytes: 8,
                },
                buf(mask),
            ),
        };
        let out_dtype = validate::pool_output_dtype(tokens.dtype(), spec, tws.is_some(), None);
        let out_dims = [batch, spec.modes.len() * dim];
        let chunks = split.chunks(batch, rows_per_output(rows, token_rows));
        let Some(launches) = pool_split_launches(
            &PoolProblem {
                dtype: tokens.dtype(),
                out_dtype,
                batch,
                dim,
                modes: &spec.modes,
                source,
                prompt: spec.excluded_prompt(),
                normalize,
                aligned: true,
            },
            chunks,
        )?
        else {
            return Tensor::zeros(out_dims, out_dtype);
        };
        let workspace =
            (chunks > 1).then(|| vec![0xA5u8; pool_workspace_bytes(batch, chunks, dim).unwrap()]);
        let out = self.run_pool(
            &launches,
            PoolBuffers {
                tokens: tokens.bytes().to_vec(),
                cls: None,
                ranges,
                segments: None,
                row_rows: None,
                row_divisors: None,
                token_weights_sum: tws.map(buf),
                out: zeros(out_dims[0] * out_dims[1], out_dtype),
                workspace,
            },
        )?;
        Tensor::from_bytes(out_dims, out_dtype, &out)
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
    report(
        "B = 1, T = 32768, every mode, every entry point (host split), fused normalize",
        checks::long_sequence(&sim),
    );
    report(
        "T = 20,000: blocked sums within 1e-6 of f64 (host plans, device rows, bag)",
        checks::long_sums(&sim),
    );
    report(
        "host plans split: holes, left padding, cls, token_weights_sum, prompt, varlen, spans",
        checks::split_host_plans(&sim),
    );
    ok &= random("padded pooling", cases, padded_problem(), |p| {
        checks::padded(&sim, p)
    });
    ok &= random("varlen pooling", cases, varlen_problem(), |p| {
        checks::varlen(&sim, p)
    });
    ok &= random(
        "padded pooling, device mask path",
        cases,
        padded_problem(),
        |p| checks::device_padded(&sim, p),
    );
    ok &= random(
        "varlen pooling, device cu_seq_lens path",
        cases,
        varlen_problem(),
        |p| checks::device_varlen(&sim, p),
    );
    ok &= random(
        "span pooling (host plan, device path, CPU)",
        cases,
        span_problem(),
        |p| checks::spans(&sim, p),
    );
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
