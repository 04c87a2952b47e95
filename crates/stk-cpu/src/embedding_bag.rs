//! Embedding bag in mean mode: the vector of a bag of token ids is the mean of their table rows.
//!
//! The table stays in its stored dtype (f32, f16, bf16 or int8: borrowed from a memory-mapped
//! safetensors file, or a huge-page copy of it that the static-model loader makes of large tables)
//! and rows are widened to f32 as they are added, so an int8 or f16 model costs no more memory
//! than its file. A model2vec vocabulary-quantized table adds an id → row
//! `mapping` and a per-id `weights` scale: `row(id) = table[mapping[id]] · weights[id]`.
//!
//! This is the hot loop of static-model encoding: every add is a contiguous run of `dim` values
//! that the compiler vectorizes; f16 rows are widened in blocks (F16C where the CPU has it).

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use stk_core::{validate, DType, Error, Result, Tensor, TokenBags};

use crate::simd::{self, Element, Isa, Kind};

/// A `[rows, dim]` table with an optional id → row `mapping` and per-id `weights`, averaged over
/// bags of ids.
#[derive(Debug, Clone)]
pub struct EmbeddingBag {
    table: Tensor,
    rows: usize,
    dim: usize,
    /// `vocab` entries, each `< rows` (checked at construction).
    mapping: Option<Vec<u32>>,
    /// `vocab` entries.
    weights: Option<Vec<f32>>,
    /// Number of ids the bag accepts: the length of `mapping`/`weights`, else `rows`.
    vocab: usize,
    /// The row-sum kernels this CPU runs.
    isa: Isa,
}

/// The table's elements in their stored type.
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    I8(&'a [i8]),
}

impl EmbeddingBag {
    /// `table [rows, dim]` (f32, f16, bf16 or i8; int8 values are used as they are, without a scale),
    /// `mapping [V]` (integer row indices, each `< rows`) and `weights [V]` (float), both optional.
    /// When both are given they must have the same length. Without a mapping, `weights` must
    /// have one entry per table row.
    pub fn new(table: Tensor, mapping: Option<&Tensor>, weights: Option<&Tensor>) -> Result<Self> {
        // The checks every backend shares (the GPU table makes the same call).
        let checked = validate::EmbeddingTable::check(&table, mapping, weights)?;
        Ok(EmbeddingBag {
            table,
            rows: checked.rows,
            dim: checked.dim,
            mapping: checked.mapping,
            weights: checked.weights,
            vocab: checked.vocab,
            isa: Isa::detect(),
        })
    }

    /// Width of the output vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of ids accepted (`0..vocab`).
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    /// Rows of the stored table (fewer than `vocab` for a vocabulary-quantized model).
    pub fn table_rows(&self) -> usize {
        self.rows
    }
    /// Stored dtype of the table.
    pub fn dtype(&self) -> DType {
        self.table.dtype()
    }
    /// The stored table `[rows, dim]`.
    pub fn table(&self) -> &Tensor {
        &self.table
    }
    /// The token id → table row map, when the table is vocabulary-quantized.
    pub fn mapping(&self) -> Option<&[u32]> {
        self.mapping.as_deref()
    }
    /// The per-token-id weights that scale rows before the mean, when the model has them.
    pub fn weights(&self) -> Option<&[f32]> {
        self.weights.as_deref()
    }

