//! Pooling: token embeddings to one vector per sequence (SPEC "Pooling").
//!
//! * [`pool_padded`] / [`pool_varlen`]: the fast one-pass implementation ([`fast`]), which is
//!   what everything else (the [`Pooling`] module, the facade, the CLI) calls.
//! * [`reference`](mod@reference): a plain f64 transcription of the SPEC, used only to check
//!   the fast path.
//!
//! Both share the input checks and the output-dtype rule of this file, so they can only differ
//! in the arithmetic.

pub mod fast;
mod module;
pub mod reference;

pub use module::Pooling;

use stk_core::{
    validate, DType, Error, PaddedBatch, PoolingSpec, Result, SpanBatch, Tensor, VarlenBatch,
};

/// Optional inputs of a pooling layer besides the token embeddings (shared with the GPU).
pub use stk_core::validate::PoolExtras;

/// Pool a padded batch (`[B, T, D]` + mask) into `[B, modes × D]`, the modes' results side by
/// side in `spec` order, in the tokens' dtype. Errors when an input of `extras` does not fit
/// the batch (its shape or dtype).
///
/// # Example
///
/// The mean and the max of two sequences padded to 3 tokens of width 2:
///
/// ```rust
/// use stk_core::{PaddedBatch, PoolingMode, PoolingSpec, Tensor};
/// use stk_cpu::{pool_padded, PoolExtras};
///
/// #[rustfmt::skip]
/// let tokens = Tensor::from_vec([2, 3, 2], vec![
///     1.0f32, 2.0,  3.0, 4.0,  9.0, 9.0, // two real tokens, then padding
///     5.0, 6.0,     0.0, 0.0,  0.0, 0.0, // one real token
/// ])?;
/// let mask = Tensor::from_vec([2, 3], vec![1i64, 1, 0, 1, 0, 0])?;
/// let batch = PaddedBatch::new(tokens, Some(&mask))?;
/// let spec = PoolingSpec::new(vec![PoolingMode::Mean, PoolingMode::Max])?;
/// let out = pool_padded(&batch, &spec, &PoolExtras::default())?;
/// assert_eq!(out.dims(), [2, 4]); // [B, 2 modes × D]
/// assert_eq!(out.to_f32_vec()?, [2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 5.0, 6.0]);
/// # Ok::<(), stk_core::Error>(())
/// ```
pub fn pool_padded(batch: &PaddedBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    fast::pool_padded(batch, spec, extras)
}

/// Pool a varlen batch (`[N, D]` + `cu_seq_lens`) into `[B, modes × D]`.
pub fn pool_varlen(batch: &VarlenBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    fast::pool_varlen(batch, spec, extras)
}

/// Pool token spans (late chunking: `[N, D]` + `S` spans `[start, end)`) into `[S, modes × D]`:
/// row `s` is what the reference's Pooling gives for span `s`'s slice with an all-ones mask.
/// A prompt length is refused ([`stk_core::validate::span_spec`]).
pub fn pool_spans(batch: &SpanBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    fast::pool_spans(batch, spec, extras)
}

/// The dtype of the pooled output ([`validate::pool_output_dtype`], the rule every backend uses).
pub fn output_dtype(input: DType, spec: &PoolingSpec, extras: &PoolExtras) -> DType {
    validate::pool_output_dtype(
        input,
        spec,
        extras.token_weights_sum.is_some(),
        extras.cls_token_embeddings.map(Tensor::dtype),
    )
}

/// Checks shared by the fast path, the reference and the GPU ([`validate::pool_inputs`]): a
/// non-empty mode list and extras that match the batch (`b` sequences of width `d`).
pub(crate) fn check_inputs(
    b: usize,
    d: usize,
    spec: &PoolingSpec,
    extras: &PoolExtras,
) -> Result<()> {
    validate::pool_extras(b, d, spec, extras)
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
    use stk_core::PoolingMode;

    /// Span pooling against its definition: the reference Pooling applied to each span's slice
    /// as a one-sequence padded batch with an all-ones mask.
    #[test]
    fn spans_pool_like_each_slice_alone() {
        let (n, d) = (9usize, 5usize);
        let values: Vec<f32> = (0..n * d)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0)
            .collect();
        // Overlapping, gapped, single-token and whole-array spans.
        let spans = [[0i64, 9], [2, 3], [1, 6], [4, 9], [8, 9], [0, 1]];
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let tokens = Tensor::from_vec([1, n, d], values.clone())
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            for prompt in [None, Some(0)] {
                let spec = PoolingSpec::new(PoolingMode::ALL.to_vec())
                    .unwrap()
                    .with_prompt_length(prompt);
                let batch = SpanBatch::new(tokens.clone(), &spans).unwrap();
                let got = pool_spans(&batch, &spec, &PoolExtras::default()).unwrap();
                assert_eq!(got.dims(), &[spans.len(), 6 * d]);
                assert_eq!(got.dtype(), dtype);
                let got = got.to_f32_vec().unwrap();
                let rows = batch.tokens();
                let row_bytes = d * dtype.size_in_bytes();
                for (s, &[start, end]) in spans.iter().enumerate() {
                    let (start, end) = (start as usize, end as usize);
                    let len = end - start;
                    let slice = Tensor::from_bytes(
                        [1, len, d],
                        dtype,
                        &rows.bytes()[start * row_bytes..end * row_bytes],
                    )
                    .unwrap();
                    let ones = Tensor::from_vec([1, len], vec![1i64; len]).unwrap();
                    let alone = PaddedBatch::new(slice, Some(&ones)).unwrap();
                    let want = reference::pool_padded(&alone, &spec, &PoolExtras::default())
                        .unwrap()
                        .to_f32_vec()
                        .unwrap();
                    let row = &got[s * 6 * d..(s + 1) * 6 * d];
                    for (k, (&g, &w)) in row.iter().zip(&want).enumerate() {
                        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
                        // Equal covers the infinities (max over a span the prompt empties).
                        assert!(
                            g == w || (g - w).abs() <= tol * w.abs().max(1.0),
                            "{dtype} prompt {prompt:?} span {s} value {k}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn spans_checks_extras_like_other_layouts() {
        let tokens = Tensor::zeros([4, 2], DType::F32).unwrap();
        let batch = SpanBatch::new(tokens, &[[0, 2], [1, 4]]).unwrap();
        let spec = PoolingSpec::new(vec![PoolingMode::Mean]).unwrap();
        let bad = PoolExtras {
            token_weights_sum: Some(&[1.0]),
            cls_token_embeddings: None,
        };
        assert!(matches!(
            pool_spans(&batch, &spec, &bad),
            Err(Error::Shape { .. })
        ));
        // No prompt exclusion on spans.
        let prompt = spec.clone().with_prompt_length(Some(1));
        assert!(matches!(
            pool_spans(&batch, &prompt, &PoolExtras::default()),
            Err(Error::InvalidArgument(_))
        ));
    }
}
