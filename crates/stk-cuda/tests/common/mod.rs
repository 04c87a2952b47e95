//! Shared by the stk-cuda tests: the golden-case helpers, the one allowed skip (no CUDA
//! driver or device), golden pooling inputs, and plain f64 references written from SPEC.md.
#![allow(dead_code)]

#[path = "../../../../tests/lib.rs"]
pub mod golden;

pub mod checks;

use golden::GoldenCase;
use stk_core::{
    DType, PaddedBatch, PoolingMode, PoolingSpec, SafetensorsFile, SpanBatch, Tensor, VarlenBatch,
};

// `golden::repo_root` honours `STK_REPO_ROOT`, so binaries copied to the GPU machine (see
// `scripts/gpu/run.sh`) find the checkout they are pointed at.
#[allow(unused_imports)] // each test binary uses a different part of this module
pub use golden::{golden_cases, repo_root};

/// The inputs and expected output of a golden `pooling` case.
pub struct PoolingCase {
    pub name: String,
    pub layout: Layout,
    pub spec: PoolingSpec,
    pub token_weights_sum: Option<Vec<f32>>,
    pub expected: Tensor,
    pub tolerance: f32,
}

pub enum Layout {
    Padded(PaddedBatch),
    Varlen(VarlenBatch),
}

pub fn tensors(case: &GoldenCase) -> SafetensorsFile {
    SafetensorsFile::open(case.dir.join("tensors.safetensors")).unwrap()
}

pub fn pooling_case(case: &GoldenCase) -> PoolingCase {
    let c = &case.case;
    let file = tensors(case);
    let tokens = file.get("token_embeddings").unwrap();
    let modes: Vec<PoolingMode> = c["pooling_mode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().parse().unwrap())
        .collect();
    let include_prompt = c["include_prompt"].as_bool().unwrap_or(true);
    let prompt = c["prompt_length"].as_u64().map(|p| p as usize);
    let spec = PoolingSpec::new(modes)
        .unwrap()
        .with_prompt_length(if include_prompt { None } else { prompt });
    let layout = match c["layout"].as_str().unwrap() {
        "varlen" => {
            let cu = file.get("cu_seq_lens_q").unwrap().to_i64_vec().unwrap();
            Layout::Varlen(VarlenBatch::new(tokens, &cu).unwrap())
        }
        _ => {
            let mask = file.get_opt("attention_mask").unwrap();
            Layout::Padded(PaddedBatch::new(tokens, mask.as_ref()).unwrap())
        }
    };
    let token_weights_sum = file
        .get_opt("token_weights_sum")
        .unwrap()
        .map(|t| t.to_f32_vec().unwrap());
    PoolingCase {
        name: case.name.clone(),
        layout,
        spec,
        token_weights_sum,
        expected: file.get("expected").unwrap(),
        tolerance: golden::tolerance_for(c["dtype"].as_str().unwrap_or("f32"), false),
    }
}

/// Round each value to `dtype` (the output type of a reference computed in f32/f64).
pub fn round_to(values: &[f64], dtype: DType) -> Vec<f32> {
    let t = Tensor::from_vec([values.len()], values.iter().map(|&v| v as f32).collect()).unwrap();
    t.to_dtype(dtype).unwrap().to_f32_vec().unwrap()
}

/// The CPU oracle (stk-cpu's plain f64 transcription of SPEC "Pooling"), before rounding.
pub fn pool_reference_f64(
    layout: &Layout,
    spec: &PoolingSpec,
    tws: Option<&[f32]>,
    cls: Option<&Tensor>,
) -> Vec<f64> {
    let extras = stk_cpu::PoolExtras {
        token_weights_sum: tws,
        cls_token_embeddings: cls,
    };
    match layout {
        Layout::Padded(b) => {
            stk_cpu::pooling::reference::pool_padded_f64(b, spec, &extras).unwrap()
        }
        Layout::Varlen(b) => {
            stk_cpu::pooling::reference::pool_varlen_f64(b, spec, &extras).unwrap()
        }
    }
}

/// `x / max(‖x‖ + add, floor)` per row of width `d`, in f64.
pub fn normalize_reference(x: &[f64], d: usize, add: f64, floor: f64) -> Vec<f64> {
    if d == 0 {
        return Vec::new();
    }
    x.chunks(d)
        .flat_map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            // A NaN norm stays NaN, as torch's clamp_min keeps it.
            let div = if norm + add < floor {
                floor
            } else {
                norm + add
            };
            row.iter().map(move |v| v / div).collect::<Vec<_>>()
        })
        .collect()
}

/// Compare with the golden rule; panics naming the case on the first mismatch.
pub fn assert_close(name: &str, got: &[f32], expected: &[f32], tol: f32) {
    if let Err(e) = golden::compare(got, expected, tol) {
        panic!("{name}: {e}");
    }
}

