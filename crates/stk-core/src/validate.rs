//! The input checks every backend shares: pooling extras and output dtype, embedding tables,
//! weighted layer pooling. The CPU (stk-cpu) and the GPU (stk-cuda) both call these, so the
//! two cannot accept different inputs (they did once: the GPU took tables of width 0).
//!
//! Layout checks (mask values, `cu_seq_lens`, spans, token ids) live with the layout types in
//! `batch.rs`; the checks here relate a layout to the other inputs of one operation.

use crate::{DType, Error, PoolingMode, PoolingSpec, Result, Tensor};

/// The float dtypes pooling, normalize and layer pooling read.
pub const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// Optional inputs of a pooling layer besides the token embeddings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolExtras<'a> {
    /// `B` values (set by WordWeights): the divisor of `mean`, `mean_sqrt_len_tokens` and
    /// `weightedmean` instead of the token count / weight sum; the output is then f32.
    pub token_weights_sum: Option<&'a [f32]>,
    /// `[B, D]` vectors that `cls` returns instead of a token of the sequence.
    pub cls_token_embeddings: Option<&'a Tensor>,
}

/// Modes whose divisor `token_weights_sum` replaces.
pub fn uses_token_weights(mode: PoolingMode) -> bool {
    matches!(
        mode,
        PoolingMode::Mean | PoolingMode::MeanSqrtLenTokens | PoolingMode::WeightedMean
    )
}

/// The dtype of the pooled output. The reference computes each mode in the input dtype and
/// concatenates; torch promotes mixed dtypes, and every promotion among f32/f16/bf16 that
/// involves two different types gives f32. So the output is the input dtype unless an f32
/// `token_weights_sum` divides a mode, or `cls` takes `cls_token_embeddings` of another dtype.
pub fn pool_output_dtype(
    input: DType,
    spec: &PoolingSpec,
    token_weights_sum: bool,
    cls_dtype: Option<DType>,
) -> DType {
    let mut out = input;
    let mut promote = |d: DType| {
        if d != out {
            out = DType::F32;
        }
    };
    if token_weights_sum && spec.modes.iter().any(|&m| uses_token_weights(m)) {
        promote(DType::F32);
    }
    if let Some(cls) = cls_dtype {
        if spec.modes.contains(&PoolingMode::Cls) {
            promote(cls);
        }
    }
    out
}

/// A pooling layer's inputs checked against each other: `batch` sequences of width `dim`
/// in `input` dtype, the spec and the extras. Returns the output dtype.
pub fn pool_inputs(
    batch: usize,
    dim: usize,
    input: DType,
    spec: &PoolingSpec,
    extras: &PoolExtras<'_>,
) -> Result<DType> {
    if !FLOATS.contains(&input) {
        return Err(Error::dtype("token_embeddings", "f32, f16 or bf16", input));
    }
    pool_extras(batch, dim, spec, extras)?;
    Ok(pool_output_dtype(
        input,
        spec,
        extras.token_weights_sum.is_some(),
        extras.cls_token_embeddings.map(Tensor::dtype),
    ))
}

/// [`pool_inputs`] without the dtype check (for callers whose layout type already made it).
pub fn pool_extras(
    batch: usize,
    dim: usize,
    spec: &PoolingSpec,
    extras: &PoolExtras<'_>,
) -> Result<()> {
    if spec.modes.is_empty() {
        return Err(Error::invalid("a pooling layer needs at least one mode"));
    }
    if let Some(w) = extras.token_weights_sum {
        if w.len() != batch {
            return Err(Error::shape(
                "token_weights_sum",
                format!("[{batch}] (one value per sequence)"),
                &[w.len()],
            ));
        }
    }
    if let Some(cls) = extras.cls_token_embeddings {
        cls.expect_dtype("cls_token_embeddings", &FLOATS)?;
        if cls.dims() != [batch, dim] {
            return Err(Error::shape(
                "cls_token_embeddings",
                format!("[{batch}, {dim}]"),
                cls.dims(),
            ));
        }
    }
    Ok(())
}

/// Span pooling takes no prompt exclusion: a span is a chunk of a longer text, not a
/// sequence that starts with the prompt (and for a span shorter than the prompt the reference's
/// `lasttoken` differs between the padded and varlen readings).
pub fn span_spec(spec: &PoolingSpec) -> Result<()> {
    if spec.excluded_prompt() > 0 {
        return Err(Error::invalid(format!(
            "prompt length {} with spans: span pooling excludes no prompt",
            spec.excluded_prompt()
        )));
    }
    Ok(())
}

