//! Host-side launch planning, checked without a GPU.
//!
//! The pooling kernel does exactly what its [`PoolPlan`] tables say: read the listed token rows,
//! weight row r by `r − origin + 1`, divide by the listed divisors, copy the listed cls / last
//! rows. `emulate` does the same on the host, in f64, so running every golden pooling case and
//! random problems through `emulate(PoolPlan::new(..))` checks all the layout logic (masks,
//! prompt exclusion, varlen, divisors, edge rows) that the kernel relies on. The kernel's own
//! arithmetic is checked against the CPU in `parity.rs`, on a machine with a GPU.

mod common;

use common::strategies::{padded_problem, varlen_problem};
use common::{expect_err, golden_cases, pool_reference_f64, pooling_case, round_to, Layout};
use proptest::prelude::*;
use stk_core::{
    DType, Error, PaddedBatch, PoolingMode, PoolingSpec, Tensor, TokenBags, VarlenBatch,
};
use stk_cuda::embedding_bag::lanes_per_row;
use stk_cuda::{PoolExtras, PoolInput, PoolPlan};

/// The pooling kernel's semantics over a plan, in f64 (before rounding to the output dtype).
fn emulate(plan: &PoolPlan, x: &[f32], cls: Option<&[f32]>) -> Vec<f64> {
    let d = plan.dim();
    let (segs, rows, divs) = (plan.segments(), plan.row_rows(), plan.row_divisors());
    let mut out = Vec::new();
    for b in 0..plan.batch() {
        let s = plan.row_segments()[b] as usize..plan.row_segments()[b + 1] as usize;
        let token_rows: Vec<usize> = s
            .flat_map(|k| segs[2 * k] as usize..segs[2 * k + 1] as usize)
            .collect();
        let (cls_row, last_row, origin) = (rows[3 * b], rows[3 * b + 1], rows[3 * b + 2]);
        let at = |r: usize, k: usize| x[r * d + k] as f64;
        for mode in plan.modes() {
            for k in 0..d {
                let sum = || token_rows.iter().map(|&r| at(r, k)).sum::<f64>();
                out.push(match mode {
                    PoolingMode::Cls => match cls {
                        Some(c) => c[b * d + k] as f64,
                        None if cls_row >= 0 => at(cls_row as usize, k),
                        None => 0.0,
                    },
                    PoolingMode::Max => token_rows
                        .iter()
                        .map(|&r| at(r, k))
                        .fold(f64::NEG_INFINITY, f64::max),
                    PoolingMode::Mean => sum() / divs[3 * b] as f64,
                    PoolingMode::MeanSqrtLenTokens => sum() / divs[3 * b + 1] as f64,
                    PoolingMode::WeightedMean => {
                        token_rows
                            .iter()
                            .map(|&r| at(r, k) * (r as i64 - origin + 1) as f64)
                            .sum::<f64>()
                            / divs[3 * b + 2] as f64
                    }
                    PoolingMode::LastToken if last_row >= 0 => at(last_row as usize, k),
                    PoolingMode::LastToken if last_row <= -2 => {
                        at((-2 - last_row) as usize, k) * 0.0
                    }
                    PoolingMode::LastToken => 0.0,
                });
            }
        }
    }
    out
}

#[test]
fn every_golden_pooling_case_through_the_plan() {
    let cases = golden_cases(&["pooling"]);
    assert!(
        cases.len() >= 200,
        "expected the full golden pooling set, found {}",
        cases.len()
    );
    for case in &cases {
        let c = pooling_case(case);
        let extras = PoolExtras {
            token_weights_sum: c.token_weights_sum.as_deref(),
            cls_token_embeddings: None,
        };
        let (plan, x) = match &c.layout {
            Layout::Padded(b) => (
                PoolPlan::new(b.into(), &c.spec, &extras).unwrap(),
                b.tokens().to_f32_vec().unwrap(),
            ),
            Layout::Varlen(b) => (
                PoolPlan::new(b.into(), &c.spec, &extras).unwrap(),
                b.tokens().to_f32_vec().unwrap(),
            ),
        };
        assert_eq!(
            plan.out_dtype(),
            c.expected.dtype(),
            "{}: output dtype",
            c.name
        );
        assert_eq!(
            plan.out_dims().as_slice(),
            c.expected.dims(),
            "{}: output shape",
            c.name
        );
        let got = round_to(&emulate(&plan, &x, None), plan.out_dtype());
        common::assert_close(
            &c.name,
            &got,
            &c.expected.to_f32_vec().unwrap(),
            c.tolerance,
        );
    }
}

