//! Pooling: token embeddings to one vector per sequence (SPEC "Pooling").
//!
//! * [`pool_padded`] / [`pool_varlen`]: the fast one-pass implementation ([`fast`]), which is
//!   what everything else (the [`Pooling`] module, the facade, the CLI) calls.
//! * [`reference`]: a plain f64 transcription of the SPEC, used only to check the fast path.
//!
//! Both share the input checks and the output-dtype rule of this file, so they can only differ
//! in the arithmetic.

pub mod fast;
mod module;
pub mod reference;

pub use module::Pooling;

use stk_core::{DType, Error, PaddedBatch, PoolingMode, PoolingSpec, Result, Tensor, VarlenBatch};

/// Optional inputs of a pooling layer besides the token embeddings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolExtras<'a> {
    /// `B` values (set by WordWeights): the divisor of `mean`, `mean_sqrt_len_tokens` and
    /// `weightedmean` instead of the token count / weight sum.
    pub token_weights_sum: Option<&'a [f32]>,
    /// `[B, D]` vectors that `cls` returns instead of a token of the sequence.
    pub cls_token_embeddings: Option<&'a Tensor>,
}

/// Pool a padded batch (`[B, T, D]` + mask) into `[B, modes × D]`.
pub fn pool_padded(batch: &PaddedBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    fast::pool_padded(batch, spec, extras)
}

/// Pool a varlen batch (`[N, D]` + `cu_seq_lens`) into `[B, modes × D]`.
pub fn pool_varlen(batch: &VarlenBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    fast::pool_varlen(batch, spec, extras)
}

/// Modes whose divisor `token_weights_sum` replaces.
fn uses_token_weights(mode: PoolingMode) -> bool {
    matches!(
        mode,
        PoolingMode::Mean | PoolingMode::MeanSqrtLenTokens | PoolingMode::WeightedMean
    )
}

/// The dtype of the pooled output. The reference computes each mode in the input dtype and
/// concatenates; torch promotes mixed dtypes, and every promotion among f32/f16/bf16 that
/// involves two different types gives f32. So the output is the input dtype unless an f32
/// `token_weights_sum` divides a mode, or `cls` takes `cls_token_embeddings` of another dtype.
pub fn output_dtype(input: DType, spec: &PoolingSpec, extras: &PoolExtras) -> DType {
    let mut out = input;
    let mut promote = |d: DType| {
        if d != out {
            out = DType::F32;
        }
    };
    if extras.token_weights_sum.is_some() && spec.modes.iter().any(|&m| uses_token_weights(m)) {
        promote(DType::F32);
    }
    if let Some(cls) = extras.cls_token_embeddings {
        if spec.modes.contains(&PoolingMode::Cls) {
            promote(cls.dtype());
        }
    }
    out
}

/// Checks shared by the fast path and the reference: a non-empty mode list and extras that
/// match the batch (`b` sequences of width `d`).
pub(crate) fn check_inputs(
    b: usize,
    d: usize,
    spec: &PoolingSpec,
    extras: &PoolExtras,
) -> Result<()> {
    if spec.modes.is_empty() {
        return Err(Error::invalid("a pooling layer needs at least one mode"));
    }
    if let Some(w) = extras.token_weights_sum {
        if w.len() != b {
            return Err(Error::shape(
                "token_weights_sum",
                format!("[{b}] (one value per sequence)"),
                &[w.len()],
            ));
        }
    }
    if let Some(cls) = extras.cls_token_embeddings {
        cls.expect_dtype(
            "cls_token_embeddings",
            &[DType::F32, DType::F16, DType::BF16],
        )?;
        if cls.dims() != [b, d] {
            return Err(Error::shape(
                "cls_token_embeddings",
                format!("[{b}, {d}]"),
                cls.dims(),
            ));
        }
    }
    Ok(())
}

/// Narrow f32 values to a float dtype (round to nearest).
pub(crate) fn f32_tensor_to(dims: [usize; 2], values: &[f32], dtype: DType) -> Result<Tensor> {
    use half::slice::HalfFloatSliceExt;
    match dtype {
        DType::F32 => Tensor::from_slice(dims, values),
        DType::F16 => {
            let mut out = vec![half::f16::ZERO; values.len()];
            out.convert_from_f32_slice(values);
            Tensor::from_slice(dims, &out)
        }
        DType::BF16 => {
            let mut out = vec![half::bf16::ZERO; values.len()];
            out.convert_from_f32_slice(values);
            Tensor::from_slice(dims, &out)
        }
        other => Err(Error::dtype("pooled output", "f32, f16 or bf16", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(modes: &[PoolingMode]) -> PoolingSpec {
        PoolingSpec::new(modes.to_vec()).unwrap()
    }

    #[test]
    fn output_dtype_promotes_only_when_needed() {
        let w = [1.0f32];
        let tws = PoolExtras {
            token_weights_sum: Some(&w),
            cls_token_embeddings: None,
        };
        let none = PoolExtras::default();
        assert_eq!(
            output_dtype(DType::F16, &spec(&[PoolingMode::Mean]), &none),
            DType::F16
        );
        assert_eq!(
            output_dtype(DType::F16, &spec(&[PoolingMode::Mean]), &tws),
            DType::F32
        );
        assert_eq!(
            output_dtype(DType::BF16, &spec(&[PoolingMode::Max]), &tws),
            DType::BF16
        );
        let cls = Tensor::zeros([1, 4], DType::F16).unwrap();
        let with_cls = PoolExtras {
            token_weights_sum: None,
            cls_token_embeddings: Some(&cls),
        };
        assert_eq!(
            output_dtype(DType::F16, &spec(&[PoolingMode::Cls]), &with_cls),
            DType::F16
        );
        assert_eq!(
            output_dtype(DType::BF16, &spec(&[PoolingMode::Cls]), &with_cls),
            DType::F32
        );
        assert_eq!(
            output_dtype(DType::BF16, &spec(&[PoolingMode::Max]), &with_cls),
            DType::BF16
        );
    }

    #[test]
    fn extras_are_checked() {
        let w = [1.0f32, 2.0];
        let e = PoolExtras {
            token_weights_sum: Some(&w),
            cls_token_embeddings: None,
        };
        assert!(matches!(
            check_inputs(3, 4, &spec(&[PoolingMode::Mean]), &e),
            Err(Error::Shape { .. })
        ));
        assert!(check_inputs(2, 4, &spec(&[PoolingMode::Mean]), &e).is_ok());
        let cls = Tensor::zeros([2, 5], DType::F32).unwrap();
        let e = PoolExtras {
            token_weights_sum: None,
            cls_token_embeddings: Some(&cls),
        };
        assert!(matches!(
            check_inputs(2, 4, &spec(&[PoolingMode::Cls]), &e),
            Err(Error::Shape { .. })
        ));
        let ints = Tensor::zeros([2, 4], DType::I32).unwrap();
        let e = PoolExtras {
            token_weights_sum: None,
            cls_token_embeddings: Some(&ints),
        };
        assert!(matches!(
            check_inputs(2, 4, &spec(&[PoolingMode::Cls]), &e),
            Err(Error::DType { .. })
        ));
        let empty = PoolingSpec {
            modes: vec![],
            prompt_length: None,
        };
        assert!(check_inputs(2, 4, &empty, &PoolExtras::default()).is_err());
    }
}