/// An embedding-bag table (`[rows, D]`) with its optional id → row `mapping` and per-id
/// `weights`, checked against each other.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    /// Table rows.
    pub rows: usize,
    /// Row width, at least 1.
    pub dim: usize,
    /// Token ids the table answers: the mapping's (or weights') length, else `rows`.
    pub vocab: usize,
    /// `vocab` entries, each `< rows`.
    pub mapping: Option<Vec<u32>>,
    /// `vocab` entries.
    pub weights: Option<Vec<f32>>,
}

/// Table element types every backend reads (int8 values are used as they are, unscaled).
pub const TABLE_DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::I8];

impl EmbeddingTable {
    /// `table [rows, D]` (f32, f16, bf16 or i8, D > 0, rows < 2^31 so a row index fits every
    /// backend's 32-bit index), `mapping [V]` (i32/i64, each `< rows`), `weights [V]` (float;
    /// one per table row when there is no mapping). When both are given they have one length.
    pub fn check(
        table: &Tensor,
        mapping: Option<&Tensor>,
        weights: Option<&Tensor>,
    ) -> Result<Self> {
        table.expect_dtype("embedding table", &TABLE_DTYPES)?;
        let dims = table.expect_rank("embedding table [rows, dim]", 2)?;
        let (rows, dim) = (dims[0], dims[1]);
        if dim == 0 || dim > i32::MAX as usize {
            return Err(Error::shape(
                "embedding table",
                format!("[rows, dim] with 0 < dim <= {}", i32::MAX),
                dims,
            ));
        }
        if rows > i32::MAX as usize {
            return Err(Error::shape(
                "embedding table",
                format!("at most {} rows", i32::MAX),
                dims,
            ));
        }
        let mapping = mapping.map(|m| table_mapping(m, rows)).transpose()?;
        let weights = match weights {
            None => None,
            Some(w) => {
                w.expect_dtype("weights", &FLOATS)?;
                w.expect_rank("weights [vocab]", 1)?;
                Some(w.to_f32_vec()?)
            }
        };
        let vocab = match (&mapping, &weights) {
            (Some(m), Some(w)) if m.len() != w.len() => {
                return Err(Error::shape(
                    "weights",
                    format!("[{}] (one weight per mapping entry)", m.len()),
                    &[w.len()],
                ))
            }
            (Some(m), _) => m.len(),
            (None, Some(w)) if w.len() != rows => {
                return Err(Error::shape(
                    "weights",
                    format!("[{rows}] (one weight per table row, as there is no mapping)"),
                    &[w.len()],
                ))
            }
            (None, _) => rows,
        };
        Ok(EmbeddingTable {
            rows,
            dim,
            vocab,
            mapping,
            weights,
        })
    }
}

fn table_mapping(m: &Tensor, rows: usize) -> Result<Vec<u32>> {
    m.expect_dtype("mapping", &[DType::I32, DType::I64])?;
    m.expect_rank("mapping [vocab]", 1)?;
    m.to_i64_vec()?
        .into_iter()
        .enumerate()
        .map(|(id, row)| {
            if row < 0 || row as u64 >= rows as u64 {
                Err(Error::invalid(format!(
                    "mapping[{id}] = {row} is outside the embedding table of {rows} rows"
                )))
            } else {
                Ok(row as u32)
            }
        })
        .collect()
}

/// A weighted layer pooling checked: which layers are kept, their weights and the output.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPooling {
    /// Shape of one layer (`[B, T, D]`), which is also the output's shape.
    pub layer_shape: Vec<usize>,
    /// Index of the first kept layer in the stacked input.
    pub layer_start: usize,
    /// Weights of the kept layers, in order.
    pub weights: Vec<f32>,
    /// `Σ w`, summed in f32 in layer order.
    pub weight_sum: f32,
    /// The layers' dtype when the weights have the same one, else f32 (torch's promotion).
    pub out_dtype: DType,
}