/// The plan never lists a padded position, and lists each counted position once.
fn check_padded_plan_reads(plan: &PoolPlan, batch: &PaddedBatch, prompt: usize) {
    let t = batch.seq_len();
    let mut seen = vec![false; plan.token_rows()];
    for b in 0..plan.batch() {
        let s = plan.row_segments()[b] as usize..plan.row_segments()[b + 1] as usize;
        for k in s {
            let (lo, hi) = (
                plan.segments()[2 * k] as usize,
                plan.segments()[2 * k + 1] as usize,
            );
            assert!(
                lo < hi && hi <= (b + 1) * t && lo >= b * t,
                "segment {lo}..{hi} outside row {b}"
            );
            for r in lo..hi {
                assert!(batch.mask().is_none_or(|m| m[r] == 1), "row {r} is padding");
                assert!(!seen[r], "row {r} listed twice");
                seen[r] = true;
            }
        }
    }
    // Every position the mask keeps (after the prompt) is listed.
    for b in 0..plan.batch() {
        let m = |j: usize| batch.mask().is_none_or(|m| m[b * t + j] == 1);
        let first = (0..t).find(|&j| m(j)).unwrap_or(0);
        for j in 0..t {
            let kept = m(j) && !(prompt > 0 && j < first + prompt);
            assert_eq!(seen[b * t + j], kept, "row {b} position {j}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn padded_plan_matches_the_reference(p in padded_problem()) {
        let batch = p.batch();
        let spec = p.spec();
        let cls = p.cls_tensor();
        let extras = PoolExtras { token_weights_sum: p.tws.as_deref(), cls_token_embeddings: cls.as_ref() };
        let plan = PoolPlan::new((&batch).into(), &spec, &extras).unwrap();
        check_padded_plan_reads(&plan, &batch, spec.excluded_prompt());
        let x = batch.tokens().to_f32_vec().unwrap();
        let cls_values = cls.map(|c| c.to_f32_vec().unwrap());
        let got = emulate(&plan, &x, cls_values.as_deref());
        let layout = Layout::Padded(batch.clone());
        let want = pool_reference_f64(&layout, &spec, p.tws.as_deref(), p.cls_tensor().as_ref());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Divisors are f32 in the plan (as the reference computes them).
            prop_assert!(g == w || (g - w).abs() <= 1e-6 * w.abs().max(1.0), "element {i}: {g} vs {w}");
        }
        prop_assert_eq!(got.len(), want.len());
    }

    #[test]
    fn varlen_plan_matches_the_reference(p in varlen_problem()) {
        let batch = p.batch();
        let spec = p.spec();
        let plan = PoolPlan::new((&batch).into(), &spec, &PoolExtras::default()).unwrap();
        for w in plan.segments().chunks(2) {
            prop_assert!(w[0] < w[1] && w[1] as usize <= plan.token_rows());
        }
        let x = batch.tokens().to_f32_vec().unwrap();
        let got = emulate(&plan, &x, None);
        let want = pool_reference_f64(&Layout::Varlen(batch.clone()), &spec, None, None);
        prop_assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert!(g == w || (g - w).abs() <= 1e-6 * w.abs().max(1.0), "element {i}: {g} vs {w}");
        }
    }
}

fn tokens(dims: [usize; 3]) -> Tensor {
    Tensor::zeros(dims, DType::F32).unwrap()
}