    fn rows_view(&self) -> Result<Rows<'_>> {
        Ok(match self.table.dtype() {
            DType::F32 => Rows::F32(self.table.as_slice()?),
            DType::F16 => Rows::F16(self.table.as_slice()?),
            DType::BF16 => Rows::BF16(self.table.as_slice()?),
            DType::I8 => Rows::I8(self.table.as_slice()?),
            d => return Err(Error::dtype("embedding table", "f32, f16, bf16 or i8", d)),
        })
    }

    /// Write the mean of the rows of `ids` into `out` (`dim` values); no ids gives zeros.
    /// Sums in f32 in id order and divides by the count, as the reference does. Errors when
    /// `out` is not `dim` long or an id is not below [`EmbeddingBag::vocab`].
    ///
    /// # Example
    ///
    /// ```rust
    /// use stk_core::{Error, Tensor};
    /// use stk_cpu::EmbeddingBag;
    ///
    /// // Three rows of width 2; token ids 0..4 map onto them, each id with a weight.
    /// let table = Tensor::from_vec([3, 2], vec![1.0f32, 0.0, 0.0, 1.0, 2.0, 2.0])?;
    /// let mapping = Tensor::from_vec([4], vec![0i32, 1, 2, 2])?;
    /// let weights = Tensor::from_vec([4], vec![1.0f32, 1.0, 1.0, 0.5])?;
    /// let bag = EmbeddingBag::new(table, Some(&mapping), Some(&weights))?;
    /// let mut out = [0.0f32; 2];
    /// bag.mean_into(&[0, 3], &mut out)?; // (1 · row 0 + 0.5 · row 2) / 2
    /// assert_eq!(out, [1.0, 0.5]);
    /// // An id past the vocabulary is refused, never read out of bounds.
    /// let e = bag.mean_into(&[4], &mut out).unwrap_err();
    /// assert!(matches!(e, Error::IdOutOfRange { id: 4, vocab: 4, .. }), "{e}");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn mean_into(&self, ids: &[u32], out: &mut [f32]) -> Result<()> {
        if out.len() != self.dim {
            return Err(Error::shape(
                "bag output",
                format!("[{}]", self.dim),
                &[out.len()],
            ));
        }
        self.check_ids(ids)?;
        self.mean_of(&self.rows_view()?, ids, out);
        Ok(())
    }

    /// Write the row of each id, `w(id) · table[row(id)]` widened to f32, into `out`
    /// (`ids.len() × dim` values, row-major): the rows [`EmbeddingBag::mean_into`] averages,
    /// one by one (model2vec's `encode_as_sequence`). Errors as `mean_into` does.
    pub fn rows_into(&self, ids: &[u32], out: &mut [f32]) -> Result<()> {
        if Some(out.len()) != ids.len().checked_mul(self.dim) {
            return Err(Error::shape(
                "token rows",
                format!("[{}, {}]", ids.len(), self.dim),
                &[out.len()],
            ));
        }
        self.check_ids(ids)?;
        match self.rows_view()? {
            Rows::F32(t) => self.rows_typed(t, ids, out),
            Rows::F16(t) => self.rows_typed(t, ids, out),
            Rows::BF16(t) => self.rows_typed(t, ids, out),
            Rows::I8(t) => self.rows_typed(t, ids, out),
        }
        Ok(())
    }

    /// [`EmbeddingBag::rows_into`] for one table type (ids checked, `out` sized).
    fn rows_typed<T: Element>(&self, table: &[T], ids: &[u32], out: &mut [f32]) {
        let d = self.dim;
        let mapping = self.mapping.as_deref();
        let weights = self.weights.as_deref();
        for (&id, out) in ids.iter().zip(out.chunks_exact_mut(d.max(1))) {
            let r = mapping.map_or(id as usize, |m| m[id as usize] as usize);
            widen_row(&table[r * d..r * d + d], out);
            // Scaled and rounded to f32 per element, as the bag's sums add them.
            if let Some(w) = weights {
                let w = w[id as usize];
                out.iter_mut().for_each(|v| *v *= w);
            }
        }
    }

    /// Every id below the vocabulary size, else an error naming the first that is not.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().position(|&id| id as usize >= self.vocab) {
            Some(position) => Err(Error::IdOutOfRange {
                id: ids[position] as i64,
                position,
                vocab: self.vocab,
            }),
            None => Ok(()),
        }
    }

    /// The means of consecutive bags of one flat id list: bag `i` is `ids[ends[i - 1]..ends[i]]`
    /// (from 0 for the first), written to row `i` of `out` (`ends.len() × dim` values). The
    /// same values as [`EmbeddingBag::mean_into`] per bag; while one bag is summed, the rows of
    /// the next are prefetched (the ids are known before any row is read, so the table's cache
    /// misses overlap the additions instead of stalling them).
    pub fn mean_bags_into(&self, ids: &[u32], ends: &[usize], out: &mut [f32]) -> Result<()> {
        self.mean_bags_into_then(ids, ends, out, |_| {})
    }

    /// [`EmbeddingBag::mean_bags_into`], with `finish(row)` run on each row right after its
    /// mean is written, while the row is still in the L1 cache (after the whole list it would
    /// be read back from memory: the bags' table rows pass through the cache in between).
    pub fn mean_bags_into_then(
        &self,
        ids: &[u32],
        ends: &[usize],
        out: &mut [f32],
        finish: impl Fn(&mut [f32]),
    ) -> Result<()> {
        if out.len() != ends.len() * self.dim {
            return Err(Error::shape(
                "bag outputs",
                format!("[{}, {}]", ends.len(), self.dim),
                &[out.len()],
            ));
        }
        if ends.windows(2).any(|w| w[0] > w[1]) || ends.last().is_some_and(|&e| e > ids.len()) {
            return Err(Error::invalid(format!(
                "bag ends must rise and stay within the {}",
                stk_core::counted(ids.len(), "id")
            )));
        }
        self.check_ids(ids)?;
        let rows = self.rows_view()?;
        let bag = |i: usize| &ids[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        for (i, row) in out.chunks_exact_mut(self.dim).enumerate() {
            if i + 1 < ends.len() {
                self.prefetch_rows(&rows, bag(i + 1));
            }
            self.mean_of(&rows, bag(i), row);
            finish(row);
        }
        Ok(())
    }

    /// Start loading the table rows of `ids` (checked `< vocab`) into the cache.
    fn prefetch_rows(&self, rows: &Rows<'_>, ids: &[u32]) {
        fn each<T>(table: &[T], d: usize, mapping: Option<&[u32]>, ids: &[u32]) {
            for &id in ids {
                let r = mapping.map_or(id as usize, |m| m[id as usize] as usize);
                simd::prefetch(&table[r * d..r * d + d]);
            }
        }
        let mapping = self.mapping.as_deref();
        match *rows {
            Rows::F32(t) => each(t, self.dim, mapping, ids),
            Rows::F16(t) => each(t, self.dim, mapping, ids),
            Rows::BF16(t) => each(t, self.dim, mapping, ids),
            Rows::I8(t) => each(t, self.dim, mapping, ids),
        }
    }

    /// `out = (Σ w(id) · row(id)) / ids.len()`, summed in id order (ids already checked
    /// `< vocab`); zeros for no ids.
    #[inline(always)]
    fn mean_of(&self, rows: &Rows<'_>, ids: &[u32], out: &mut [f32]) {
        if ids.is_empty() {
            out.fill(0.0);
            return;
        }
        match *rows {
            Rows::F32(t) => self.mean_typed(t, ids, out),
            Rows::I8(t) => self.mean_typed(t, ids, out),
            Rows::F16(t) => self.mean_typed(t, ids, out),
            Rows::BF16(t) => self.mean_typed(t, ids, out),
        }
    }

    /// [`EmbeddingBag::mean_of`] for one table type, with the loop specialized for the presence
    /// of a mapping and of weights.
    #[inline(always)]
    fn mean_typed<T: Element>(&self, table: &[T], ids: &[u32], out: &mut [f32]) {
        let (d, isa) = (self.dim, self.isa);
        match (self.mapping.as_deref(), self.weights.as_deref()) {
            (None, None) => mean::<T, false, false>(isa, table, d, ids, &[], &[], out),
            (None, Some(w)) => mean::<T, false, true>(isa, table, d, ids, &[], w, out),
            (Some(m), None) => mean::<T, true, false>(isa, table, d, ids, m, &[], out),
            (Some(m), Some(w)) => mean::<T, true, true>(isa, table, d, ids, m, w, out),
        }
    }

    /// Mean of each bag: `[num_bags, dim]` f32. Every id of `bags` must be `< vocab`.
    pub fn bag_mean(&self, bags: &TokenBags) -> Result<Tensor> {
        if bags.vocab() > self.vocab {
            // Ids were checked against a larger id space than this table's: check them here.
            if let Some((position, &id)) = bags
                .ids()
                .iter()
                .enumerate()
                .find(|(_, &id)| id as usize >= self.vocab)
            {
                return Err(Error::IdOutOfRange {
                    id: id as i64,
                    position,
                    vocab: self.vocab,
                });
            }
        }
        let n = bags.num_bags();
        let mut out = vec![0f32; n * self.dim];
        for (i, row) in out.chunks_exact_mut(self.dim).enumerate() {
            self.mean_into(bags.bag(i), row)?;
        }
        Tensor::from_vec([n, self.dim], out)
    }
}

