//! Batch layouts, validated at construction so consumers index without further checks.
//!
//! * [`PaddedBatch`]: `[B, T, D]` token embeddings plus an optional `[B, T]` 0/1 mask.
//! * [`VarlenBatch`]: `[N, D]` tokens of B sequences laid end to end, `cu_seq_lens [B + 1]`.
//! * [`TokenBags`]: token ids in CSR form (ids + offsets), every id inside the table.

use crate::{DType, Error, Result, Tensor};
use std::ops::Range;

const FLOATS: &[DType] = &[DType::F32, DType::F16, DType::BF16];

/// Padded layout: `tokens [B, T, D]` and a 0/1 mask per position.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    tokens: Tensor,
    /// `B * T` values, each 0 or 1; `None` means every position counts.
    mask: Option<Vec<u8>>,
}

impl PaddedBatch {
    /// `mask`, when given, must be `[B, T']` with 0/1 values. If `T' != T` the mask is ignored
    /// and every position counts: the reference does this because a strided CNN changes `T`.
    pub fn new(tokens: Tensor, mask: Option<&Tensor>) -> Result<Self> {
        tokens.expect_dtype("token_embeddings", FLOATS)?;
        let dims = tokens.expect_rank("token_embeddings [B, T, D]", 3)?;
        let (b, t) = (dims[0], dims[1]);
        let mask = match mask {
            None => None,
            Some(m) => {
                let md = m.expect_rank("attention_mask [B, T]", 2)?;
                if md[0] != b {
                    return Err(Error::shape(
                        "attention_mask",
                        format!("[{b}, {t}] (batch {b})"),
                        md,
                    ));
                }
                if md[1] != t {
                    None
                } else {
                    Some(mask_values(m)?)
                }
            }
        };
        Ok(PaddedBatch { tokens, mask })
    }

    /// A batch with an already-checked 0/1 mask of `B * T` values.
    pub fn with_mask_values(tokens: Tensor, mask: Option<Vec<u8>>) -> Result<Self> {
        tokens.expect_dtype("token_embeddings", FLOATS)?;
        let dims = tokens.expect_rank("token_embeddings [B, T, D]", 3)?;
        if let Some(m) = &mask {
            if m.len() != dims[0] * dims[1] || m.iter().any(|&v| v > 1) {
                return Err(Error::Layout(format!(
                    "mask must hold {} values of 0 or 1",
                    dims[0] * dims[1]
                )));
            }
        }
        Ok(PaddedBatch { tokens, mask })
    }

    /// The `[B, T, D]` float token embeddings.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }
    /// `B`, the number of sequences.
    pub fn batch(&self) -> usize {
        self.tokens.dims()[0]
    }
    /// `T`, the padded sequence length.
    pub fn seq_len(&self) -> usize {
        self.tokens.dims()[1]
    }
    /// `D`, the embedding width.
    pub fn dim(&self) -> usize {
        self.tokens.dims()[2]
    }
    /// `B * T` values of 0/1, or `None` when every position counts.
    pub fn mask(&self) -> Option<&[u8]> {
        self.mask.as_deref()
    }
}

/// Read a mask tensor (integer or float) and insist on 0/1 values.
fn mask_values(m: &Tensor) -> Result<Vec<u8>> {
    let vals = if m.dtype().is_float() {
        m.to_f32_vec()?
            .into_iter()
            .map(|v| v as f64)
            .collect::<Vec<_>>()
    } else {
        m.to_i64_vec()?.into_iter().map(|v| v as f64).collect()
    };
    vals.iter()
        .enumerate()
        .map(|(i, &v)| {
            if v == 0.0 || v == 1.0 {
                Ok(v as u8)
            } else {
                Err(Error::Layout(format!(
                    "attention_mask value {v} at flat position {i} is not 0 or 1"
                )))
            }
        })
        .collect()
}

/// Varlen layout: `tokens [N, D]` (or `[1, N, D]`), `cu_seq_lens [B + 1]` prefix sums.
#[derive(Debug, Clone)]
pub struct VarlenBatch {
    tokens: Tensor,
    cu_seq_lens: Vec<usize>,
}