#[test]
fn pool_plan_refuses_bad_arguments() {
    let batch = PaddedBatch::new(tokens([2, 3, 8]), None).unwrap();
    let mean = PoolingSpec::new(vec![PoolingMode::Mean]).unwrap();
    let input: PoolInput = (&batch).into();

    let empty = PoolingSpec {
        modes: vec![],
        prompt_length: None,
    };
    assert!(matches!(
        PoolPlan::new(input, &empty, &PoolExtras::default()),
        Err(Error::InvalidArgument(_))
    ));

    let many = PoolingSpec::new(vec![PoolingMode::Mean; 17]).unwrap();
    let e = PoolPlan::new(input, &many, &PoolExtras::default()).unwrap_err();
    assert!(
        matches!(e, Error::Unsupported(..)) && e.to_string().contains("17 pooling modes"),
        "{e}"
    );
    assert!(PoolPlan::new(
        input,
        &PoolingSpec::new(vec![PoolingMode::Max; 16]).unwrap(),
        &PoolExtras::default()
    )
    .is_ok());

    let tws = [1.0f32; 3];
    let e = PoolPlan::new(
        input,
        &mean,
        &PoolExtras {
            token_weights_sum: Some(&tws),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Shape { what, .. } if what == "token_weights_sum"),
        "{e}"
    );

    let cls = Tensor::zeros([2, 7], DType::F32).unwrap();
    let e = PoolPlan::new(
        input,
        &mean,
        &PoolExtras {
            cls_token_embeddings: Some(&cls),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Shape { what, .. } if what == "cls_token_embeddings"),
        "{e}"
    );
    let cls = Tensor::zeros([2, 8], DType::I32).unwrap();
    let e = PoolPlan::new(
        input,
        &mean,
        &PoolExtras {
            cls_token_embeddings: Some(&cls),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
}

#[test]
fn pool_plan_edge_rows() {
    // Row 0 all padding, row 1 real at 1..3 with a hole at 2, prompt of 1.
    let batch =
        PaddedBatch::with_mask_values(tokens([2, 4, 4]), Some(vec![0, 0, 0, 0, 0, 1, 0, 1]))
            .unwrap();
    let spec = PoolingSpec::new(PoolingMode::ALL.to_vec())
        .unwrap()
        .with_prompt_length(Some(1));
    let plan = PoolPlan::new((&batch).into(), &spec, &PoolExtras::default()).unwrap();
    // Row 0: nothing counts; cls reads position 0 (argmax of zeros), lasttoken position 0
    // times 0 (encoded −2 − 0).
    // Row 1: first 1 at position 1, prompt drops it, position 3 remains (flat row 7).
    assert_eq!(plan.row_segments(), &[0, 0, 1]);
    assert_eq!(plan.segments(), &[7, 8]);
    assert_eq!(plan.row_rows(), &[0, -2, 0, 7, 7, 5]);
    // Row 1: one token of weight 3 − 1 + 1 = 3.
    assert_eq!(
        plan.row_divisors(),
        &[1e-9, 1e-9f32.sqrt(), 1e-9, 1.0, 1.0, 3.0]
    );
    assert_eq!(plan.slot_codes(), 0x543210);
    assert!(plan.needs_full_kernel());

    // T = 0: no token rows at all, so cls and lasttoken have nothing to read.
    let empty = PaddedBatch::new(tokens([2, 0, 4]), None).unwrap();
    let plan = PoolPlan::new((&empty).into(), &spec, &PoolExtras::default()).unwrap();
    assert_eq!(plan.token_rows(), 0);
    assert!(plan.row_rows().chunks(3).all(|r| r[0] == -1 && r[1] == -1));

    // Varlen: an empty sequence and one shorter than the prompt.
    let v = VarlenBatch::new(tokens([1, 3, 4]), &[0, 0, 1, 3]).unwrap();
    let spec = PoolingSpec::new(vec![PoolingMode::Cls])
        .unwrap()
        .with_prompt_length(Some(2));
    let plan = PoolPlan::new((&v).into(), &spec, &PoolExtras::default()).unwrap();
    assert_eq!(plan.segments(), &[] as &[i64]);
    assert_eq!(plan.row_rows(), &[-1, -1, 0, 0, 0, 0, 1, 2, 1]);
    assert!(!plan.needs_full_kernel());
}

#[test]
fn pool_block_shapes() {
    let shape = |dims: [usize; 3], dtype: DType, modes: Vec<PoolingMode>| {
        let t = Tensor::zeros(dims, dtype).unwrap();
        let batch = PaddedBatch::new(t, None).unwrap();
        let plan = PoolPlan::new(
            (&batch).into(),
            &PoolingSpec::new(modes).unwrap(),
            &PoolExtras::default(),
        )
        .unwrap();
        let launches = plan.launches(false).unwrap().unwrap();
        assert_eq!(launches.len(), 1, "two token rows are never split");
        let l = &launches[0];
        (
            l.shape.kernel.name,
            (l.shape.threads, l.lanes as u32, l.shape.shared_bytes),
        )
    };
    let mean = vec![PoolingMode::Mean];
    // The target shape: 128 lanes of 8 bf16 cover D = 1024; 4 groups of rows in flight.
    // Shared memory: each thread's f64 totals (8 bytes per pack element), 32 floats for
    // block_sum, 16 for the row's facts.
    assert_eq!(
        shape([1, 2, 1024], DType::BF16, mean.clone()),
        ("pool_sum_bf16_v8", (512, 128, 512 * 8 * 8 + 48 * 4))
    );
    assert_eq!(shape([1, 2, 768], DType::BF16, mean.clone()).1 .1, 96);
    assert_eq!(
        shape([1, 2, 96], DType::F32, vec![PoolingMode::Max]),
        // f64 sums and weighted sums, f32 maxima per pack element.
        (
            "pool_full_f32_v4",
            (256, 32, 256 * 4 * (8 + 8 + 4) + 48 * 4)
        )
    );
    // One element per load still leaves room for the mask reductions' int64 per thread.
    assert_eq!(
        shape([1, 2, 7], DType::F16, mean.clone()),
        ("pool_sum_f16_v1", (512, 32, 512 * 8 + 48 * 4))
    );
    assert_eq!(shape([1, 2, 5000], DType::F32, mean).1 .1, 512);
}

#[test]
fn bags_name_ids_below_their_vocabulary() {
    // Bags can only name ids below their vocabulary; the device op compares it with the table's.
    assert!(matches!(
        TokenBags::from_bags(&[vec![4u32]], 4),
        Err(Error::IdOutOfRange { .. })
    ));
}

#[test]
fn embedding_bag_lanes() {
    // One warp covers D = 256 f16 with 32 lanes of 8; int8 D = 64 needs 4 lanes per row,
    // so 8 rows are in flight per warp step.
    assert_eq!(lanes_per_row(256, DType::F16), 32);
    assert_eq!(lanes_per_row(64, DType::I8), 4);
    assert_eq!(lanes_per_row(512, DType::F32), 32);
    assert_eq!(lanes_per_row(3, DType::F32), 4);
    assert_eq!(lanes_per_row(1, DType::F16), 1);
}

/// The packed bag kernels store 16 bytes at a time: an output that is not 16-byte aligned (a
/// caller's view into the middle of a buffer) gets the element-wise kernel, with the lanes of
/// one-element packs.
#[test]
fn unaligned_bag_output_gets_the_element_wise_kernel() {
    use stk_cuda::embedding_bag::{embedding_bag_launch, BagProblem};
    use stk_cuda::BagReduce;
    for (aligned, kernel, lanes) in [
        (true, "embedding_bag_f16_v8", 8),
        (false, "embedding_bag_f16_v1", 32),
    ] {
        let l = embedding_bag_launch(&BagProblem {
            dim: 64,
            dtype: DType::F16,
            vocab: 10,
            num_ids: 3,
            num_bags: 2,
            reduce: BagReduce::Sum,
            normalize: None,
            aligned,
        })
        .unwrap()
        .unwrap();
        assert_eq!((l.shape.kernel.name, l.lanes_per_row), (kernel, lanes));
        assert_eq!(l.shape.shared_bytes, 256 * 8 * if aligned { 8 } else { 1 });
    }
}

/// Small batches of long rows are split until the launch has about 512 blocks (B = 1 with
/// T = 32768: 256 chunks of 128 rows); large batches and short rows are not; the split is three
/// launches (facts, partials over B × chunks blocks, combine) with a workspace sized for them.
#[test]
fn small_batches_of_long_rows_are_split() {
    use stk_cuda::pool::{
        pool_split_launches, pool_workspace_bytes, split_chunks, PoolProblem, RowSource,
    };
    for (batch, rows, chunks) in [
        (1, 32768, 256),
        (16, 2048, 16),
        (16, 32768, 32),
        (255, 4096, 3),
        (256, 512, 1),
        (1, 255, 1),
        (1, 256, 2),
        (0, 1000, 1),
    ] {
        assert_eq!(split_chunks(batch, rows), chunks, "B = {batch}, T = {rows}");
    }
    let modes = [PoolingMode::Mean];
    let problem = PoolProblem {
        dtype: DType::BF16,
        out_dtype: DType::BF16,
        batch: 1,
        dim: 1024,
        modes: &modes,
        source: RowSource::Mask {
            seq_len: 32768,
            mask_bytes: 8,
        },
        prompt: 0,
        normalize: true,
        aligned: true,
    };
    let launches = pool_split_launches(&problem, 256).unwrap().unwrap();
    let grids: Vec<(i32, u32, i32)> = launches
        .iter()
        .map(|l| (l.phase, l.shape.grid, l.chunks))
        .collect();
    assert_eq!(grids, [(1, 1, 256), (2, 256, 256), (3, 1, 256)]);
    assert_eq!(
        pool_workspace_bytes(1, 256, 1024),
        Some(64 + 256 * 3 * 1024 * 4)
    );
    assert_eq!(pool_workspace_bytes(7, 1, 1024), Some(0));
    assert_eq!(pool_workspace_bytes(usize::MAX, 2, 8), None);
    let whole = pool_split_launches(&problem, 1).unwrap().unwrap();
    assert_eq!(
        (whole.len(), whole[0].phase, whole[0].shape.grid),
        (1, 0, 1)
    );
}

/// The host-tensor API splits as the device-buffer API does: a plan of B rows of T tokens
/// (padded, varlen or spans) has `split_chunks(B, T)` chunks, three launches and the
/// workspace `RawPool::workspace_bytes` gives for the same shapes.
#[test]
fn host_plans_split_small_batches_of_long_rows() {
    use stk_core::{SpanBatch, VarlenBatch};
    use stk_cuda::pool::{pool_workspace_bytes, split_chunks};
    use stk_cuda::{RawPool, RawRows};
    let spec = PoolingSpec::new(vec![PoolingMode::Mean, PoolingMode::Max]).unwrap();
    let d = 16;
    for (b, t) in [
        (1usize, 32768usize),
        (4, 2048),
        (16, 300),
        (2, 100),
        (300, 512),
    ] {
        let tokens = Tensor::zeros([b * t, d], DType::BF16).unwrap();
        let padded = PaddedBatch::new(tokens.reshape([b, t, d]).unwrap(), None).unwrap();
        let cu: Vec<i64> = (0..=b).map(|i| (i * t) as i64).collect();
        let varlen = VarlenBatch::new(tokens.clone(), &cu).unwrap();
        let spans: Vec<[i64; 2]> = cu.windows(2).map(|w| [w[0], w[1]]).collect();
        let spans = SpanBatch::new(tokens.clone(), &spans).unwrap();
        let raw = RawPool {
            tokens: 0,
            dtype: DType::BF16,
            token_rows: b * t,
            dim: d,
            rows: RawRows::Varlen {
                cu_seq_lens: 0,
                batch: b,
            },
            spec: &spec,
            token_weights_sum: None,
            out: 0,
            normalize: false,
        };
        let chunks = split_chunks(b, t);
        for (layout, input) in [
            ("padded", PoolInput::from(&padded)),
            ("varlen", (&varlen).into()),
            ("spans", (&spans).into()),
        ] {
            let plan = PoolPlan::new(input, &spec, &PoolExtras::default()).unwrap();
            let what = format!("B = {b}, T = {t}, {layout}");
            assert_eq!(plan.chunks(), chunks, "{what}");
            assert_eq!(plan.chunks(), raw.chunks(), "{what}");
            assert_eq!(
                plan.workspace_bytes().unwrap(),
                raw.workspace_bytes(),
                "{what}"
            );
            assert_eq!(
                plan.workspace_bytes().unwrap(),
                pool_workspace_bytes(b, chunks, d).unwrap()
            );
            let launches = plan.launches(true).unwrap().unwrap();
            let phases: Vec<(i32, u32)> =
                launches.iter().map(|l| (l.phase, l.shape.grid)).collect();
            let want = if chunks > 1 {
                vec![(1, b as u32), (2, (b * chunks) as u32), (3, b as u32)]
            } else {
                vec![(0, b as u32)]
            };
            assert_eq!(phases, want, "{what}");
        }
    }
    assert_eq!(split_chunks(1, 32768), 256);
}

/// The checks the device entries make before any copy or launch, run without a GPU:
/// mismatched pooling buffers (the cases `parity.rs` also runs through
/// `CudaDevice::pool_device` on a GPU), integer embedding tables other than int8, bags of a larger vocabulary than
/// the table's, a wrong bag output; empty inputs give zero rows and no launch.
#[test]
fn host_checks_refuse_mismatched_buffers() {
    use common::checks::{mismatched_buffers, mismatched_buffers_plan};
    use stk_core::TokenBags;
    use stk_cuda::embedding_bag::{check_output, check_vocab, embedding_bag_launch, BagProblem};
    use stk_cuda::{BagReduce, EmbeddingTable};
    let plan = mismatched_buffers_plan();
    for case in mismatched_buffers() {
        let result = plan.check_buffers(
            (case.tokens.0, &case.tokens.1),
            case.cls.as_ref().map(|(t, d)| (*t, d.as_slice())),
            (case.out.0, &case.out.1),
        );
        match case.refused {
            None => result.unwrap_or_else(|e| panic!("{}: {e}", case.what)),
            Some((kind, words)) => {
                expect_err(result, kind, words);
            }
        }
    }

    // The table check every backend shares: i32 tables are refused, as on the CPU.
    expect_err(
        EmbeddingTable::check(&Tensor::zeros([4, 8], DType::I32).unwrap(), None, None),
        |e| matches!(e, Error::DType { .. }),
        &["embedding table", "i32"],
    );
    // Bags checked against 6 ids, a table of 4.
    let bags = TokenBags::from_bags(&[vec![5u32]], 6).unwrap();
    expect_err(
        check_vocab(4, bags.vocab()),
        |e| matches!(e, Error::InvalidArgument(_)),
        &["vocabulary of 6 ids", "answers only 4"],
    );
    check_vocab(4, 4).unwrap();
    expect_err(
        check_output(1, 8, (DType::F32, &[1, 4])),
        |e| matches!(e, Error::Shape { .. }),
        &["embedding bag output", "[1, 8] f32", "[1, 4]"],
    );
    expect_err(
        check_output(1, 8, (DType::F16, &[1, 8])),
        |e| matches!(e, Error::Shape { .. }),
        &["[1, 8] f32"],
    );
    check_output(1, 8, (DType::F32, &[1, 8])).unwrap();

    // Empty inputs: zero rows of the right width, and nothing to launch.
    let bag = BagProblem {
        dim: 8,
        dtype: DType::F16,
        vocab: 4,
        num_ids: 0,
        num_bags: 0,
        reduce: BagReduce::MeanByCount,
        normalize: None,
        aligned: true,
    };
    assert!(embedding_bag_launch(&bag).unwrap().is_none());
    let none = PaddedBatch::new(Tensor::zeros([0, 3, 8], DType::BF16).unwrap(), None).unwrap();
    let spec = PoolingSpec::new(vec![PoolingMode::Mean, PoolingMode::Cls]).unwrap();
    let plan = PoolPlan::new((&none).into(), &spec, &PoolExtras::default()).unwrap();
    assert_eq!(plan.out_dims(), [0, 16]);
    assert!(plan.launches(true).unwrap().is_none());
}
