//! The kernels on a GPU against the CPU: every golden module case (pooling, normalize,
//! weighted layer pooling) and random problems over shapes, dtypes, masks and layouts, with
//! stk-cpu as the oracle. Without a CUDA driver or device each test prints
//! `skipped: no CUDA driver` (or device) and returns: the only skip these tests allow.

mod common;

use common::strategies::{float_dtype, padded_problem, varlen_problem};
use common::{
    assert_close, golden, golden_cases, normalize_reference, pool_reference_f64, pooling_case,
    round_to, tensors, Layout,
};
use proptest::prelude::*;
use std::sync::OnceLock;
use stk_core::{DType, Error, PaddedBatch, PoolingMode, PoolingSpec, Tensor, TokenBags};
use stk_cuda::{
    BagReduce, CudaDevice, DeviceEmbeddingTable, NormRule, PoolExtras, PoolInput, PoolPlan,
};

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
            println!("{test}: skipped: {why}");
            eprintln!("{test}: skipped: {why}");
            None
        }
    }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec().unwrap()
}

fn pool_on_gpu(
    dev: &CudaDevice,
    layout: &Layout,
    spec: &PoolingSpec,
    extras: &PoolExtras,
    normalize: bool,
) -> Tensor {
    let input: PoolInput = match layout {
        Layout::Padded(b) => b.into(),
        Layout::Varlen(b) => b.into(),
    };
    dev.pool(input, spec, extras, normalize).unwrap()
}

/// The pooled reference rounded to the output dtype, then (optionally) normalized as a
/// separate Normalize module would: from the rounded values, in f64, rounded again.
fn expected_pool(
    rounded: &[f32],
    cols: usize,
    dtype: DType,
    normalize: bool,
    rule: NormRule,
) -> Vec<f32> {
    if !normalize {
        return rounded.to_vec();
    }
    let v: Vec<f64> = rounded.iter().map(|&x| x as f64).collect();
    round_to(
        &normalize_reference(&v, cols, rule.add as f64, rule.floor as f64),
        dtype,
    )
}

#[test]
fn golden_pooling_cases_on_gpu() {
    let Some(dev) = gpu("golden_pooling_cases_on_gpu") else {
        return;
    };
    let cases = golden_cases(&["pooling"]);
    for case in &cases {
        let c = pooling_case(case);
        let extras = PoolExtras {
            token_weights_sum: c.token_weights_sum.as_deref(),
            cls_token_embeddings: None,
        };
        let expected = f32s(&c.expected);
        for normalize in [false, true] {
            let got = pool_on_gpu(dev, &c.layout, &c.spec, &extras, normalize);
            assert_eq!(got.dtype(), c.expected.dtype(), "{}: dtype", c.name);
            assert_eq!(got.dims(), c.expected.dims(), "{}: shape", c.name);
            let cols = c.expected.dims()[1];
            let want = expected_pool(
                &expected,
                cols,
                got.dtype(),
                normalize,
                NormRule::SENTENCE_TRANSFORMERS,
            );
            let name = format!("{} (normalize={normalize})", c.name);
            assert_close(&name, &f32s(&got), &want, c.tolerance);
        }
    }
    println!(
        "{} golden pooling cases matched on the GPU (plain and with fused normalize)",
        cases.len()
    );
}

#[test]
fn golden_normalize_cases_on_gpu() {
    let Some(dev) = gpu("golden_normalize_cases_on_gpu") else {
        return;
    };
    for case in golden_cases(&["normalize"]) {
        let file = tensors(&case);
        let x = file.get("sentence_embedding").unwrap();
        let expected = file.get("expected").unwrap();
        let got = dev.normalize(&x, NormRule::SENTENCE_TRANSFORMERS).unwrap();
        assert_eq!(got.dtype(), expected.dtype(), "{}", case.name);
        let tol = golden::tolerance_for(case.case["dtype"].as_str().unwrap(), false);
        assert_close(&case.name, &f32s(&got), &f32s(&expected), tol);
    }
}