/// Float token rows `[N, D]`, given as `[N, D]` or `[1, N, D]`.
fn token_rows(tokens: Tensor, what: &str) -> Result<Tensor> {
    tokens.expect_dtype(what, FLOATS)?;
    match tokens.dims() {
        [1, n, d] => tokens.reshape([*n, *d]),
        [_, _] => Ok(tokens),
        other => Err(Error::shape(what, "[1, N, D] or [N, D]", other)),
    }
}

impl VarlenBatch {
    /// `tokens` must be float `[N, D]` or `[1, N, D]`; `cu_seq_lens` must start at 0, never
    /// decrease and end at `N` ([`Error::Layout`] otherwise; a wrong rank or dtype is
    /// [`Error::Shape`] / [`Error::DType`]). Sequences may be empty.
    pub fn new(tokens: Tensor, cu_seq_lens: &[i64]) -> Result<Self> {
        let tokens = token_rows(tokens, "varlen token_embeddings")?;
        let n = tokens.dims()[0];
        if cu_seq_lens.is_empty() {
            return Err(Error::Layout(
                "cu_seq_lens is empty; it needs B + 1 entries starting at 0".into(),
            ));
        }
        if cu_seq_lens[0] != 0 {
            return Err(Error::Layout(format!(
                "cu_seq_lens must start at 0, starts at {}",
                cu_seq_lens[0]
            )));
        }
        for (i, w) in cu_seq_lens.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(Error::Layout(format!(
                    "cu_seq_lens decreases at index {}: {} after {}",
                    i + 1,
                    w[1],
                    w[0]
                )));
            }
        }
        let last = *cu_seq_lens.last().unwrap();
        if last != n as i64 {
            return Err(Error::Layout(format!(
                "cu_seq_lens ends at {last} but token_embeddings has {n} tokens"
            )));
        }
        Ok(VarlenBatch {
            tokens,
            cu_seq_lens: cu_seq_lens.iter().map(|&v| v as usize).collect(),
        })
    }

    /// `[N, D]` tokens.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }
    /// `B`, the number of sequences (`cu_seq_lens.len() - 1`).
    pub fn num_seqs(&self) -> usize {
        self.cu_seq_lens.len() - 1
    }
    /// `D`, the embedding width.
    pub fn dim(&self) -> usize {
        self.tokens.dims()[1]
    }
    /// The `B + 1` prefix sums: sequence `i` is rows `cu_seq_lens[i]..cu_seq_lens[i + 1]`.
    pub fn cu_seq_lens(&self) -> &[usize] {
        &self.cu_seq_lens
    }
    /// Token rows of sequence `i`.
    pub fn seq(&self, i: usize) -> Range<usize> {
        self.cu_seq_lens[i]..self.cu_seq_lens[i + 1]
    }
}

/// Span layout (late chunking): `tokens [N, D]` (or `[1, N, D]`) and `S` token spans
/// `[start, end)`, each non-empty and inside `0..N`. Spans may overlap or leave gaps; span `s`
/// pools to output row `s`.
#[derive(Debug, Clone)]
pub struct SpanBatch {
    tokens: Tensor,
    spans: Vec<Range<usize>>,
}

