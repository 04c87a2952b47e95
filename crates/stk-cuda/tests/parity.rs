//! The kernels on a GPU against the CPU: every golden module case (pooling, normalize,
//! weighted layer pooling) and random problems over shapes, dtypes, masks and layouts, with
//! stk-cpu as the oracle (the checks live in `common/checks.rs`; the CPU simulator of the same
//! kernels runs them too, see `examples/kernel_sim.rs`). Without a CUDA driver or device each
//! test prints `skipped: no CUDA driver` (or device) and returns: the only skip these tests allow.

mod common;

use common::checks::{self, strategies::*};
use common::expect_err;
use common::strategies::{padded_problem, span_problem, varlen_problem};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::io::Write;
use std::sync::OnceLock;
use stk_core::{DType, Error, PaddedBatch, PoolingMode, PoolingSpec, Tensor, TokenBags};
use stk_cuda::{BagReduce, CudaDevice, DeviceEmbeddingTable, PoolExtras};

/// The device shared by this binary's tests, opened once; `None` (after saying why) when
/// there is no driver or device.
fn gpu(test: &str) -> Option<&'static CudaDevice> {
    static DEVICE: OnceLock<Result<CudaDevice, String>> = OnceLock::new();
    let opened = DEVICE.get_or_init(|| match CudaDevice::new(0) {
        Ok(d) => {
            eprintln!(
                "parity tests on {} (driver {})",
                d.name(),
                d.driver_version()
            );
            Ok(d)
        }
        Err(Error::NoCudaDriver) => Err("no CUDA driver".into()),
        Err(Error::NoCudaDevice(n)) => Err(format!("no CUDA device {n}")),
        Err(e) => panic!("opening CUDA device 0 failed: {e}"),
    });
    match opened {
        Ok(d) => Some(d),
        Err(why) => {
            // Straight to stderr: the harness captures println!, and a skip must show in CI logs.
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
            None
        }
    }
}

fn ok(check: checks::Check) {
    if let Err(e) = check {
        panic!("{e}");
    }
}

#[test]
fn golden_pooling_cases_on_gpu() {
    let Some(dev) = gpu("golden_pooling_cases_on_gpu") else {
        return;
    };
    let n = checks::golden_pooling(dev, 1).unwrap_or_else(|e| panic!("{e}"));
    println!("{n} golden pooling cases matched on the GPU (plain and with fused normalize)");
}

#[test]
fn golden_normalize_cases_on_gpu() {
    let Some(dev) = gpu("golden_normalize_cases_on_gpu") else {
        return;
    };
    ok(checks::golden_normalize(dev));
}

#[test]
fn golden_weighted_layer_pooling_cases_on_gpu() {
    let Some(dev) = gpu("golden_weighted_layer_pooling_cases_on_gpu") else {
        return;
    };
    ok(checks::golden_layer_pool(dev));
}

#[test]
fn non_finite_values_on_gpu() {
    let Some(dev) = gpu("non_finite_values_on_gpu") else {
        return;
    };
    ok(checks::non_finite(dev));
}

/// `cases` random problems of `strategy` through `check` on the GPU (after one skip line when
/// there is none); a failure panics with the shrunk problem.
fn random<S: Strategy>(
    test: &str,
    strategy: S,
    check: impl Fn(&CudaDevice, &S::Value) -> checks::Check,
) where
    S::Value: std::fmt::Debug,
{
    let Some(dev) = gpu(test) else { return };
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |p| {
        check(dev, &p).map_err(|e| TestCaseError::fail(format!("{e}\n{p:?}")))
    });
    if let Err(e) = result {
        panic!("{test}: {e}");
    }
}

#[test]
fn padded_pooling_matches_cpu() {
    random("padded_pooling_matches_cpu", padded_problem(), |d, p| {
        checks::padded(d, p)
    });
}

#[test]
fn varlen_pooling_matches_cpu() {
    random("varlen_pooling_matches_cpu", varlen_problem(), |d, p| {
        checks::varlen(d, p)
    });
}

#[test]
fn device_mask_pooling_matches_cpu() {
    random(
        "device_mask_pooling_matches_cpu",
        padded_problem(),
        |d, p| checks::device_padded(d, p),
    );
}

#[test]
fn device_varlen_pooling_matches_cpu() {
    random(
        "device_varlen_pooling_matches_cpu",
        varlen_problem(),
        |d, p| checks::device_varlen(d, p),
    );
}