/// `out = (Σ w[id] · table[row(id)]) / ids.len()` over `ids` (not empty), summed in order from
/// zero: with the CPU's SIMD kernels when [`simd::mean_rows`] has them, else with the portable
/// loops below (the same bits).
#[inline(always)]
fn mean<T: Element, const MAPPED: bool, const WEIGHTED: bool>(
    isa: Isa,
    table: &[T],
    d: usize,
    ids: &[u32],
    mapping: &[u32],
    weights: &[f32],
    out: &mut [f32],
) {
    let row = |id: u32| table_row::<T, MAPPED>(table, d, mapping, id);
    let weight = |id: u32| token_weight::<WEIGHTED>(weights, id);
    if simd::mean_rows::<T, WEIGHTED>(isa, out, ids, row, weight) {
        return;
    }
    out.fill(0.0);
    let acc = &mut *out;
    match T::KIND {
        Kind::F16 => sum_rows_f16::<MAPPED, WEIGHTED>(
            bytemuck::cast_slice(table),
            d,
            ids,
            mapping,
            weights,
            acc,
        ),
        Kind::F32 | Kind::BF16 | Kind::I8 => {
            sum_rows::<T, MAPPED, WEIGHTED>(table, d, ids, mapping, weights, acc)
        }
    }
    let n = ids.len() as f32;
    out.iter_mut().for_each(|v| *v /= n);
}

