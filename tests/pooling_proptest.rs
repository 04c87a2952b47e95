//! The fast pooling path against the plain f64 reference on random inputs: shapes down to
//! T = 1 and D not a multiple of 8, masks with left/right padding, holes, all-zero rows or a
//! length other than T, varlen batches with empty sequences, prompts longer than sequences,
//! every mode in any list, f32/f16/bf16, `token_weights_sum` and `cls_token_embeddings`.

use proptest::prelude::*;
use stk_core::{DType, PaddedBatch, PoolingMode, PoolingSpec, Tensor, VarlenBatch};
use stk_cpu::pooling::{self, output_dtype, reference, PoolExtras};
use stk_tests::{compare, tolerance_for};

/// splitmix64: deterministic data from the case's seed, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-4.0, 4.0)).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum MaskKind {
    None,
    Right,
    Left,
    Random,
    OtherLength,
}

#[derive(Debug, Clone)]
struct Case {
    dtype: DType,
    b: usize,
    t: usize,
    d: usize,
    mask: MaskKind,
    prompt: Option<usize>,
    modes: Vec<PoolingMode>,
    with_tws: bool,
    cls_dtype: Option<DType>,
    seed: u64,
}

fn dtype() -> impl Strategy<Value = DType> {
    prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)]
}

fn case(max_b: usize, max_t: usize, max_d: usize) -> impl Strategy<Value = Case> {
    let mask = prop_oneof![
        Just(MaskKind::None),
        Just(MaskKind::Right),
        Just(MaskKind::Left),
        Just(MaskKind::Random),
        Just(MaskKind::OtherLength),
    ];
    let modes = prop::collection::vec(prop::sample::select(PoolingMode::ALL.to_vec()), 1..=4);
    (
        dtype(),
        0..=max_b,
        1..=max_t,
        1..=max_d,
        mask,
        prop::option::of(0..=max_t + 3),
        modes,
        any::<bool>(),
        prop::option::of(dtype()),
        any::<u64>(),
    )
        .prop_map(
            |(dtype, b, t, d, mask, prompt, modes, with_tws, cls_dtype, seed)| Case {
                dtype,
                b,
                t,
                d,
                mask,
                prompt,
                modes,
                with_tws,
                cls_dtype,
                seed,
            },
        )
}

/// Both outputs agree within the input dtype's golden tolerance, and have the same dtype.
fn assert_parity(fast: &Tensor, reference_values: &[f64], reference_tensor: &Tensor, input: DType) {
    assert_eq!(fast.dtype(), reference_tensor.dtype());
    assert_eq!(fast.dims(), reference_tensor.dims());
    let expected: Vec<f32> = reference_values.iter().map(|&v| v as f32).collect();
    let tol = tolerance_for(input.as_str(), false);
    if let Err(e) = compare(&fast.to_f32_vec().unwrap(), &expected, tol) {
        panic!("fast path differs from the reference: {e}");
    }
}

struct Inputs {
    tokens: Tensor,
    tws: Option<Vec<f32>>,
    cls: Option<Tensor>,
    spec: PoolingSpec,
}

fn inputs(c: &Case, rng: &mut Rng, rows: usize, token_dims: Vec<usize>) -> Inputs {
    let n: usize = token_dims.iter().product();
    let tokens = Tensor::from_vec(token_dims, rng.values(n))
        .unwrap()
        .to_dtype(c.dtype)
        .unwrap();
    // token_weights_sum on the scale of a sequence's weight sum (WordWeights gives Σ weight ·
    // mask). A divisor far below the sum's own scale would amplify the f32 rounding of the
    // sum beyond the golden tolerance in any f32 implementation, the reference's included.
    let tws = c.with_tws.then(|| {
        (0..rows)
            .map(|_| rng.uniform(0.5, 2.0) * c.t as f32)
            .collect()
    });
    let cls = c.cls_dtype.map(|dt| {
        Tensor::from_vec([rows, c.d], rng.values(rows * c.d))
            .unwrap()
            .to_dtype(dt)
            .unwrap()
    });
    let spec = PoolingSpec::new(c.modes.clone())
        .unwrap()
        .with_prompt_length(c.prompt);
    Inputs {
        tokens,
        tws,
        cls,
        spec,
    }
}