#[test]
fn span_pooling_matches_cpu() {
    random("span_pooling_matches_cpu", span_problem(), |d, p| {
        checks::spans(d, p)
    });
}

#[test]
fn long_sums_on_gpu() {
    let Some(dev) = gpu("long_sums_on_gpu") else {
        return;
    };
    ok(checks::long_sums(dev));
}

#[test]
fn split_host_plans_on_gpu() {
    let Some(dev) = gpu("split_host_plans_on_gpu") else {
        return;
    };
    ok(checks::split_host_plans(dev));
}

#[test]
fn long_sequence_on_gpu() {
    let Some(dev) = gpu("long_sequence_on_gpu") else {
        return;
    };
    ok(checks::long_sequence(dev));
}

#[test]
fn normalize_matches_cpu() {
    random("normalize_matches_cpu", normalize_problem(), |d, p| {
        checks::normalize(d, p)
    });
}

#[test]
fn weighted_layer_pooling_matches_cpu() {
    random(
        "weighted_layer_pooling_matches_cpu",
        layer_pool_problem(),
        |d, p| checks::layer_pool(d, p),
    );
}

#[test]
fn embedding_bag_matches_cpu() {
    random("embedding_bag_matches_cpu", bag_problem(), |d, p| {
        checks::embedding_bag(d, p)
    });
}

#[test]
fn device_ops_refuse_mismatched_buffers() {
    let Some(dev) = gpu("device_ops_refuse_mismatched_buffers") else {
        return;
    };
    // The cases `plans.rs` checks without a GPU, through the device entry: the same answers.
    let device_plan = dev
        .upload_pool_plan(&checks::mismatched_buffers_plan())
        .unwrap();
    let zeros = |(dtype, dims): &(DType, Vec<usize>)| {
        dev.upload(&Tensor::zeros(dims.clone(), *dtype).unwrap())
            .unwrap()
    };
    for case in checks::mismatched_buffers() {
        let cls = case.cls.as_ref().map(zeros);
        let mut out = zeros(&case.out);
        let result = dev.pool_device(
            &zeros(&case.tokens),
            cls.as_ref(),
            &device_plan,
            false,
            &mut out,
        );
        match case.refused {
            None => result.unwrap_or_else(|e| panic!("{}: {e}", case.what)),
            Some((kind, words)) => {
                expect_err(result, kind, words);
            }
        }
    }
    let spec = PoolingSpec::new(vec![PoolingMode::Mean, PoolingMode::Cls]).unwrap();

    // Bags checked against a larger vocabulary than the table answers.
    let table =
        DeviceEmbeddingTable::new(dev, &Tensor::zeros([4, 8], DType::F16).unwrap(), None, None)
            .unwrap();
    // The table check every backend shares: i32 tables are refused, as on the CPU.
    assert!(matches!(
        DeviceEmbeddingTable::new(dev, &Tensor::zeros([4, 8], DType::I32).unwrap(), None, None),
        Err(Error::DType { .. })
    ));
    let bags = TokenBags::from_bags(&[vec![5u32]], 6).unwrap();
    assert!(matches!(
        dev.embedding_bag(&table, &bags, BagReduce::MeanByCount, None),
        Err(Error::InvalidArgument(_))
    ));
    let mut wrong = dev.zeros([1, 4], DType::F32).unwrap();
    let ok_bags = dev
        .upload_bags(&TokenBags::from_bags(&[vec![3u32]], 4).unwrap())
        .unwrap();
    expect_err(
        dev.embedding_bag_device(&table, &ok_bags, BagReduce::Sum, None, &mut wrong),
        |e| matches!(e, Error::Shape { .. }),
        &["embedding bag output", "[1, 8] f32", "[1, 4]"],
    );

    // Empty inputs give zero rows, not errors.
    let empty = TokenBags::from_bags::<Vec<u32>>(&[], 4).unwrap();
    assert_eq!(
        dev.embedding_bag(&table, &empty, BagReduce::MeanByCount, None)
            .unwrap()
            .dims(),
        &[0, 8]
    );
    let none = PaddedBatch::new(Tensor::zeros([0, 3, 8], DType::BF16).unwrap(), None).unwrap();
    assert_eq!(
        dev.pool(&none, &spec, &PoolExtras::default(), true)
            .unwrap()
            .dims(),
        &[0, 16]
    );
}