/// A random pooling problem (padded layout) for property tests.
#[derive(Debug, Clone)]
pub struct PaddedProblem {
    pub dims: [usize; 3],
    pub dtype: DType,
    pub values: Vec<f32>,
    pub mask: Option<Vec<u8>>,
    pub modes: Vec<PoolingMode>,
    pub prompt: Option<usize>,
    pub tws: Option<Vec<f32>>,
    pub cls: Option<Vec<f32>>,
    pub cls_dtype: DType,
    pub normalize: bool,
}

impl PaddedProblem {
    pub fn batch(&self) -> PaddedBatch {
        let t = Tensor::from_vec(self.dims.to_vec(), self.values.clone())
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap();
        PaddedBatch::with_mask_values(t, self.mask.clone()).unwrap()
    }
    pub fn spec(&self) -> PoolingSpec {
        PoolingSpec::new(self.modes.clone())
            .unwrap()
            .with_prompt_length(self.prompt)
    }
    /// cls embeddings in their own dtype (which may differ from the tokens').
    pub fn cls_tensor(&self) -> Option<Tensor> {
        let [b, _, d] = self.dims;
        self.cls.as_ref().map(|c| {
            Tensor::from_vec([b, d], c.clone())
                .unwrap()
                .to_dtype(self.cls_dtype)
                .unwrap()
        })
    }
}

/// A random pooling problem (varlen layout).
#[derive(Debug, Clone)]
pub struct VarlenProblem {
    pub lens: Vec<usize>,
    pub dim: usize,
    pub dtype: DType,
    pub values: Vec<f32>,
    pub modes: Vec<PoolingMode>,
    pub prompt: Option<usize>,
    pub normalize: bool,
}

impl VarlenProblem {
    pub fn batch(&self) -> VarlenBatch {
        let n: usize = self.lens.iter().sum();
        let t = Tensor::from_vec([1, n, self.dim], self.values.clone())
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap();
        let mut cu = vec![0i64];
        for &l in &self.lens {
            cu.push(cu.last().unwrap() + l as i64);
        }
        VarlenBatch::new(t, &cu).unwrap()
    }
    pub fn spec(&self) -> PoolingSpec {
        PoolingSpec::new(self.modes.clone())
            .unwrap()
            .with_prompt_length(self.prompt)
    }
}

/// A random span-pooling problem (late chunking): `n` token rows, spans over them.
#[derive(Debug, Clone)]
pub struct SpanProblem {
    pub n: usize,
    pub dim: usize,
    pub dtype: DType,
    pub values: Vec<f32>,
    pub spans: Vec<[i64; 2]>,
    pub modes: Vec<PoolingMode>,
    pub prompt: Option<usize>,
    pub normalize: bool,
}

impl SpanProblem {
    pub fn tokens(&self) -> Tensor {
        Tensor::from_vec([self.n, self.dim], self.values.clone())
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap()
    }
    pub fn batch(&self) -> SpanBatch {
        SpanBatch::new(self.tokens(), &self.spans).unwrap()
    }
    /// The reference's view of the spans: each span's rows copied out as one sequence of a
    /// varlen batch (sentence-transformers Pooling on each slice with an all-ones mask).
    pub fn as_sequences(&self) -> VarlenBatch {
        let rows = self.tokens();
        let row_bytes = self.dim * self.dtype.size_in_bytes();
        let mut bytes = Vec::new();
        let mut cu = vec![0i64];
        for &[s, e] in &self.spans {
            bytes.extend_from_slice(&rows.bytes()[s as usize * row_bytes..e as usize * row_bytes]);
            cu.push(cu.last().unwrap() + e - s);
        }
        let total = *cu.last().unwrap() as usize;
        let t = Tensor::from_bytes([total, self.dim], self.dtype, &bytes).unwrap();
        VarlenBatch::new(t, &cu).unwrap()
    }
    pub fn spec(&self) -> PoolingSpec {
        PoolingSpec::new(self.modes.clone())
            .unwrap()
            .with_prompt_length(self.prompt)
    }
}

pub mod strategies {
    use super::*;
    use proptest::prelude::*;