fn check_padded(c: &Case) {
    let mut rng = Rng(c.seed);
    let inp = inputs(c, &mut rng, c.b, vec![c.b, c.t, c.d]);
    let mut mask_len = c.t;
    let mask: Option<Vec<i64>> = match c.mask {
        MaskKind::None => None,
        MaskKind::Right | MaskKind::Left => Some(
            (0..c.b)
                .flat_map(|_| {
                    // Lengths 0..=T: all-zero rows included.
                    let len = rng.below(c.t + 1);
                    let left = matches!(c.mask, MaskKind::Left);
                    (0..c.t).map(move |j| {
                        let real = if left { j >= c.t - len } else { j < len };
                        real as i64
                    })
                })
                .collect(),
        ),
        MaskKind::Random => Some((0..c.b * c.t).map(|_| (rng.below(3) > 0) as i64).collect()),
        MaskKind::OtherLength => {
            mask_len = c.t + 1;
            Some((0..c.b * mask_len).map(|_| rng.below(2) as i64).collect())
        }
    };
    let mask = mask.map(|m| Tensor::from_vec([c.b, mask_len], m).unwrap());
    let batch = PaddedBatch::new(inp.tokens, mask.as_ref()).unwrap();
    let extras = PoolExtras {
        token_weights_sum: inp.tws.as_deref(),
        cls_token_embeddings: inp.cls.as_ref(),
    };
    let fast = pooling::pool_padded(&batch, &inp.spec, &extras).unwrap();
    let values = reference::pool_padded_f64(&batch, &inp.spec, &extras).unwrap();
    let slow = reference::pool_padded(&batch, &inp.spec, &extras).unwrap();
    assert_eq!(fast.dtype(), output_dtype(c.dtype, &inp.spec, &extras));
    assert_parity(&fast, &values, &slow, c.dtype);
}

fn check_varlen(c: &Case) {
    let mut rng = Rng(c.seed);
    // Sequence lengths 0..=T (empty sequences included).
    let lens: Vec<usize> = (0..c.b).map(|_| rng.below(c.t + 1)).collect();
    let mut cu = vec![0i64];
    for l in &lens {
        cu.push(cu.last().unwrap() + *l as i64);
    }
    let n = *cu.last().unwrap() as usize;
    let dims = if c.seed % 2 == 0 {
        vec![1, n, c.d]
    } else {
        vec![n, c.d]
    };
    let inp = inputs(c, &mut rng, c.b, dims);
    let batch = VarlenBatch::new(inp.tokens, &cu).unwrap();
    let extras = PoolExtras {
        token_weights_sum: inp.tws.as_deref(),
        cls_token_embeddings: inp.cls.as_ref(),
    };
    let fast = pooling::pool_varlen(&batch, &inp.spec, &extras).unwrap();
    let values = reference::pool_varlen_f64(&batch, &inp.spec, &extras).unwrap();
    let slow = reference::pool_varlen(&batch, &inp.spec, &extras).unwrap();
    assert_parity(&fast, &values, &slow, c.dtype);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn padded_fast_matches_reference(c in case(6, 12, 37)) {
        check_padded(&c);
    }

    #[test]
    fn varlen_fast_matches_reference(c in case(6, 12, 37)) {
        check_varlen(&c);
    }
}

proptest! {
    // Big enough to take the multi-threaded path (≥ 2^17 accumulated values).
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn large_batches_match_reference(c in case(1, 96, 400), layout in any::<bool>()) {
        let c = Case { b: 16, t: 96, d: c.d.max(300), ..c };
        if layout { check_padded(&c) } else { check_varlen(&c) }
    }
}

#[test]
fn hand_checked_values() {
    // Two sequences, D = 2; the second is left padded with prompt 1.
    let tokens = Tensor::from_slice(
        [2, 3, 2],
        &[
            1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0, 9.0, 1.0, -1.0, 3.0, 1.0,
        ],
    )
    .unwrap();
    let mask = Tensor::from_slice([2, 3], &[1i64, 1, 0, 0, 1, 1]).unwrap();
    let batch = PaddedBatch::new(tokens, Some(&mask)).unwrap();
    let spec = PoolingSpec::new(PoolingMode::ALL.to_vec()).unwrap();
    let out = pooling::pool_padded(&batch, &spec, &PoolExtras::default()).unwrap();
    #[rustfmt::skip]
    let expected = [
        // cls, max, mean, mean_sqrt_len_tokens, weightedmean (w 1, 2), lasttoken
        1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 4.0 / 2f32.sqrt(), 6.0 / 2f32.sqrt(), 7.0 / 3.0, 10.0 / 3.0, 3.0, 4.0,
        1.0, -1.0, 3.0, 1.0, 2.0, 0.0, 4.0 / 2f32.sqrt(), 0.0, 7.0 / 3.0, 1.0 / 3.0, 3.0, 1.0,
    ];
    compare(&out.to_f32_vec().unwrap(), &expected, 1e-6).unwrap();

    let prompt = spec.clone().with_prompt_length(Some(1));
    let out = pooling::pool_padded(&batch, &prompt, &PoolExtras::default()).unwrap();
    #[rustfmt::skip]
    let expected = [
        3.0, 4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0,
        // Row 2: only position 2 counts; its weightedmean weight is 2 + 1 − 1 = 2.
        3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0,
    ];
    compare(&out.to_f32_vec().unwrap(), &expected, 1e-6).unwrap();

    let everything = spec.with_prompt_length(Some(5));
    let out = pooling::pool_padded(&batch, &everything, &PoolExtras::default()).unwrap();
    let v = out.to_f32_vec().unwrap();
    // No position counts: cls is position 0, max −inf, means 0, lasttoken zeros.
    assert_eq!(&v[..4], [1.0, 2.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
    assert!(v[4..12].iter().all(|&x| x == 0.0));
}