impl SpanBatch {
    /// `spans` as `(start, end)` pairs.
    pub fn new(tokens: Tensor, spans: &[[i64; 2]]) -> Result<Self> {
        let tokens = token_rows(tokens, "span token_embeddings")?;
        let n = tokens.dims()[0];
        let spans = spans
            .iter()
            .enumerate()
            .map(|(s, &[start, end])| {
                if start < 0 || end > n as i64 || start >= end {
                    Err(Error::Layout(format!(
                        "span {s} is [{start}, {end}); spans must be non-empty and inside the {n} token rows"
                    )))
                } else {
                    Ok(start as usize..end as usize)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SpanBatch { tokens, spans })
    }

    /// `spans`: an integer tensor `[S, 2]` of start and end rows.
    pub fn from_tensor(tokens: Tensor, spans: &Tensor) -> Result<Self> {
        spans.expect_dtype("spans", &[DType::I32, DType::I64])?;
        spans.expect_rank("spans [S, 2]", 2)?;
        if spans.dims()[1] != 2 {
            return Err(Error::shape("spans", "[S, 2] (start, end)", spans.dims()));
        }
        let flat = spans.to_i64_vec()?;
        let pairs: Vec<[i64; 2]> = flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        Self::new(tokens, &pairs)
    }

    /// `[N, D]` tokens.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }
    /// `S`, the number of spans (and of output rows).
    pub fn num_spans(&self) -> usize {
        self.spans.len()
    }
    /// `D`, the embedding width.
    pub fn dim(&self) -> usize {
        self.tokens.dims()[1]
    }
    /// The spans as row ranges, each non-empty and inside `0..N`.
    pub fn spans(&self) -> &[Range<usize>] {
        &self.spans
    }
}

/// Token ids grouped into bags (one bag per text), CSR: bag `i` is `ids[offsets[i]..offsets[i+1]]`.
/// Every id is `< vocab`, so a table lookup (CPU or GPU) can never read out of bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBags {
    ids: Vec<u32>,
    offsets: Vec<usize>,
    vocab: usize,
}

impl TokenBags {
    /// `offsets` (one more than the bags) must start at 0, never decrease and end at
    /// `ids.len()` ([`Error::Layout`]); every id must be below `vocab`
    /// ([`Error::IdOutOfRange`] naming the first that is not).
    pub fn new(ids: Vec<u32>, offsets: Vec<usize>, vocab: usize) -> Result<Self> {
        match offsets.first() {
            None => {
                return Err(Error::Layout(
                    "bag offsets are empty: expected one more offset than bags, the first 0".into(),
                ))
            }
            Some(&first) if first != 0 => {
                return Err(Error::Layout(format!(
                    "bag offsets must start at 0, start at {first}"
                )))
            }
            Some(_) => {}
        }
        if offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::Layout("bag offsets must not decrease".into()));
        }
        if *offsets.last().unwrap() != ids.len() {
            return Err(Error::Layout(format!(
                "bag offsets end at {}, not at the number of ids ({})",
                offsets.last().unwrap(),
                ids.len()
            )));
        }
        if let Some((position, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab)
        {
            return Err(Error::IdOutOfRange {
                id: id as i64,
                position,
                vocab,
            });
        }
        Ok(TokenBags {
            ids,
            offsets,
            vocab,
        })
    }

    /// Build from one id list per bag.
    pub fn from_bags<I: AsRef<[u32]>>(bags: &[I], vocab: usize) -> Result<Self> {
        let mut ids = Vec::with_capacity(bags.iter().map(|b| b.as_ref().len()).sum());
        let mut offsets = Vec::with_capacity(bags.len() + 1);
        offsets.push(0);
        for b in bags {
            ids.extend_from_slice(b.as_ref());
            offsets.push(ids.len());
        }
        Self::new(ids, offsets, vocab)
    }

