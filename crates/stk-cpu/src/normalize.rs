//! Normalize (SPEC "Normalize"): each vector over the last dimension divided by its L2 norm,
//! computed in f32, `x / max(‖x‖₂, 1e-12)`, so a zero vector stays zero.

use crate::features::{Features, Module};
use std::path::Path;
use stk_core::{DType, Error, Result, Tensor};

/// Smallest norm divided by (the reference's `eps`).
const MIN_NORM: f32 = 1e-12;

/// L2-normalize `t` over its last dimension. Output dtype = input dtype (f32, f16 or bf16).
pub fn normalize(t: &Tensor) -> Result<Tensor> {
    let dtype = t.expect_dtype("sentence_embedding", &[DType::F32, DType::F16, DType::BF16])?;
    let d = *t.dims().last().ok_or_else(|| {
        Error::shape(
            "sentence_embedding",
            "at least one dimension, e.g. [B, D]",
            t.dims(),
        )
    })?;
    let mut values = t.to_f32_vec()?;
    if d > 0 {
        values.chunks_exact_mut(d).for_each(normalize_in_place);
    }
    Tensor::from_slice(t.shape().clone(), &values)?.to_dtype(dtype)
}

/// Normalize one vector in place.
pub fn normalize_in_place(v: &mut [f32]) {
    // Eight partial sums: vectorises, and sums long vectors more accurately than one chain.
    let mut lanes = [0.0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x * x;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    let norm = (lanes.iter().sum::<f32>() + tail).sqrt();
    let divisor = if norm < MIN_NORM { MIN_NORM } else { norm };
    for x in v.iter_mut() {
        *x /= divisor;
    }
}

/// model2vec's normalization: `v / (‖v‖ + 1e-32)` (a zero vector stays zero), the norm
/// accumulated in f64 in eight partial sums (column `j` into sum `j % 8`), added in order at the
/// end: independent chains that vectorize, where one chain of dependent f64 additions was 7% of
/// a one-thread encode; in f64 the order moves the norm by far less than an f32 ulp. With AVX2
/// the sums and the division run 8 columns per instruction, the same bits as the portable loop.
pub fn normalize_model2vec(v: &mut [f32]) {
    normalize_model2vec_with(crate::simd::Isa::detect(), v)
}

fn normalize_model2vec_with(isa: crate::simd::Isa, v: &mut [f32]) {
    let lanes = crate::simd::squares_in_f64_lanes(isa, v).unwrap_or_else(|| {
        let mut lanes = [0.0f64; 8];
        for c in v.chunks_exact(8) {
            for (l, &x) in lanes.iter_mut().zip(c) {
                *l += f64::from(x) * f64::from(x);
            }
        }
        lanes
    });
    let tail: f64 = v
        .chunks_exact(8)
        .remainder()
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum();
    let norm = (lanes.iter().sum::<f64>() + tail).sqrt() + 1e-32;
    let norm = norm as f32;
    if !crate::simd::divide_all(isa, v, norm) {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The `Normalize` module; it has no parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Normalize;

impl Normalize {
    /// The module (it has no parameters).
    pub fn new() -> Self {
        Normalize
    }

    /// Load a saved `Normalize` folder. Older versions save no file at all and newer ones an
    /// empty `config.json`; a `config.json` that is present must at least be a JSON object.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(_)) => Ok(Normalize),
                Ok(other) => Err(Error::config(
                    &path,
                    format!("expected a JSON object, got {other}"),
                )),
                Err(e) => Err(Error::config(&path, format!("not valid JSON: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Normalize),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

impl Module for Normalize {
    fn kind(&self) -> &'static str {
        "Normalize"
    }

    /// Normalizes `sentence_embedding` in place.
    fn forward(&self, mut features: Features) -> Result<Features> {
        let emb = features.sentence_embedding.as_ref().ok_or_else(|| {
            Error::invalid("Normalize needs sentence_embedding from the module before it")
        })?;
        features.sentence_embedding = Some(normalize(emb)?);
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use stk_core::testing::expect_err;

    /// The SIMD and portable model2vec normalizations give the same bits, and the value of an
    /// f64 reference within an f32 rounding step; a zero vector stays zero.
    #[test]
    fn model2vec_normalization_is_the_same_on_every_path() {
        use crate::simd::Isa;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for len in [0usize, 1, 7, 8, 9, 64, 255, 256, 300] {
            let v: Vec<f32> = (0..len).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
            let (mut simd, mut portable) = (v.clone(), v.clone());
            normalize_model2vec_with(Isa::detect(), &mut simd);
            normalize_model2vec_with(Isa::Portable, &mut portable);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&simd), bits(&portable), "length {len}");
            let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() + 1e-32;
            for (&got, &x) in simd.iter().zip(&v) {
                let want = f64::from(x) / norm;
                assert!((f64::from(got) - want).abs() <= 1.2e-7 * want.abs().max(1e-30));
            }
        }
        let mut zero = vec![0.0f32; 16];
        normalize_model2vec(&mut zero);
        assert!(zero.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn unit_norm_and_zero_stays_zero() {
        let t = Tensor::from_slice([3, 3], &[3.0f32, 4.0, 0.0, 0.0, 0.0, 0.0, 1e-30, 0.0, 0.0])
            .unwrap();
        let out = normalize(&t).unwrap();
        let v = out.as_slice::<f32>().unwrap();
        assert_eq!(&v[..3], [0.6, 0.8, 0.0]);
        assert_eq!(&v[3..6], [0.0, 0.0, 0.0]);
        // Below the epsilon the vector is divided by 1e-12, not by its norm.
        assert!((v[6] - 1e-18).abs() < 1e-24, "{}", v[6]);

        let h = t.to_dtype(DType::F16).unwrap();
        let out = normalize(&h).unwrap();
        assert_eq!(out.dtype(), DType::F16);
        assert_eq!(out.as_slice::<f16>().unwrap()[1], f16::from_f32(0.8));
        assert!(out.to_f32_vec().unwrap().iter().all(|v| !v.is_nan()));
    }

    #[test]
    fn long_vectors_and_bad_inputs() {
        let v: Vec<f32> = (0..37).map(|i| i as f32 - 18.0).collect();
        let out = normalize(&Tensor::from_slice([37], &v).unwrap())
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let norm: f32 = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        let empty = normalize(&Tensor::zeros([0, 4], DType::F32).unwrap()).unwrap();
        assert_eq!(empty.dims(), [0, 4]);
        expect_err(
            normalize(&Tensor::zeros([2, 4], DType::I64).unwrap()),
            |e| matches!(e, Error::DType { .. }),
            &["sentence_embedding", "got i64"],
        );
        expect_err(
            normalize(&Tensor::zeros(Vec::<usize>::new(), DType::F32).unwrap()),
            |e| matches!(e, Error::Shape { .. }),
            &["sentence_embedding", "at least one dimension"],
        );
    }

    #[test]
    fn module_loads_with_or_without_config() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(Normalize::from_dir(dir).unwrap(), Normalize);
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert!(Normalize::from_dir(dir).is_ok());
        std::fs::write(dir.join("config.json"), "[").unwrap();
        assert!(matches!(
            Normalize::from_dir(dir),
            Err(Error::Config { .. })
        ));
    }
}