impl LayerPooling {
    /// `all_layers`: the hidden states stacked, `[L + 1, B, T, D]`; `layer_weights`: one weight
    /// per kept layer (`L + 1 − layer_start` of them, fewer than 2^31) with a finite, non-zero sum.
    pub fn check(all_layers: &Tensor, layer_start: usize, layer_weights: &Tensor) -> Result<Self> {
        let layers_dtype = all_layers.expect_dtype("all_layer_embeddings", &FLOATS)?;
        let weights_dtype = layer_weights.expect_dtype("layer_weights", &FLOATS)?;
        let dims = all_layers.expect_rank("all_layer_embeddings [L+1, B, T, D]", 4)?;
        let total = dims[0];
        if layer_start >= total {
            return Err(Error::invalid(format!(
                "layer_start {layer_start} leaves no layer of the {total} in all_layer_embeddings"
            )));
        }
        let kept = total - layer_start;
        if layer_weights.dims() != [kept] {
            return Err(Error::shape(
                "layer_weights",
                format!(
                    "[{kept}] (one weight per layer from layer_start {layer_start} to {})",
                    total - 1
                ),
                layer_weights.dims(),
            ));
        }
        if kept > i32::MAX as usize {
            return Err(Error::shape(
                "all_layer_embeddings",
                "fewer than 2^31 layers",
                dims,
            ));
        }
        let weights = layer_weights.to_f32_vec()?;
        let weight_sum: f32 = weights.iter().sum();
        if weight_sum == 0.0 || !weight_sum.is_finite() {
            return Err(Error::invalid(format!(
                "layer_weights sum to {weight_sum}; the average needs a finite, non-zero sum"
            )));
        }
        Ok(LayerPooling {
            layer_shape: dims[1..].to_vec(),
            layer_start,
            weights,
            weight_sum,
            out_dtype: if layers_dtype == weights_dtype {
                layers_dtype
            } else {
                DType::F32
            },
        })
    }

