//! Plain f64 pooling, transcribed from the SPEC one mode at a time. Slow and obvious on
//! purpose: it exists to check [`super::fast`] (proptest parity) and is itself checked
//! against the golden cases.

use super::{check_inputs, output_dtype, PoolExtras};
use stk_core::{PaddedBatch, PoolingMode, PoolingSpec, Result, Tensor, VarlenBatch};

/// Pool a padded batch; same contract and output dtype as [`super::pool_padded`].
pub fn pool_padded(batch: &PaddedBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    let values = pool_padded_f64(batch, spec, extras)?;
    let dtype = output_dtype(batch.tokens().dtype(), spec, extras);
    to_tensor(
        batch.batch(),
        spec.modes.len() * batch.dim(),
        &values,
        dtype,
    )
}

/// Pool a varlen batch; same contract and output dtype as [`super::pool_varlen`].
pub fn pool_varlen(batch: &VarlenBatch, spec: &PoolingSpec, extras: &PoolExtras) -> Result<Tensor> {
    let values = pool_varlen_f64(batch, spec, extras)?;
    let dtype = output_dtype(batch.tokens().dtype(), spec, extras);
    to_tensor(
        batch.num_seqs(),
        spec.modes.len() * batch.dim(),
        &values,
        dtype,
    )
}

fn to_tensor(rows: usize, cols: usize, values: &[f64], dtype: stk_core::DType) -> Result<Tensor> {
    let narrowed: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    super::f32_tensor_to([rows, cols], &narrowed, dtype)
}

/// `cls_token_embeddings` (`[B, D]`, checked) as f64 rows, when given.
fn given_cls(extras: &PoolExtras, d: usize) -> Result<Option<Vec<Vec<f64>>>> {
    let Some(t) = extras.cls_token_embeddings else {
        return Ok(None);
    };
    let all: Vec<f64> = t.to_f32_vec()?.into_iter().map(f64::from).collect();
    Ok(Some(all.chunks(d.max(1)).map(<[f64]>::to_vec).collect()))
}

/// The pooled values of a padded batch, `B × (modes × D)` row-major, in f64.
pub fn pool_padded_f64(
    batch: &PaddedBatch,
    spec: &PoolingSpec,
    extras: &PoolExtras,
) -> Result<Vec<f64>> {
    let (b, t, d) = (batch.batch(), batch.seq_len(), batch.dim());
    check_inputs(b, d, spec, extras)?;
    let x: Vec<f64> = batch
        .tokens()
        .to_f32_vec()?
        .into_iter()
        .map(f64::from)
        .collect();
    let token = |i: usize, j: usize| &x[(i * t + j) * d..(i * t + j + 1) * d];
    let p = spec.excluded_prompt();
    let cls_rows = given_cls(extras, d)?;
    let mut out = Vec::with_capacity(b * spec.modes.len() * d);

    for i in 0..b {
        // The original mask (all ones without one), and first_i: its first 1 (0 if none).
        let original: Vec<f64> = match batch.mask() {
            Some(m) => m[i * t..(i + 1) * t].iter().map(|&v| v as f64).collect(),
            None => vec![1.0; t],
        };
        let first = original.iter().position(|&v| v == 1.0).unwrap_or(0);
        // Prompt exclusion: positions j < first_i + p get mask 0.
        let mask: Vec<f64> = (0..t)
            .map(|j| if j < first + p { 0.0 } else { original[j] })
            .collect();
        let count: f64 = mask.iter().sum();
        let divisor = |own: f64| {
            extras
                .token_weights_sum
                .map_or(own, |w| w[i] as f64)
                .max(1e-9)
        };
        let masked_sum = |weight: &dyn Fn(usize) -> f64| -> Vec<f64> {
            (0..d)
                .map(|k| (0..t).map(|j| token(i, j)[k] * weight(j) * mask[j]).sum())
                .collect()
        };

        for &mode in &spec.modes {
            let v: Vec<f64> = match mode {
                PoolingMode::Cls => match &cls_rows {
                    Some(rows) => rows.get(i).cloned().unwrap_or_default(),
                    None if t == 0 => vec![0.0; d],
                    None => {
                        // argmax of the mask: its first 1, position 0 when there is none.
                        let k = mask.iter().position(|&v| v == 1.0).unwrap_or(0);
                        token(i, k).to_vec()
                    }
                },
                PoolingMode::Max => (0..d)
                    .map(|k| {
                        (0..t)
                            .map(|j| {
                                if mask[j] == 1.0 {
                                    token(i, j)[k]
                                } else {
                                    f64::NEG_INFINITY
                                }
                            })
                            .fold(f64::NEG_INFINITY, max_keep_nan)
                    })
                    .collect(),
                PoolingMode::Mean => {
                    let n = divisor(count);
                    masked_sum(&|_| 1.0).into_iter().map(|s| s / n).collect()
                }
                PoolingMode::MeanSqrtLenTokens => {
                    let n = divisor(count).sqrt();
                    masked_sum(&|_| 1.0).into_iter().map(|s| s / n).collect()
                }
                PoolingMode::WeightedMean => {
                    // w_j = j + 1 − first_i, numbered from the original mask.
                    let w = |j: usize| (j + 1) as f64 - first as f64;
                    let weight_sum: f64 = (0..t).map(|j| w(j) * mask[j]).sum();
                    let n = divisor(weight_sum);
                    masked_sum(&w).into_iter().map(|s| s / n).collect()
                }
                PoolingMode::LastToken => match mask.iter().rposition(|&v| v == 1.0) {
                    Some(k) => token(i, k).to_vec(),
                    None if t == 0 => vec![0.0; d],
                    // No real token: the reference multiplies position 0 by its mask (0),
                    // which keeps the signs of that token's values on the zeros.
                    None => token(i, 0).iter().map(|v| v * 0.0).collect(),
                },
            };
            out.extend(v);
        }
    }
    Ok(out)
}