/// `row` widened to f32 into `out` (equal lengths): half-precision rows through `half`'s
/// slice conversion (F16C where the CPU has it), the same values as `widen` one by one.
fn widen_row<T: Element>(row: &[T], out: &mut [f32]) {
    match T::KIND {
        Kind::F16 => bytemuck::cast_slice::<T, f16>(row).convert_to_f32_slice(out),
        Kind::BF16 => bytemuck::cast_slice::<T, bf16>(row).convert_to_f32_slice(out),
        Kind::F32 | Kind::I8 => out.iter_mut().zip(row).for_each(|(o, &x)| *o = x.widen()),
    }
}

/// The table row token `id` reads: `table[mapping[id]]` when `MAPPED`, else `table[id]`.
#[inline(always)]
fn table_row<'a, T, const MAPPED: bool>(
    table: &'a [T],
    d: usize,
    mapping: &[u32],
    id: u32,
) -> &'a [T] {
    let r = if MAPPED {
        mapping[id as usize] as usize
    } else {
        id as usize
    };
    &table[r * d..r * d + d]
}

/// The scale of token `id`: `weights[id]` when `WEIGHTED`, else 1.
#[inline(always)]
fn token_weight<const WEIGHTED: bool>(weights: &[f32], id: u32) -> f32 {
    if WEIGHTED {
        weights[id as usize]
    } else {
        1.0
    }
}

/// `acc += Σ w[id] · table[row(id)]` over `ids`, in order. Four rows are added per pass over
/// `acc`: the additions keep their order (`((acc + r0) + r1) + ...`, the same bits as one row at
/// a time) while `acc` is loaded and stored a quarter as often and four table rows are read at
/// once, which keeps more cache misses in flight.
#[inline(always)]
fn sum_rows<T: Element, const MAPPED: bool, const WEIGHTED: bool>(
    table: &[T],
    d: usize,
    ids: &[u32],
    mapping: &[u32],
    weights: &[f32],
    acc: &mut [f32],
) {
    let row = |id: u32| table_row::<T, MAPPED>(table, d, mapping, id);
    let weight = |id: u32| token_weight::<WEIGHTED>(weights, id);
    let mut quads = ids.chunks_exact(4);
    for q in &mut quads {
        add_four::<T, WEIGHTED>(
            acc,
            [row(q[0]), row(q[1]), row(q[2]), row(q[3])],
            [weight(q[0]), weight(q[1]), weight(q[2]), weight(q[3])],
        );
    }
    for &id in quads.remainder() {
        add_one::<T, WEIGHTED>(acc, row(id), weight(id));
    }
}