    /// Every bag's ids, end to end.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
    /// The `num_bags() + 1` bag boundaries into [`TokenBags::ids`].
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// The table size every id is below.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    /// The number of bags (texts).
    pub fn num_bags(&self) -> usize {
        self.offsets.len() - 1
    }
    /// The ids of bag `i` (panics if `i >= num_bags()`).
    pub fn bag(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::expect_err;

    fn toks(b: usize, t: usize, d: usize) -> Tensor {
        Tensor::zeros([b, t, d], DType::F32).unwrap()
    }

    #[test]
    fn padded_mask_rules() {
        let m = Tensor::from_slice([2, 3], &[1i64, 1, 0, 0, 1, 1]).unwrap();
        let p = PaddedBatch::new(toks(2, 3, 4), Some(&m)).unwrap();
        assert_eq!(p.mask().unwrap(), &[1, 1, 0, 0, 1, 1]);
        // Mask length differs from T: every position counts.
        let m2 = Tensor::from_slice([2, 2], &[1i32, 0, 0, 1]).unwrap();
        assert!(PaddedBatch::new(toks(2, 3, 4), Some(&m2))
            .unwrap()
            .mask()
            .is_none());
        let bad_b = Tensor::from_slice([1, 3], &[1i64, 1, 1]).unwrap();
        assert!(matches!(
            PaddedBatch::new(toks(2, 3, 4), Some(&bad_b)),
            Err(Error::Shape { .. })
        ));
        let bad_v = Tensor::from_slice([2, 3], &[1i64, 2, 0, 0, 1, 1]).unwrap();
        assert!(matches!(
            PaddedBatch::new(toks(2, 3, 4), Some(&bad_v)),
            Err(Error::Layout(_))
        ));
        let ints = Tensor::zeros([2, 3, 4], DType::I32).unwrap();
        assert!(matches!(
            PaddedBatch::new(ints, None),
            Err(Error::DType { .. })
        ));
        expect_err(
            PaddedBatch::new(Tensor::zeros([6, 4], DType::F32).unwrap(), None),
            |e| matches!(e, Error::Shape { .. }),
            &["token_embeddings", "rank 3", "[6, 4]"],
        );
    }

    #[test]
    fn varlen_validation() {
        let t = Tensor::zeros([1, 5, 2], DType::F16).unwrap();
        let v = VarlenBatch::new(t.clone(), &[0, 2, 2, 5]).unwrap();
        assert_eq!(v.num_seqs(), 3);
        assert_eq!(v.seq(1), 2..2);
        assert_eq!(v.tokens().dims(), &[5, 2]);
        for bad in [&[][..], &[1, 5], &[0, 3, 2, 5], &[0, 6], &[0, 4]] {
            assert!(
                matches!(VarlenBatch::new(t.clone(), bad), Err(Error::Layout(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn span_validation() {
        let t = Tensor::zeros([1, 5, 2], DType::BF16).unwrap();
        let s = SpanBatch::new(t.clone(), &[[0, 5], [1, 2], [0, 3], [2, 4]]).unwrap();
        assert_eq!(s.num_spans(), 4);
        assert_eq!(s.spans()[1], 1..2);
        assert_eq!(s.tokens().dims(), &[5, 2]);
        for bad in [[2, 2], [3, 1], [-1, 2], [4, 6]] {
            assert!(
                matches!(SpanBatch::new(t.clone(), &[bad]), Err(Error::Layout(_))),
                "{bad:?}"
            );
        }
        let as_tensor = Tensor::from_slice([2, 2], &[0i64, 2, 1, 5]).unwrap();
        assert_eq!(
            SpanBatch::from_tensor(t.clone(), &as_tensor)
                .unwrap()
                .spans(),
            &[0..2, 1..5]
        );
        let wrong = Tensor::from_slice([1, 3], &[0i64, 2, 3]).unwrap();
        expect_err(
            SpanBatch::from_tensor(t, &wrong),
            |e| matches!(e, Error::Shape { .. }),
            &["spans", "[S, 2]", "[1, 3]"],
        );
    }

    #[test]
    fn bags_check_ids() {
        let b = TokenBags::from_bags(&[vec![1u32, 2], vec![], vec![0]], 3).unwrap();
        assert_eq!(b.num_bags(), 3);
        assert_eq!(b.bag(0), &[1, 2]);
        assert!(b.bag(1).is_empty());
        let e = TokenBags::from_bags(&[vec![3u32]], 3).unwrap_err();
        assert!(matches!(
            e,
            Error::IdOutOfRange {
                id: 3,
                vocab: 3,
                ..
            }
        ));
        let bad_offsets: [(Vec<u32>, Vec<usize>, &[&str]); 2] = [
            (
                vec![0],
                vec![0, 2],
                &["bag offsets end at 2", "number of ids (1)"],
            ),
            (
                vec![],
                vec![],
                &["bag offsets are empty", "one more offset than bags"],
            ),
        ];
        for (ids, offsets, words) in bad_offsets {
            expect_err(
                TokenBags::new(ids, offsets, 3),
                |e| matches!(e, Error::Layout(_)),
                words,
            );
        }
    }
}