/// The pooled values of a varlen batch, `B × (modes × D)` row-major, in f64.
pub fn pool_varlen_f64(
    batch: &VarlenBatch,
    spec: &PoolingSpec,
    extras: &PoolExtras,
) -> Result<Vec<f64>> {
    let (b, d) = (batch.num_seqs(), batch.dim());
    check_inputs(b, d, spec, extras)?;
    let x: Vec<f64> = batch
        .tokens()
        .to_f32_vec()?
        .into_iter()
        .map(f64::from)
        .collect();
    let p = spec.excluded_prompt();
    let cls_rows = given_cls(extras, d)?;
    let mut out = Vec::with_capacity(b * spec.modes.len() * d);

    for i in 0..b {
        let seq = batch.seq(i);
        let tokens: Vec<&[f64]> = seq.clone().map(|r| &x[r * d..(r + 1) * d]).collect();
        let len = tokens.len();
        // The sequence's first p tokens are the prompt; the rest is pooled.
        let pooled: Vec<(usize, &[f64])> = tokens.iter().copied().enumerate().skip(p).collect();
        let divisor = |own: f64| {
            extras
                .token_weights_sum
                .map_or(own, |w| w[i] as f64)
                .max(1e-9)
        };
        let sum = |weight: &dyn Fn(usize) -> f64| -> Vec<f64> {
            (0..d)
                .map(|k| pooled.iter().map(|&(pos, row)| row[k] * weight(pos)).sum())
                .collect()
        };
        for &mode in &spec.modes {
            let v: Vec<f64> = match mode {
                PoolingMode::Cls => match &cls_rows {
                    Some(rows) => rows.get(i).cloned().unwrap_or_default(),
                    None if len > p => tokens[p].to_vec(),
                    None if len > 0 => tokens[0].to_vec(),
                    // An empty sequence has no token to pick.
                    None => vec![0.0; d],
                },
                PoolingMode::Max => (0..d)
                    .map(|k| {
                        pooled
                            .iter()
                            .map(|(_, row)| row[k])
                            .fold(f64::NEG_INFINITY, max_keep_nan)
                    })
                    .collect(),
                PoolingMode::Mean => {
                    let n = divisor(len as f64 - p as f64);
                    sum(&|_| 1.0).into_iter().map(|s| s / n).collect()
                }
                PoolingMode::MeanSqrtLenTokens => {
                    let n = divisor(len as f64 - p as f64).sqrt();
                    sum(&|_| 1.0).into_iter().map(|s| s / n).collect()
                }
                PoolingMode::WeightedMean => {
                    // Weight: the in-sequence position + 1.
                    let w = |pos: usize| (pos + 1) as f64;
                    let weight_sum: f64 = pooled.iter().map(|&(pos, _)| w(pos)).sum();
                    let n = divisor(weight_sum);
                    sum(&w).into_iter().map(|s| s / n).collect()
                }
                PoolingMode::LastToken => match tokens.last() {
                    Some(row) => row.to_vec(),
                    None => vec![0.0; d],
                },
            };
            out.extend(v);
        }
    }
    Ok(out)
}

/// `max` that propagates NaN, as torch.max does (`f64::max` returns the other operand).
fn max_keep_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}