#[test]
fn golden_weighted_layer_pooling_cases_on_gpu() {
    let Some(dev) = gpu("golden_weighted_layer_pooling_cases_on_gpu") else {
        return;
    };
    for case in golden_cases(&["weighted_layer_pooling"]) {
        let file = tensors(&case);
        let layers = file.get("all_layer_embeddings").unwrap();
        let weights = file.get("layer_weights").unwrap();
        let start = case.case["layer_start"].as_u64().unwrap() as usize;
        let expected = file.get("expected").unwrap();
        let got = dev.weighted_layer_pool(&layers, start, &weights).unwrap();
        assert_eq!(
            (got.dtype(), got.dims()),
            (expected.dtype(), expected.dims()),
            "{}",
            case.name
        );
        assert_close(&case.name, &f32s(&got), &f32s(&expected), 1e-5);
    }
}

/// Tolerance of a random problem's output (golden rules; f32 sums of a few terms).
fn tol(dtype: DType) -> f32 {
    golden::tolerance_for(dtype.as_str(), false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn padded_pooling_matches_cpu(p in padded_problem()) {
        let Some(dev) = gpu("padded_pooling_matches_cpu") else { return Ok(()) };
        let layout = Layout::Padded(p.batch());
        let spec = p.spec();
        let cls = p.cls_tensor();
        let extras = PoolExtras { token_weights_sum: p.tws.as_deref(), cls_token_embeddings: cls.as_ref() };
        let got = pool_on_gpu(dev, &layout, &spec, &extras, p.normalize);
        let Layout::Padded(batch) = &layout else { unreachable!() };
        let cpu = stk_cpu::pool_padded(batch, &spec, &stk_cpu::PoolExtras { token_weights_sum: p.tws.as_deref(), cls_token_embeddings: cls.as_ref() }).unwrap();
        prop_assert_eq!(got.dtype(), cpu.dtype());
        prop_assert_eq!(got.dims(), cpu.dims());
        let reference = round_to(&pool_reference_f64(&layout, &spec, p.tws.as_deref(), cls.as_ref()), cpu.dtype());
        let want = expected_pool(&reference, cpu.dims()[1], cpu.dtype(), p.normalize, NormRule::SENTENCE_TRANSFORMERS);
        if let Err(e) = golden::compare(&f32s(&got), &want, tol(p.dtype)) {
            return Err(TestCaseError::fail(format!("{e}\n{p:?}")));
        }
    }

    #[test]
    fn varlen_pooling_matches_cpu(p in varlen_problem()) {
        let Some(dev) = gpu("varlen_pooling_matches_cpu") else { return Ok(()) };
        let layout = Layout::Varlen(p.batch());
        let spec = p.spec();
        let got = pool_on_gpu(dev, &layout, &spec, &PoolExtras::default(), p.normalize);
        let reference = round_to(&pool_reference_f64(&layout, &spec, None, None), p.dtype);
        let want = expected_pool(&reference, spec.modes.len() * p.dim, p.dtype, p.normalize, NormRule::SENTENCE_TRANSFORMERS);
        prop_assert_eq!(got.dtype(), p.dtype);
        if let Err(e) = golden::compare(&f32s(&got), &want, tol(p.dtype)) {
            return Err(TestCaseError::fail(format!("{e}\n{p:?}")));
        }
    }

    #[test]
    fn normalize_matches_cpu(
        (rows, d) in (0usize..20, prop_oneof![1usize..40, Just(256), Just(1030)]),
        dtype in float_dtype(),
        seed in any::<u64>(),
        model2vec in any::<bool>(),
    ) {
        let Some(dev) = gpu("normalize_matches_cpu") else { return Ok(()) };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let values: Vec<f32> = (0..rows * d)
            .map(|i| if i % 7 == 0 && seed % 3 == 0 { 0.0 } else { rand::Rng::gen_range(&mut rng, -3.0f32..3.0) })
            .collect();
        // Some rows all zero: they must stay zero.
        let mut values = values;
        if rows > 1 { values[..d].iter_mut().for_each(|v| *v = 0.0); }
        let x = Tensor::from_vec([rows, d], values).unwrap().to_dtype(dtype).unwrap();
        let rule = if model2vec { NormRule::MODEL2VEC } else { NormRule::SENTENCE_TRANSFORMERS };
        let got = dev.normalize(&x, rule).unwrap();
        prop_assert_eq!(got.dtype(), dtype);
        let want = if model2vec {
            let v: Vec<f64> = f32s(&x).iter().map(|&v| v as f64).collect();
            round_to(&normalize_reference(&v, d, 1e-32, 0.0), dtype)
        } else {
            f32s(&stk_cpu::normalize(&x).unwrap())
        };
        if let Err(e) = golden::compare(&f32s(&got), &want, tol(dtype)) {
            return Err(TestCaseError::fail(format!("{e} rows={rows} d={d} {dtype}")));
        }
    }

    #[test]
    fn weighted_layer_pooling_matches_cpu(
        (layers, start, b, t, d) in (1usize..6, 0usize..6, 1usize..4, 0usize..6, prop_oneof![1usize..20, Just(64)]),
        (dtype, weights_dtype) in (float_dtype(), float_dtype()),
        seed in any::<u64>(),
    ) {
        let Some(dev) = gpu("weighted_layer_pooling_matches_cpu") else { return Ok(()) };
        let start = start % layers;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let mut r = || rand::Rng::gen_range(&mut rng, -2.0f32..2.0);
        let all = Tensor::from_vec([layers, b, t, d], (0..layers * b * t * d).map(|_| r()).collect()).unwrap().to_dtype(dtype).unwrap();
        let w = Tensor::from_vec([layers - start], (0..layers - start).map(|_| r().abs() + 0.1).collect()).unwrap().to_dtype(weights_dtype).unwrap();
        let got = dev.weighted_layer_pool(&all, start, &w).unwrap();
        let cpu = stk_cpu::weighted_layer_pooling(&all, start, &w).unwrap();
        prop_assert_eq!((got.dtype(), got.dims()), (cpu.dtype(), cpu.dims()));
        if let Err(e) = golden::compare(&f32s(&got), &f32s(&cpu), tol(cpu.dtype())) {
            return Err(TestCaseError::fail(format!("{e} {layers} layers from {start}, [{b}, {t}, {d}] {dtype}")));
        }
    }

    #[test]
    fn embedding_bag_matches_cpu(
        (rows, d) in (1usize..50, prop_oneof![1usize..20, Just(32), Just(64), Just(70), Just(256), Just(512)]),
        dtype in prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16), Just(DType::I8)],
        (with_mapping, with_weights) in any::<(bool, bool)>(),
        bag_lens in prop::collection::vec(0usize..12, 0..20),
        reduce in prop_oneof![Just(BagReduce::MeanByCount), Just(BagReduce::Sum), Just(BagReduce::MeanByWeightSum)],
        rule in prop_oneof![Just(None), Just(Some(NormRule::SENTENCE_TRANSFORMERS)), Just(Some(NormRule::MODEL2VEC))],
        seed in any::<u64>(),
    ) {
        let Some(dev) = gpu("embedding_bag_matches_cpu") else { return Ok(()) };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        use rand::Rng;
        let table = match dtype {
            DType::I8 => Tensor::from_vec([rows, d], (0..rows * d).map(|_| rng.gen_range(-127i8..=127)).collect()).unwrap(),
            _ => Tensor::from_vec([rows, d], (0..rows * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect()).unwrap().to_dtype(dtype).unwrap(),
        };
        let vocab = if with_mapping { rows + 17 } else { rows };
        let mapping: Option<Vec<i32>> = with_mapping.then(|| (0..vocab).map(|_| rng.gen_range(0..rows as i32)).collect());
        let weights: Option<Vec<f32>> = with_weights.then(|| (0..vocab).map(|_| rng.gen_range(0.0f32..2.0)).collect());
        let bags: Vec<Vec<u32>> = bag_lens.iter().map(|&n| (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect()).collect();
        let token_bags = TokenBags::from_bags(&bags, vocab).unwrap();
        let mapping_t = mapping.as_ref().map(|m| Tensor::from_slice([vocab], m).unwrap());
        let weights_t = weights.as_ref().map(|w| Tensor::from_slice([vocab], w).unwrap());
        let device_table = DeviceEmbeddingTable::new(dev, &table, mapping_t.as_ref(), weights_t.as_ref()).unwrap();
        let got = f32s(&dev.embedding_bag(&device_table, &token_bags, reduce, rule).unwrap());

        // f64 oracle: row(id) = table[mapping[id]] · weights[id], combined, normalized.
        let tv = f32s(&table);
        let mut want = Vec::new();
        for bag in &bags {
            let mut acc = vec![0f64; d];
            let mut wsum = 0f64;
            for &id in bag {
                let r = mapping.as_ref().map_or(id as usize, |m| m[id as usize] as usize);
                let w = weights.as_ref().map_or(1.0, |w| w[id as usize] as f64);
                wsum += w;
                for k in 0..d { acc[k] += tv[r * d + k] as f64 * w; }
            }
            let div = match reduce {
                BagReduce::Sum => 1.0,
                BagReduce::MeanByCount => bag.len() as f64,
                BagReduce::MeanByWeightSum => wsum,
            };
            want.extend(acc.iter().map(|&a| if bag.is_empty() || div == 0.0 { 0.0 } else { a / div }));
        }
        if let Some(r) = rule { want = normalize_reference(&want, d, r.add as f64, r.floor as f64); }
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        if let Err(e) = golden::compare(&got, &want, 2e-5) {
            return Err(TestCaseError::fail(format!("{e}: table [{rows}, {d}] {dtype}, {reduce:?}, {rule:?}")));
        }
        // stk-cpu's embedding bag (model2vec / StaticEmbedding mean) agrees too.
        if reduce == BagReduce::MeanByCount && rule.is_none() && dtype != DType::BF16 {
            let cpu = stk_cpu::EmbeddingBag::new(table.clone(), mapping_t.as_ref(), weights_t.as_ref()).unwrap();
            let cpu_out = f32s(&cpu.bag_mean(&token_bags).unwrap());
            if let Err(e) = golden::compare(&got, &cpu_out, 2e-5) {
                return Err(TestCaseError::fail(format!("vs stk-cpu: {e}")));
            }
        }
    }
}

#[test]
fn device_ops_refuse_mismatched_buffers() {
    let Some(dev) = gpu("device_ops_refuse_mismatched_buffers") else {
        return;
    };
    let tokens = Tensor::zeros([2, 3, 8], DType::F32).unwrap();
    let batch = PaddedBatch::new(tokens.clone(), None).unwrap();
    let spec = PoolingSpec::new(vec![PoolingMode::Mean, PoolingMode::Cls]).unwrap();
    let plan = PoolPlan::new((&batch).into(), &spec, &PoolExtras::default()).unwrap();
    let device_plan = dev.upload_pool_plan(&plan).unwrap();
    let x = dev.upload(&tokens).unwrap();
    let mut out = dev.zeros([2, 16], DType::F32).unwrap();
    dev.pool_device(&x, None, &device_plan, false, &mut out)
        .unwrap();
    // Too few token rows, wrong dtype, wrong output shape, unexpected cls: errors, no launch.
    let short = dev
        .upload(&Tensor::zeros([2, 2, 8], DType::F32).unwrap())
        .unwrap();
    assert!(matches!(
        dev.pool_device(&short, None, &device_plan, false, &mut out),
        Err(Error::Shape { .. })
    ));
    let half = dev.upload(&tokens.to_dtype(DType::F16).unwrap()).unwrap();
    assert!(matches!(
        dev.pool_device(&half, None, &device_plan, false, &mut out),
        Err(Error::DType { .. })
    ));
    let mut narrow = dev.zeros([2, 8], DType::F32).unwrap();
    assert!(matches!(
        dev.pool_device(&x, None, &device_plan, false, &mut narrow),
        Err(Error::Shape { .. })
    ));
    let cls = dev
        .upload(&Tensor::zeros([2, 8], DType::F32).unwrap())
        .unwrap();
    assert!(dev
        .pool_device(&x, Some(&cls), &device_plan, false, &mut out)
        .is_err());

    // Bags checked against a larger vocabulary than the table answers.
    let table =
        DeviceEmbeddingTable::new(dev, &Tensor::zeros([4, 8], DType::F16).unwrap(), None, None)
            .unwrap();
    let bags = TokenBags::from_bags(&[vec![5u32]], 6).unwrap();
    assert!(matches!(
        dev.embedding_bag(&table, &bags, BagReduce::MeanByCount, None),
        Err(Error::InvalidArgument(_))
    ));
    let mut wrong = dev.zeros([1, 4], DType::F32).unwrap();
    let ok_bags = dev
        .upload_bags(&TokenBags::from_bags(&[vec![3u32]], 4).unwrap())
        .unwrap();
    assert!(dev
        .embedding_bag_device(&table, &ok_bags, BagReduce::Sum, None, &mut wrong)
        .is_err());

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
