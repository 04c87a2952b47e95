//! The embedded PTX and the launchers agree, checked without a GPU: every kernel a launcher
//! can select is an entry of its family's PTX (and only there), no entry is orphaned, each
//! kernel name is spelled once in the Rust sources and once in its `.cu` file, parameter
//! lists and launch bounds are what the launchers pass, and the PTX targets what the
//! measured machine's driver (CUDA 13.0) accepts.

mod common;

use common::repo_root as repo;
use std::collections::HashSet;
use stk_core::DType;
use stk_cuda::ptx::{self, ParamKind, ParamKind::*};

#[test]
fn every_selectable_kernel_is_one_ptx_entry() {
    let all = ptx::all_kernels();
    let names: HashSet<_> = all.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        names.len(),
        all.len(),
        "a kernel name is selected for two cases"
    );
    for (family, kernel) in &all {
        let n = ptx::ptx_entries(family.ptx)
            .iter()
            .filter(|e| *e == kernel)
            .count();
        assert_eq!(
            n, 1,
            "{kernel} appears {n} times as an entry of {}.ptx",
            family.name
        );
        for other in ptx::FAMILIES.iter().filter(|f| f.name != family.name) {
            assert!(
                !ptx::ptx_entries(other.ptx).contains(kernel),
                "{kernel} also in {}.ptx",
                other.name
            );
        }
    }
    for family in ptx::FAMILIES {
        for entry in ptx::ptx_entries(family.ptx) {
            assert!(
                names.contains(entry),
                "{}.ptx entry {entry} is never launched",
                family.name
            );
        }
    }
    assert_eq!(all.len(), 12 + 8 + 6 + 6);
}

#[test]
fn kernel_names_are_spelled_once() {
    let src = repo().join("crates/stk-cuda/src");
    let rust: String = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for (family, kernel) in ptx::all_kernels() {
        let quoted = format!("\"{kernel}\"");
        assert_eq!(
            rust.matches(&quoted).count(),
            1,
            "{quoted} in crates/stk-cuda/src"
        );
        let cu =
            std::fs::read_to_string(repo().join(format!("kernels/{}.cu", family.name))).unwrap();
        let defined = format!("({kernel},");
        assert_eq!(
            cu.matches(&defined).count(),
            1,
            "{kernel} in kernels/{}.cu",
            family.name
        );
    }
}

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
    let mut families: Vec<String> = ptx::FAMILIES.iter().map(|f| f.name.to_string()).collect();
    families.sort();
    assert_eq!(cu, families);
    for f in ptx::FAMILIES {
        let on_disk =
            std::fs::read_to_string(repo().join(format!("kernels/ptx/{}.ptx", f.name))).unwrap();
        assert_eq!(
            on_disk, f.ptx,
            "{}.ptx embedded differs from the file (rebuild stk-cuda)",
            f.name
        );
    }
}

#[test]
fn ptx_targets_the_measured_driver() {
    for f in ptx::FAMILIES {
        // CUDA 13.0 (driver 580) reads PTX ISA up to 9.0; compute_80 PTX JITs on A100 and H100/H200.
        assert!(
            f.ptx.contains("\n.version 9.0\n"),
            "{}.ptx is not PTX ISA 9.0",
            f.name
        );
        assert!(
            f.ptx.contains("\n.target sm_80\n"),
            "{}.ptx does not target sm_80",
            f.name
        );
        assert!(f.ptx.contains("\n.address_size 64\n"));
    }
}

/// The C signatures of `kernels/*.cu`, as the launchers push them.
fn expected_params(family: &str) -> Vec<ParamKind> {
    match family {
        // x, cls, row_segments, segments, row_rows, row_divisors, out, out_f32, D, lanes,
        // slots, num_slots, normalize, norm_add, norm_floor
        "pool" => vec![
            U64, U64, U64, U64, U64, U64, U64, U32, U32, U32, U64, U32, U32, F32, F32,
        ],
        // table, D, mapping, weights, ids, offsets, num_bags, divide_by, normalize, add, floor,
        // lanes_per_row, out
        "embedding_bag" => vec![
            U64, U32, U64, U64, U64, U64, U64, U32, U32, F32, F32, U32, U64,
        ],
        // x, out, rows, D, add, floor
        "normalize" => vec![U64, U64, U64, U32, F32, F32],
        // layers, weights, num_layers, n, weight_sum, out
        "layer_pool" => vec![U64, U64, U32, U64, F32, U64],
        other => panic!("unknown family {other}"),
    }
}

#[test]
fn parameters_and_launch_bounds_match_the_launchers() {
    for (family, kernel) in ptx::all_kernels() {
        let params = ptx::entry_params(family.ptx, kernel).unwrap();
        assert_eq!(params, expected_params(family.name), "{kernel}");
        let max = ptx::entry_max_threads(family.ptx, kernel)
            .unwrap_or_else(|| panic!("{kernel} has no launch bounds"));
        let launched = match family.name {
            "pool" if kernel.starts_with("pool_sum") => stk_cuda::pool::POOL_SUM_THREADS,
            "pool" => stk_cuda::pool::POOL_FULL_THREADS,
            "embedding_bag" => stk_cuda::embedding_bag::BAG_THREADS,
            "normalize" => stk_cuda::normalize::NORMALIZE_THREADS,
            _ => stk_cuda::layer_pool::LAYER_POOL_THREADS,
        };
        assert_eq!(
            max, launched,
            "{kernel}: launch bounds vs launcher block size"
        );
    }
    assert!(ptx::entry_params(ptx::POOL.ptx, "no_such_kernel").is_err());
}

#[test]
fn kernel_selection_by_dtype() {
    assert_eq!(
        ptx::pool_kernel(DType::BF16, false, true).unwrap(),
        "pool_sum_bf16_v8"
    );
    assert!(ptx::pool_kernel(DType::I8, false, true).is_err());
    assert!(ptx::normalize_kernel(DType::I32, true).is_err());
    assert_eq!(
        ptx::embedding_bag_kernel(DType::I8, true).unwrap(),
        "embedding_bag_i8_v16"
    );
    assert_eq!(ptx::pack_width(DType::F32), 4);
    assert_eq!(ptx::pack_width(DType::I8), 16);
}