    pub fn float_dtype() -> impl Strategy<Value = DType> {
        prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)]
    }

    /// Row widths that reach the 16-byte and the 1-element kernels, one warp or several, and
    /// rows longer than one block's chunk.
    pub fn pool_dim() -> impl Strategy<Value = usize> {
        prop_oneof![4 => 1usize..13, 2 => Just(16), 2 => Just(24), 2 => Just(64), 1 => Just(96), 1 => Just(1030)]
    }

    /// Mostly short sequences; sometimes long enough that every group of a block's threads
    /// runs full unrolled steps (up to 16 groups of 4 rows each).
    pub fn seq_len() -> impl Strategy<Value = usize> {
        prop_oneof![4 => 0usize..12, 1 => 40usize..80]
    }

    /// The longest sequence used with rows of width `d`.
    fn seq_cap(d: usize) -> usize {
        match d {
            0..=96 => usize::MAX,
            97..=512 => 12,
            _ => 3,
        }
    }

    pub fn modes() -> impl Strategy<Value = Vec<PoolingMode>> {
        prop::collection::vec(prop::sample::select(PoolingMode::ALL.to_vec()), 1..4)
    }

    fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(-4.0f32..4.0, n)
    }

    /// Masks: none, right-padded, left-padded, or arbitrary 0/1 (holes).
    fn mask(b: usize, t: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
        let lens = prop::collection::vec(0..=t, b);
        prop_oneof![
            1 => Just(None),
            2 => lens.clone().prop_map(move |l| Some(l.iter().flat_map(|&n| (0..t).map(move |j| u8::from(j < n))).collect())),
            2 => lens.prop_map(move |l| Some(l.iter().flat_map(|&n| (0..t).map(move |j| u8::from(j >= t - n))).collect())),
            2 => prop::collection::vec(0u8..2, b * t).prop_map(Some),
        ]
    }

    pub fn padded_problem() -> impl Strategy<Value = PaddedProblem> {
        (
            1usize..5,
            seq_len(),
            pool_dim(),
            (float_dtype(), float_dtype()),
            modes(),
            prop::option::of(0usize..4),
            any::<(bool, bool, bool)>(),
        )
            .prop_flat_map(
                |(b, t, d, (dtype, cls_dtype), modes, prompt, (with_tws, with_cls, normalize))| {
                    // Keep big problems small: long rows only with short sequences.
                    let t = t.min(seq_cap(d));
                    let tws = if with_tws {
                        prop::option::of(prop::collection::vec(0.1f32..10.0, b)).boxed()
                    } else {
                        Just(None).boxed()
                    };
                    let cls = if with_cls {
                        prop::option::of(values(b * d)).boxed()
                    } else {
                        Just(None).boxed()
                    };
                    (values(b * t * d), mask(b, t), tws, cls).prop_map(
                        move |(values, mask, tws, cls)| PaddedProblem {
                            dims: [b, t, d],
                            dtype,
                            values,
                            mask,
                            modes: modes.clone(),
                            prompt,
                            tws,
                            cls,
                            cls_dtype,
                            normalize,
                        },
                    )
                },
            )
    }

    pub fn varlen_problem() -> impl Strategy<Value = VarlenProblem> {
        (
            prop::collection::vec(seq_len(), 1..5),
            pool_dim(),
            float_dtype(),
            modes(),
            prop::option::of(0usize..4),
            any::<bool>(),
        )
            .prop_flat_map(|(lens, d, dtype, modes, prompt, normalize)| {
                let lens: Vec<usize> = lens.iter().map(|&l| l.min(seq_cap(d))).collect();
                let n: usize = lens.iter().sum();
                values(n * d).prop_map(move |values| VarlenProblem {
                    lens: lens.clone(),
                    dim: d,
                    dtype,
                    values,
                    modes: modes.clone(),
                    prompt,
                    normalize,
                })
            })
    }

    /// Spans over `n` rows: single tokens, the whole array, overlapping and gapped ones (no
    /// prompt: spans refuse one).
    pub fn span_problem() -> impl Strategy<Value = SpanProblem> {
        (
            1usize..40,
            pool_dim(),
            float_dtype(),
            modes(),
            prop::option::of(Just(0usize)),
            any::<bool>(),
        )
            .prop_flat_map(|(n, d, dtype, modes, prompt, normalize)| {
                let n = n.min(seq_cap(d).max(1));
                let span = (0..n).prop_flat_map(move |s| (Just(s), s + 1..=n));
                let spans = prop::collection::vec(span, 1..6).prop_map(move |mut v| {
                    // Always one whole-array span, so the longest case is covered.
                    v.push((0, n));
                    v.into_iter()
                        .map(|(s, e)| [s as i64, e as i64])
                        .collect::<Vec<_>>()
                });
                (values(n * d), spans).prop_map(move |(values, spans)| SpanProblem {
                    n,
                    dim: d,
                    dtype,
                    values,
                    spans,
                    modes: modes.clone(),
                    prompt,
                    normalize,
                })
            })
    }
}

// The tests use it; the kernel_sim example, which shares this module, does not.
#[allow(unused_imports)]
pub use stk_core::testing::expect_err;