/// Columns of an f16 row widened at a time.
const F16_BLOCK: usize = 64;

/// [`sum_rows`] for f16 tables, one block of columns at a time.
fn sum_rows_f16<const MAPPED: bool, const WEIGHTED: bool>(
    table: &[f16],
    d: usize,
    ids: &[u32],
    mapping: &[u32],
    weights: &[f32],
    acc: &mut [f32],
) {
    let row = |id: u32| table_row::<f16, MAPPED>(table, d, mapping, id);
    let weight = |id: u32| token_weight::<WEIGHTED>(weights, id);
    let mut buf = [[0f32; F16_BLOCK]; 4];
    for (start, acc) in (0..d).step_by(F16_BLOCK).zip(acc.chunks_mut(F16_BLOCK)) {
        let cols = start..start + acc.len();
        let mut quads = ids.chunks_exact(4);
        for q in &mut quads {
            for (&id, b) in q.iter().zip(buf.iter_mut()) {
                row(id)[cols.clone()].convert_to_f32_slice(&mut b[..cols.len()]);
            }
            let [b0, b1, b2, b3] = &buf;
            let n = cols.len();
            add_four::<f32, WEIGHTED>(
                acc,
                [&b0[..n], &b1[..n], &b2[..n], &b3[..n]],
                [weight(q[0]), weight(q[1]), weight(q[2]), weight(q[3])],
            );
        }
        for &id in quads.remainder() {
            let n = cols.len();
            row(id)[cols.clone()].convert_to_f32_slice(&mut buf[0][..n]);
            add_one::<f32, WEIGHTED>(acc, &buf[0][..n], weight(id));
        }
    }
}

// The row adders. A weighted row is scaled and rounded to f32 before it is added (no fused
// multiply-add), as the reference scales the gathered rows first and sums them after.

#[inline(always)]
fn add_four<T: Element, const WEIGHTED: bool>(
    acc: &mut [f32],
    [r0, r1, r2, r3]: [&[T]; 4],
    [w0, w1, w2, w3]: [f32; 4],
) {
    let rows = acc.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3);
    if WEIGHTED {
        rows.for_each(|((((a, &x0), &x1), &x2), &x3)| {
            *a = *a + x0.widen() * w0 + x1.widen() * w1 + x2.widen() * w2 + x3.widen() * w3;
        });
    } else {
        rows.for_each(|((((a, &x0), &x1), &x2), &x3)| {
            *a = *a + x0.widen() + x1.widen() + x2.widen() + x3.widen();
        });
    }
}

