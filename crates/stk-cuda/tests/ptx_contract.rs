//! The embedded PTX and the launchers agree, checked without a GPU. Kernel names, parameter
//! kinds and launch bounds come from the PTX itself (`kernels/ptx/kernels.rs`, generated and
//! kept fresh by `cargo xtask ptx [--check]`); what is left to check here is that every launch
//! the launchers build fits the kernel it selects, and that the PTX loads on the drivers the
//! README promises (CUDA 12.2, R535, and newer).

mod common;

use common::{expect_err, repo_root as repo};
use stk_core::{DType, Error, PoolingMode};
use stk_cuda::embedding_bag::{embedding_bag_launch, BagBuffers, BagProblem};
use stk_cuda::layer_pool::layer_pool_launch;
use stk_cuda::normalize::normalize_launch;
use stk_cuda::pool::{pool_split_launches, PoolBuffers, PoolProblem, RowSource};
use stk_cuda::{ptx, BagReduce, NormRule};

#[test]
fn each_cu_file_has_its_ptx_family() {
    let mut cu: Vec<String> = std::fs::read_dir(repo().join("kernels"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "cu").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    cu.sort();
    let families: Vec<String> = ptx::FAMILIES.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(cu, families);
    for f in ptx::FAMILIES {
        let on_disk =
            std::fs::read_to_string(repo().join(format!("kernels/ptx/{}.ptx", f.name))).unwrap();
        assert_eq!(
            on_disk, f.ptx,
            "{}.ptx embedded differs from the file (rebuild stk-cuda)",
            f.name
        );
        assert!(
            ptx::KERNELS.iter().any(|k| k.family == f.name),
            "{}.ptx has no kernel in the table",
            f.name
        );
    }
}

#[test]
fn ptx_loads_on_cuda_12_2_drivers() {
    for f in ptx::FAMILIES {
        // CUDA 12.2 (driver R535) JIT-compiles PTX ISA up to 8.2; compute_80 PTX JITs on A100
        // and H100/H200 alike.
        assert!(
            f.ptx.contains("\n.version 8.2\n"),
            "{}.ptx is not PTX ISA 8.2",
            f.name
        );
        assert!(
            f.ptx.contains("\n.target sm_80\n"),
            "{}.ptx does not target sm_80",
            f.name
        );
    }
    assert_eq!(ptx::PTX_ISA, (8, 2));
    assert!(ptx::check_driver(12020).is_ok());
    expect_err(
        ptx::check_driver(12010),
        |e| matches!(e, Error::DriverTooOld { .. }),
        &[
            "supports CUDA 12.1",
            "CUDA 12.2 or newer",
            "update the NVIDIA driver",
        ],
    );
}

#[test]
fn every_kernel_has_launch_bounds_its_launcher_respects() {
    for k in ptx::KERNELS {
        let launched = match k.family {
            "pool" if k.name.starts_with("pool_sum") => stk_cuda::pool::POOL_SUM_THREADS,
            "pool" => stk_cuda::pool::POOL_FULL_THREADS,
            "embedding_bag" => stk_cuda::embedding_bag::BAG_THREADS,
            "normalize" => stk_cuda::normalize::NORMALIZE_THREADS,
            _ => stk_cuda::layer_pool::LAYER_POOL_THREADS,
        };
        assert_eq!(k.max_threads, Some(launched), "{}", k.name);
    }
}

/// Every launch the launchers can build, for every dtype and pack choice, passes the check
/// against its kernel's PTX signature (argument count, kinds, block size).
#[test]
fn every_launch_fits_its_kernel() {
    let mut checked = std::collections::HashSet::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for aligned in [true, false] {
            for modes in [
                &[PoolingMode::Mean][..],
                &[PoolingMode::Max, PoolingMode::Cls],
            ] {
                for source in [
                    RowSource::Plan,
                    RowSource::CuSeqLens { token_rows: 9 },
                    RowSource::Spans { token_rows: 9 },
                    RowSource::Mask {
                        seq_len: 3,
                        mask_bytes: 8,
                    },
                ] {
                    let problem = PoolProblem {
                        dtype,
                        out_dtype: dtype,
                        batch: 3,
                        dim: 64,
                        modes,
                        source,
                        prompt: 1,
                        normalize: true,
                        aligned,
                    };
                    // One launch, and the three of a split (with its workspace).
                    for chunks in [1, 4] {
                        let launches = pool_split_launches(&problem, chunks).unwrap().unwrap();
                        assert_eq!(launches.len(), if chunks == 1 { 1 } else { 3 });
                        for l in launches {
                            let args = l.args(PoolBuffers {
                                tokens: 0u64,
                                cls: None,
                                ranges: 0,
                                segments: Some(0),
                                row_rows: Some(0),
                                row_divisors: Some(0),
                                token_weights_sum: None,
                                out: 0,
                                workspace: (chunks > 1).then_some(0),
                            });
                            l.shape.check(&args).unwrap();
                            checked.insert(l.shape.kernel.name);
                        }
                    }
                }
            }
            let l = normalize_launch(4, 64, dtype, NormRule::MODEL2VEC, aligned)
                .unwrap()
                .unwrap();
            l.shape.check(&l.args(0u64, 0)).unwrap();
            checked.insert(l.shape.kernel.name);
            let l = layer_pool_launch(3, 64, dtype, 1.0, aligned)
                .unwrap()
                .unwrap();
            l.shape.check(&l.args(0u64, 0, 0)).unwrap();
            checked.insert(l.shape.kernel.name);
        }
    }
    for (dtype, dim) in stk_core::validate::TABLE_DTYPES
        .into_iter()
        .flat_map(|d| [(d, 64), (d, 3)])
    {
        let l = embedding_bag_launch(&BagProblem {
            dim,
            dtype,
            vocab: 10,
            num_ids: 5,
            num_bags: 2,
            reduce: BagReduce::MeanByCount,
            normalize: None,
            aligned: true,
        })
        .unwrap()
        .unwrap();
        let args = l.args(BagBuffers {
            table: 0u64,
            mapping: None,
            weights: None,
            ids: Some(0),
            offsets: 0,
            out: 0,
        });
        l.shape.check(&args).unwrap();
        checked.insert(l.shape.kernel.name);
    }
    // Every kernel of the PTX is reachable from some launcher.
    let unreached: Vec<&str> = ptx::KERNELS
        .iter()
        .map(|k| k.name)
        .filter(|n| !checked.contains(n))
        .collect();
    assert!(unreached.is_empty(), "never launched: {unreached:?}");
}

#[test]
fn kernel_selection_by_dtype() {
    assert_eq!(
        ptx::select("pool_sum", DType::BF16, true).unwrap().name,
        "pool_sum_bf16_v8"
    );
    assert_eq!(
        ptx::select("embedding_bag", DType::BF16, false)
            .unwrap()
            .name,
        "embedding_bag_bf16_v1"
    );
    // No int8 pooling kernel; no i32 table kernel (stk_core::validate::EmbeddingTable refuses
    // such tables on every backend).
    for (op, dtype) in [("pool_sum", DType::I8), ("embedding_bag", DType::I32)] {
        let got = format!("got {}", dtype.as_str());
        expect_err(
            ptx::select(op, dtype, true),
            |e| matches!(e, Error::DType { .. }),
            &[op, "on cuda", &got],
        );
    }
    assert_eq!(ptx::pack_width(DType::F32), 4);
    assert_eq!(ptx::pack_width(DType::I8), 16);
}