    /// Elements of one layer.
    pub fn layer_len(&self) -> usize {
        self.layer_shape.iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::expect_err;

    fn spec(modes: &[PoolingMode]) -> PoolingSpec {
        PoolingSpec::new(modes.to_vec()).unwrap()
    }

    #[test]
    fn output_dtype_promotes_only_when_needed() {
        use PoolingMode::*;
        let cases = [
            (DType::F16, &[Mean][..], false, None, DType::F16),
            (DType::F16, &[Mean], true, None, DType::F32),
            (DType::F16, &[Max], true, None, DType::F16),
            (DType::BF16, &[Cls], false, Some(DType::F16), DType::F32),
            (DType::BF16, &[Mean], false, Some(DType::F16), DType::BF16),
            (DType::F32, &[Cls, Mean], true, Some(DType::F32), DType::F32),
        ];
        for (input, modes, tws, cls, want) in cases {
            assert_eq!(
                pool_output_dtype(input, &spec(modes), tws, cls),
                want,
                "{input} {modes:?} {tws} {cls:?}"
            );
        }
    }

    #[test]
    fn pool_inputs_check_extras() {
        let s = spec(&[PoolingMode::Cls]);
        let cls = Tensor::zeros([2, 3], DType::F16).unwrap();
        let ok = PoolExtras {
            token_weights_sum: Some(&[1.0, 2.0]),
            cls_token_embeddings: Some(&cls),
        };
        assert_eq!(pool_inputs(2, 3, DType::F32, &s, &ok).unwrap(), DType::F32);
        let bad_w = PoolExtras {
            token_weights_sum: Some(&[1.0]),
            ..ok
        };
        assert!(matches!(
            pool_inputs(2, 3, DType::F32, &s, &bad_w),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            pool_inputs(2, 4, DType::F32, &s, &ok),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            pool_inputs(2, 3, DType::I8, &s, &PoolExtras::default()),
            Err(Error::DType { .. })
        ));
        let empty = PoolingSpec {
            modes: vec![],
            prompt_length: None,
        };
        expect_err(
            pool_inputs(2, 3, DType::F32, &empty, &PoolExtras::default()),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["at least one mode"],
        );
    }

    #[test]
    fn tables_refuse_what_no_backend_reads() {
        let t = |dims: [usize; 2], d| Tensor::zeros(dims, d).unwrap();
        let table = t([4, 8], DType::F16);
        let ok = EmbeddingTable::check(&table, None, None).unwrap();
        assert_eq!((ok.rows, ok.dim, ok.vocab), (4, 8, 4));
        // Every table dtype some backend reads is read by all of them; integer tables other
        // than int8 and D = 0 are refused on every backend alike.
        for dtype in TABLE_DTYPES {
            assert!(EmbeddingTable::check(&t([4, 2], dtype), None, None).is_ok());
        }
        assert!(matches!(
            EmbeddingTable::check(&t([4, 2], DType::I32), None, None),
            Err(Error::DType { .. })
        ));
        assert!(matches!(
            EmbeddingTable::check(&t([4, 0], DType::F32), None, None),
            Err(Error::Shape { .. })
        ));
        let mapping = Tensor::from_slice([5], &[0i32, 3, 3, 1, 2]).unwrap();
        let weights = Tensor::from_slice([5], &[1.0f32, 0.5, 2.0, 1.0, 0.0]).unwrap();
        let ok = EmbeddingTable::check(&table, Some(&mapping), Some(&weights)).unwrap();
        assert_eq!((ok.vocab, ok.mapping.unwrap()), (5, vec![0, 3, 3, 1, 2]));
        let bad_map = Tensor::from_slice([3], &[0i64, 4, 1]).unwrap();
        let e = EmbeddingTable::check(&table, Some(&bad_map), None).unwrap_err();
        assert!(e.to_string().contains("mapping[1] = 4"), "{e}");
        let neg_map = Tensor::from_slice([2], &[0i32, -1]).unwrap();
        expect_err(
            EmbeddingTable::check(&table, Some(&neg_map), None),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["mapping[1] = -1", "table of 4 rows"],
        );
        let float_map = Tensor::from_slice([2], &[0.0f32, 1.0]).unwrap();
        assert!(matches!(
            EmbeddingTable::check(&table, Some(&float_map), None),
            Err(Error::DType { .. })
        ));
        let four = Tensor::zeros([4], DType::F32).unwrap();
        let e = EmbeddingTable::check(&table, Some(&mapping), Some(&four)).unwrap_err();
        assert!(
            matches!(&e, Error::Shape { what, .. } if what == "weights"),
            "{e}"
        );
        // Without a mapping, one weight per table row.
        assert!(EmbeddingTable::check(&table, None, Some(&four)).is_ok());
        expect_err(
            EmbeddingTable::check(&table, None, Some(&weights)),
            |e| matches!(e, Error::Shape { what, .. } if what == "weights"),
            &["one weight per table row", "[5]"],
        );
        assert!(matches!(
            EmbeddingTable::check(&Tensor::zeros([4, 8], DType::I32).unwrap(), None, None),
            Err(Error::DType { .. })
        ));
        assert!(matches!(
            EmbeddingTable::check(&Tensor::zeros([32], DType::F32).unwrap(), None, None),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    fn layer_pooling_checks() {
        let layers = Tensor::zeros([13, 2, 3, 4], DType::F32).unwrap();
        let w = |n: usize, v: f32| Tensor::from_vec([n], vec![v; n]).unwrap();
        let plan = LayerPooling::check(&layers, 4, &w(9, 1.0)).unwrap();
        assert_eq!(
            (plan.layer_shape.as_slice(), plan.weight_sum, plan.out_dtype),
            (&[2usize, 3, 4][..], 9.0, DType::F32)
        );
        assert!(matches!(
            LayerPooling::check(&layers, 4, &w(8, 1.0)),
            Err(Error::Shape { .. })
        ));
        expect_err(
            LayerPooling::check(&layers, 13, &w(0, 1.0)),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["layer_start 13", "no layer", "all_layer_embeddings"],
        );
        let e = LayerPooling::check(&layers, 4, &w(9, 0.0)).unwrap_err();
        assert!(e.to_string().contains("sum to 0"), "{e}");
        expect_err(
            LayerPooling::check(&layers, 4, &w(9, f32::INFINITY)),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["layer_weights sum to inf", "finite"],
        );

        let ints = Tensor::zeros([13, 2, 3, 4], DType::I64).unwrap();
        assert!(matches!(
            LayerPooling::check(&ints, 4, &w(9, 1.0)),
            Err(Error::DType { .. })
        ));
        assert!(matches!(
            LayerPooling::check(&Tensor::zeros([13, 2], DType::F32).unwrap(), 4, &w(9, 1.0)),
            Err(Error::Shape { .. })
        ));
        // f16 layers with f32 weights: torch promotes the output to f32.
        let half = Tensor::zeros([3, 1, 2, 8], DType::F16).unwrap();
        assert_eq!(
            LayerPooling::check(&half, 1, &w(2, 0.5)).unwrap().out_dtype,
            DType::F32
        );
        let half_w = w(2, 0.5).to_dtype(DType::F16).unwrap();
        assert_eq!(
            LayerPooling::check(&half, 1, &half_w).unwrap().out_dtype,
            DType::F16
        );
    }
}