#[inline(always)]
fn add_one<T: Element, const WEIGHTED: bool>(acc: &mut [f32], row: &[T], w: f32) {
    if WEIGHTED {
        acc.iter_mut()
            .zip(row)
            .for_each(|(a, &x)| *a += x.widen() * w);
    } else {
        acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x.widen());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::{expect_err, ErrorKind};

    fn naive(
        table: &[f32],
        dim: usize,
        map: Option<&[u32]>,
        w: Option<&[f32]>,
        ids: &[u32],
    ) -> Vec<f32> {
        let mut acc = vec![0f32; dim];
        for &id in ids {
            let r = map.map_or(id as usize, |m| m[id as usize] as usize);
            let s = w.map_or(1.0, |w| w[id as usize]);
            for j in 0..dim {
                acc[j] += table[r * dim + j] * s;
            }
        }
        if !ids.is_empty() {
            acc.iter_mut().for_each(|v| *v /= ids.len() as f32);
        }
        acc
    }

    #[test]
    fn mean_of_rows_in_every_dtype() {
        let dim = 70; // not a multiple of the f16 block
        let rows = 5;
        let vals: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 7 % 23) as f32) - 11.0)
            .collect();
        let f32t = Tensor::from_slice([rows, dim], &vals).unwrap();
        let f16t = f32t.to_dtype(DType::F16).unwrap();
        let bf16t = f32t.to_dtype(DType::BF16).unwrap();
        let i8v: Vec<i8> = vals.iter().map(|&v| v as i8).collect();
        let i8t = Tensor::from_slice([rows, dim], &i8v).unwrap();
        let all = [0u32, 3, 3, 4, 1, 2, 4, 0, 1];
        for t in [f32t, f16t, bf16t, i8t] {
            let bag = EmbeddingBag::new(t.clone(), None, None).unwrap();
            // Every count: the four-row passes and the remainder.
            for n in 0..=all.len() {
                let ids = &all[..n];
                let mut out = vec![1f32; dim];
                bag.mean_into(ids, &mut out).unwrap();
                assert_eq!(out, naive(&vals, dim, None, None, ids), "{t:?} {n}");
            }
        }
    }

    #[test]
    fn mapping_and_weights_fold() {
        let dim = 3;
        let table = [1f32, 2.0, 3.0, -1.0, 0.5, 4.0];
        let map = [1u32, 0, 1, 0];
        let w = [2.0f32, 0.5, -1.0, 3.0];
        let t = Tensor::from_slice([2, dim], &table).unwrap();
        let m = Tensor::from_slice([4], &[1i64, 0, 1, 0]).unwrap();
        let wt = Tensor::from_slice([4], &w).unwrap();
        let bag = EmbeddingBag::new(t, Some(&m), Some(&wt)).unwrap();
        assert_eq!(bag.vocab(), 4);
        let all = [0u32, 2, 3, 1, 1, 3, 0];
        for n in 0..=all.len() {
            let mut out = vec![0f32; dim];
            bag.mean_into(&all[..n], &mut out).unwrap();
            assert_eq!(
                out,
                naive(&table, dim, Some(&map), Some(&w), &all[..n]),
                "{n}"
            );
        }
        // The same through f16 and int8 tables (values exact in both).
        for dtype in [DType::F16, DType::I8] {
            let t = if dtype == DType::F16 {
                Tensor::from_slice([2, dim], &table)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            } else {
                Tensor::from_slice([2, dim], &[1i8, 2, 3, -1, 0, 4]).unwrap()
            };
            let bag = EmbeddingBag::new(t.clone(), Some(&m), Some(&wt)).unwrap();
            let tv = t.to_f32_vec().unwrap();
            for n in 0..=all.len() {
                let mut out = vec![0f32; dim];
                bag.mean_into(&all[..n], &mut out).unwrap();
                assert_eq!(
                    out,
                    naive(&tv, dim, Some(&map), Some(&w), &all[..n]),
                    "{dtype} {n}"
                );
            }
        }
        let bags = TokenBags::from_bags(&[vec![0u32, 1], vec![]], 4).unwrap();
        let got = bag.bag_mean(&bags).unwrap();
        assert_eq!(got.dims(), &[2, 3]);
        let got = got.as_slice::<f32>().unwrap();
        assert_eq!(
            &got[..3],
            &naive(&table, dim, Some(&map), Some(&w), &[0, 1])[..]
        );
        assert_eq!(&got[3..], &[0.0, 0.0, 0.0]);
    }

    /// `rows_into` gives each id's scaled row, and the bag's mean is their in-order sum over
    /// the count, bit for bit, for every table dtype with and without mapping and weights.
    #[test]
    fn rows_are_what_the_mean_averages() {
        let dim = 70;
        let vals: Vec<f32> = (0..3 * dim).map(|i| ((i * 5 % 19) as f32) - 9.0).collect();
        let f32t = Tensor::from_slice([3, dim], &vals).unwrap();
        let i8v: Vec<i8> = vals.iter().map(|&v| v as i8).collect();
        let tables = [
            f32t.to_dtype(DType::F16).unwrap(),
            f32t.to_dtype(DType::BF16).unwrap(),
            Tensor::from_slice([3, dim], &i8v).unwrap(),
            f32t,
        ];
        let map = Tensor::from_slice([5], &[2i32, 0, 1, 0, 2]).unwrap();
        let weights = Tensor::from_slice([5], &[0.5f32, -1.25, 3.0, 0.1, 1.0]).unwrap();
        let ids = [4u32, 0, 0, 3, 1, 2];
        for table in tables {
            let table_vals = table.to_f32_vec().unwrap();
            for (map, weights) in [(None, None), (Some(&map), Some(&weights))] {
                let bag = EmbeddingBag::new(table.clone(), map, weights).unwrap();
                let mut ids = &ids[..];
                if map.is_none() {
                    ids = &ids[1..3]; // ids below the three rows
                }
                let mut rows = vec![f32::NAN; ids.len() * dim];
                bag.rows_into(ids, &mut rows).unwrap();
                let what = format!("{} mapped {}", table.dtype(), map.is_some());
                for (&id, row) in ids.iter().zip(rows.chunks(dim)) {
                    let want = naive(&table_vals, dim, bag.mapping(), bag.weights(), &[id]);
                    assert_eq!(row, &want[..], "{what}: row of id {id}");
                }
                let mut sum = vec![0f32; dim];
                for row in rows.chunks(dim) {
                    sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
                }
                sum.iter_mut().for_each(|s| *s /= ids.len() as f32);
                let mut mean = vec![0f32; dim];
                bag.mean_into(ids, &mut mean).unwrap();
                assert_eq!(sum, mean, "{what}: mean of the rows");
            }
        }
        let bag =
            EmbeddingBag::new(Tensor::from_slice([2, 2], &[0f32; 4]).unwrap(), None, None).unwrap();
        let e = bag
            .rows_into(&[0, 1], &mut [0.0; 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("token rows"), "{e}");
        let e = bag.rows_into(&[2], &mut [0.0; 2]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::IdOutOfRange {
                    id: 2,
                    vocab: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_tables_and_ids_are_errors() {
        let t = Tensor::from_slice([2, 2], &[0f32; 4]).unwrap();
        let bad_map = Tensor::from_slice([3], &[0i32, 2, 1]).unwrap();
        let e = EmbeddingBag::new(t.clone(), Some(&bad_map), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mapping[1] = 2"), "{e}");
        let neg_map = Tensor::from_slice([1], &[-1i64]).unwrap();
        expect_err(
            EmbeddingBag::new(t.clone(), Some(&neg_map), None),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["mapping[0] = -1", "table of 2 rows"],
        );
        let float_map = Tensor::from_slice([1], &[0f32]).unwrap();
        assert!(matches!(
            EmbeddingBag::new(t.clone(), Some(&float_map), None),
            Err(Error::DType { .. })
        ));
        let short_w = Tensor::from_slice([1], &[1f32]).unwrap();
        assert!(matches!(
            EmbeddingBag::new(t.clone(), None, Some(&short_w)),
            Err(Error::Shape { .. })
        ));
        let map2 = Tensor::from_slice([2], &[0i32, 1]).unwrap();
        assert!(matches!(
            EmbeddingBag::new(t.clone(), Some(&map2), Some(&short_w)),
            Err(Error::Shape { .. })
        ));
        let bad_tables: [(Tensor, ErrorKind, &[&str]); 3] = [
            (
                Tensor::from_slice([4], &[0f32; 4]).unwrap(),
                |e| matches!(e, Error::Shape { .. }),
                &["embedding table", "rank 2", "[4]"],
            ),
            (
                Tensor::from_slice([2, 2], &[0i32; 4]).unwrap(),
                |e| matches!(e, Error::DType { .. }),
                &["embedding table", "got i32"],
            ),
            (
                Tensor::zeros([3, 0], DType::F32).unwrap(),
                |e| matches!(e, Error::Shape { .. }),
                &["embedding table", "0 < dim", "[3, 0]"],
            ),
        ];
        for (table, kind, words) in bad_tables {
            expect_err(EmbeddingBag::new(table, None, None), kind, words);
        }

        let bag = EmbeddingBag::new(t, None, None).unwrap();
        let mut out = vec![0f32; 2];
        assert!(matches!(
            bag.mean_into(&[0, 2], &mut out),
            Err(Error::IdOutOfRange {
                id: 2,
                position: 1,
                ..
            })
        ));
        expect_err(
            bag.mean_into(&[0], &mut [0f32; 3]),
            |e| matches!(e, Error::Shape { .. }),
            &["bag output", "[2]", "[3]"],
        );
        let mut two = vec![0f32; 4];
        let bad_ends: ErrorKind = |e| matches!(e, Error::InvalidArgument(_));
        let bad_bags = [
            // falling ends, then ends beyond the ids
            (
                &[0u32, 1][..],
                &[1usize, 0][..],
                bad_ends,
                &["bag ends must rise", "2 ids"][..],
            ),
            (&[0, 1], &[1, 3], bad_ends, &["bag ends must rise", "2 ids"]),
            // one bag for two rows of output
            (
                &[0, 1],
                &[1],
                |e| matches!(e, Error::Shape { .. }),
                &["bag outputs", "[1, 2]", "[4]"],
            ),
            (
                &[0, 2],
                &[1, 2],
                |e| matches!(e, Error::IdOutOfRange { id: 2, .. }),
                &["token id 2", "position 1", "table of 2 rows"],
            ),
        ];
        for (ids, ends, kind, words) in bad_bags {
            expect_err(bag.mean_bags_into(ids, ends, &mut two), kind, words);
        }
        let wide = TokenBags::from_bags(&[vec![5u32]], 10).unwrap();
        assert!(matches!(
            bag.bag_mean(&wide),
            Err(Error::IdOutOfRange { id: 5, .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any table, mapping, weights and ids: the same bits as the plain one-row-at-a-time sum.
        #[test]
        fn matches_the_plain_sum(
            rows in 1usize..6,
            dim in 1usize..140,
            vocab in 1usize..9,
            seed in proptest::prelude::any::<u64>(),
            n in 0usize..23,
            mapped in proptest::prelude::any::<bool>(),
            weighted in proptest::prelude::any::<bool>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let table: Vec<f32> = (0..rows * dim).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let vocab = if mapped { vocab } else { rows };
            let map: Vec<u32> = (0..vocab).map(|_| rng.gen_range(0..rows as u32)).collect();
            let w: Vec<f32> = (0..vocab).map(|_| rng.gen_range(-1.5f32..1.5)).collect();
            let ids: Vec<u32> = (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect();
            let f32t = Tensor::from_slice([rows, dim], &table).unwrap();
            let i8v: Vec<i8> = table.iter().map(|&v| (v * 60.0) as i8).collect();
            let tables = [
                f32t.clone(),
                f32t.to_dtype(DType::F16).unwrap(),
                f32t.to_dtype(DType::BF16).unwrap(),
                Tensor::from_slice([rows, dim], &i8v).unwrap(),
            ];
            let mt = Tensor::from_slice([vocab], &map.iter().map(|&v| v as i64).collect::<Vec<_>>()).unwrap();
            let wt = Tensor::from_slice([vocab], &w).unwrap();
            for t in tables {
                let values = t.to_f32_vec().unwrap();
                let want = naive(&values, dim, mapped.then_some(&map[..]), weighted.then_some(&w[..]), &ids);
                let mut bag = EmbeddingBag::new(t, mapped.then_some(&mt), weighted.then_some(&wt)).unwrap();
                // The SIMD kernels this CPU has and the portable loops: the same bits.
                for isa in [Isa::detect(), Isa::Portable] {
                    bag.isa = isa;
                    let mut out = vec![0f32; dim];
                    bag.mean_into(&ids, &mut out).unwrap();
                    proptest::prop_assert_eq!(&out, &want, "{:?} {:?}", bag.dtype(), isa);
                    // Split into bags at two points: each row the mean of its bag.
                    let cut = [n / 3, n / 3 + n / 2, n];
                    let mut rows_out = vec![1f32; 3 * dim];
                    bag.mean_bags_into(&ids, &cut, &mut rows_out).unwrap();
                    for (i, row) in rows_out.chunks(dim).enumerate() {
                        let lo = if i == 0 { 0 } else { cut[i - 1] };
                        let mut one = vec![0f32; dim];
                        bag.mean_into(&ids[lo..cut[i]], &mut one).unwrap();
                        proptest::prop_assert_eq!(row, &one[..]);
                    }
                }
            }
        }
    }
}
