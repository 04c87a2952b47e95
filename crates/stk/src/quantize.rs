//! Encode options as sentence-transformers 6.2's `SentenceTransformer.encode` applies them
//! after the model's modules (a `Normalize` module included):
//!
//! 1. `truncate_dim`: keep the first `k` dimensions (Matryoshka);
//! 2. `normalize_embeddings`: L2-normalize the truncated rows, only when asked;
//! 3. `precision`: `quantize_embeddings` over the rows of the whole call.
//!
//! [`Precision`] follows `sentence_transformers.util.quantization.quantize_embeddings` (6.2):
//!
//! * `float32`: the rows as they are.
//! * `uint8`: per dimension `start = min`, `step = (max - min) / 255` in f32 (a step of 0, a
//!   constant dimension, becomes 1), and each value `clip(floor((x - start) / step), 0, 255)`,
//!   all in f32 as numpy computes it, so a value at the top of its range lands on 254 or 255 as
//!   the f32 division rounds. `int8`: the same minus 128. NaN gives 0 (numpy's `astype` of NaN
//!   on x86-64). The minima and maxima ([`Ranges`]) come from the rows of the call itself (at
//!   least two rows: sentence-transformers refuses to take ranges from one embedding), or from
//!   calibration embeddings the caller passes (`calibration_embeddings`), whose out-of-range
//!   values clip to 0 / 255.
//! * `binary` / `ubinary`: one bit per dimension, `x > 0`, packed eight to a byte per row with
//!   the first dimension in the high bit (`np.packbits(axis=-1)`), the last byte of a row padded
//!   with zero bits: rows are `ceil(k/8)` bytes; `ubinary` as `uint8`, `binary` as `int8` equal
//!   to the byte minus 128.
//!
//! No rows give an empty `[0, width]` output of the precision's type.

use std::str::FromStr;

use half::f16;
use stk_core::{Error, Result};

/// The `precision` of `SentenceTransformer.encode` / `quantize_embeddings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 values, unchanged.
    #[default]
    Float32,
    /// One signed byte per dimension, from per-dimension ranges.
    Int8,
    /// One unsigned byte per dimension, from per-dimension ranges.
    Uint8,
    /// Sign bits packed into signed bytes (byte − 128).
    Binary,
    /// Sign bits packed into unsigned bytes.
    Ubinary,
}

impl Precision {
    /// Every precision, in sentence-transformers' order.
    pub const ALL: [Precision; 5] = [
        Precision::Float32,
        Precision::Int8,
        Precision::Uint8,
        Precision::Binary,
        Precision::Ubinary,
    ];

    /// sentence-transformers' name.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
            Precision::Uint8 => "uint8",
            Precision::Binary => "binary",
            Precision::Ubinary => "ubinary",
        }
    }

    /// Whether quantizing needs per-dimension [`Ranges`].
    pub fn needs_ranges(self) -> bool {
        matches!(self, Precision::Int8 | Precision::Uint8)
    }

    /// The element type of the output.
    pub fn element_type(self) -> ElementType {
        match self {
            Precision::Float32 => ElementType::F32,
            Precision::Int8 | Precision::Binary => ElementType::I8,
            Precision::Uint8 | Precision::Ubinary => ElementType::U8,
        }
    }

    /// Output elements per row for `k` input dimensions.
    pub fn width(self, k: usize) -> usize {
        match self {
            Precision::Binary | Precision::Ubinary => k.div_ceil(8),
            _ => k,
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown precision `{s}` (expected float32, int8, uint8, binary or ubinary)"
                ))
            })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The element types embeddings are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// What stk computes.
    F32,
    /// f32 rounded to nearest f16 (`--output-dtype f16`).
    F16,
    /// `int8` and `binary` precisions.
    I8,
    /// `uint8` and `ubinary` precisions.
    U8,
}

impl ElementType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            ElementType::F32 => 4,
            ElementType::F16 => 2,
            ElementType::I8 | ElementType::U8 => 1,
        }
    }
    /// The NPY `descr`.
    pub fn npy_descr(self) -> &'static str {
        match self {
            ElementType::F32 => "<f4",
            ElementType::F16 => "<f2",
            ElementType::I8 => "|i1",
            ElementType::U8 => "|u1",
        }
    }
    /// The safetensors `dtype`.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            ElementType::F32 => "F32",
            ElementType::F16 => "F16",
            ElementType::I8 => "I8",
            ElementType::U8 => "U8",
        }
    }
}

/// Owned elements of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<f16>),
    /// Signed bytes (int8, binary).
    I8(Vec<i8>),
    /// Unsigned bytes (uint8, ubinary).
    U8(Vec<u8>),
}

/// Borrowed elements of one type (what writers take).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ElementSlice<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
    /// Signed bytes (int8, binary).
    I8(&'a [i8]),
    /// Unsigned bytes (uint8, ubinary).
    U8(&'a [u8]),
}

impl Elements {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }
    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The type of the elements.
    pub fn element_type(&self) -> ElementType {
        self.as_slice().element_type()
    }
    /// Borrowed.
    pub fn as_slice(&self) -> ElementSlice<'_> {
        match self {
            Elements::F32(v) => ElementSlice::F32(v),
            Elements::F16(v) => ElementSlice::F16(v),
            Elements::I8(v) => ElementSlice::I8(v),
            Elements::U8(v) => ElementSlice::U8(v),
        }
    }
}

impl ElementSlice<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ElementSlice::F32(v) => v.len(),
            ElementSlice::F16(v) => v.len(),
            ElementSlice::I8(v) => v.len(),
            ElementSlice::U8(v) => v.len(),
        }
    }
    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The type of the elements.
    pub fn element_type(&self) -> ElementType {
        match self {
            ElementSlice::F32(_) => ElementType::F32,
            ElementSlice::F16(_) => ElementType::F16,
            ElementSlice::I8(_) => ElementType::I8,
            ElementSlice::U8(_) => ElementType::U8,
        }
    }
}

/// `[rows, cols]` embeddings after the encode options: f32, or the integer elements of a
/// quantized precision (`cols` is then `ceil(k/8)` for binary precisions).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedArray {
    elements: Elements,
    rows: usize,
    cols: usize,
}

impl EncodedArray {
    /// Wrap `elements` (`rows × cols` of them).
    pub fn new(elements: Elements, rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(elements.len()) {
            return Err(Error::shape(
                "encoded embeddings",
                format!("[{rows}, {cols}]"),
                &[elements.len()],
            ));
        }
        Ok(EncodedArray {
            elements,
            rows,
            cols,
        })
    }
    /// Number of embeddings.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Elements per embedding (`ceil(k/8)` bytes for binary precisions).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The element type (f32, i8 or u8).
    pub fn element_type(&self) -> ElementType {
        self.elements.element_type()
    }
    /// The elements, row-major.
    pub fn elements(&self) -> &Elements {
        &self.elements
    }
    /// The elements, row-major, owned.
    pub fn into_elements(self) -> Elements {
        self.elements
    }
}

/// Per-dimension minima and maxima for `int8` / `uint8` (`quantize_embeddings`' `ranges`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges {
    min: Vec<f32>,
    max: Vec<f32>,
}

impl Ranges {
    /// Minima and maxima given directly (`ranges[0]`, `ranges[1]`).
    pub fn new(min: Vec<f32>, max: Vec<f32>) -> Result<Self> {
        if min.len() != max.len() || min.is_empty() {
            return Err(Error::invalid(format!(
                "ranges need as many minima as maxima, at least one (got {} and {})",
                min.len(),
                max.len()
            )));
        }
        Ok(Ranges { min, max })
    }

    /// The ranges of `rows` (`n × dim` values, `n ≥ 1`), as `np.min/np.max(axis=0)`.
    pub fn from_rows(rows: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 || rows.is_empty() || rows.len() % dim != 0 {
            return Err(Error::invalid(format!(
                "int8/uint8 ranges need at least one embedding of width {dim} (got {} values)",
                rows.len()
            )));
        }
        let mut ranges = Ranges {
            min: rows[..dim].to_vec(),
            max: rows[..dim].to_vec(),
        };
        ranges.update(&rows[dim..])?;
        Ok(ranges)
    }

    /// Widen the ranges to cover `rows` too (`k × dim` values).
    pub fn update(&mut self, rows: &[f32]) -> Result<()> {
        let dim = self.dim();
        if rows.len() % dim != 0 {
            return Err(Error::shape(
                "embedding rows for ranges",
                format!("a multiple of {dim} values"),
                &[rows.len()],
            ));
        }
        for row in rows.chunks_exact(dim) {
            for ((lo, hi), &x) in self.min.iter_mut().zip(&mut self.max).zip(row) {
                // np.min / np.max propagate NaN.
                if x < *lo || x.is_nan() {
                    *lo = x;
                }
                if x > *hi || x.is_nan() {
                    *hi = x;
                }
            }
        }
        Ok(())
    }

    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        self.min.len()
    }
    /// Per-dimension minima (`ranges[0]`).
    pub fn min(&self) -> &[f32] {
        &self.min
    }
    /// Per-dimension maxima (`ranges[1]`).
    pub fn max(&self) -> &[f32] {
        &self.max
    }

    /// `(starts, steps)`: `min` and `(max - min) / 255`, in f32 as numpy computes them.
    fn starts_steps(&self) -> (&[f32], Vec<f32>) {
        let steps = self
            .min
            .iter()
            .zip(&self.max)
            .map(|(&lo, &hi)| {
                let step = (hi - lo) / 255.0;
                if step == 0.0 {
                    1.0
                } else {
                    step
                }
            })
            .collect();
        (&self.min, steps)
    }

    /// Error unless these ranges cover `k` dimensions.
    pub fn check_width(&self, k: usize) -> Result<()> {
        if self.dim() != k {
            return Err(Error::invalid(format!(
                "calibration width mismatch: ranges of {} dimensions for embeddings of {k} \
                 (calibration embeddings must be truncated to the output width)",
                self.dim()
            )));
        }
        Ok(())
    }
}

/// The options `SentenceTransformer.encode` applies after the modules. The default changes
/// nothing (all dimensions, no extra normalization, float32).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodeOptions {
    /// Keep the first `k` dimensions (`None`: all); `1 ≤ k ≤ dim`.
    pub truncate_dim: Option<usize>,
    /// L2-normalize after truncation (whatever the model already did).
    pub normalize_embeddings: bool,
    /// float32 (default), int8, uint8, binary or ubinary.
    pub precision: Precision,
    /// int8/uint8 ranges from calibration embeddings ([`Ranges::from_rows`]) instead of the
    /// rows being encoded; must cover the truncated width.
    pub calibration: Option<Ranges>,
}

impl EncodeOptions {
    /// Whether these options change nothing.
    pub fn is_identity(&self) -> bool {
        self.truncate_dim.is_none()
            && !self.normalize_embeddings
            && self.precision == Precision::Float32
    }

    /// The truncated width `k` for a model of width `dim`; an error for `0` or `k > dim`, or
    /// calibration ranges of another width.
    pub fn truncated_dim(&self, dim: usize) -> Result<usize> {
        let k = match self.truncate_dim {
            None => dim,
            Some(k) if k == 0 || k > dim => {
                return Err(Error::invalid(format!(
                    "truncate_dim {k} is out of range: the model's embeddings have {dim} \
                     dimensions (expected 1..={dim})"
                )))
            }
            Some(k) => k,
        };
        if let Some(ranges) = &self.calibration {
            ranges.check_width(k)?;
        }
        Ok(k)
    }

    /// Output `(element type, columns)` for a model of width `dim`.
    pub fn output_shape(&self, dim: usize) -> Result<(ElementType, usize)> {
        let k = self.truncated_dim(dim)?;
        Ok((self.precision.element_type(), self.precision.width(k)))
    }

    /// Steps 1 and 2: `rows` (`n × dim` model outputs) truncated to `k` and normalized when
    /// asked, as f32.
    pub fn truncate_and_normalize(&self, rows: &[f32], dim: usize) -> Result<Vec<f32>> {
        let k = self.truncated_dim(dim)?;
        if dim == 0 || rows.len() % dim != 0 {
            return Err(Error::shape(
                "model outputs",
                format!("a multiple of {dim} values"),
                &[rows.len()],
            ));
        }
        let mut out: Vec<f32> = if k == dim {
            rows.to_vec()
        } else {
            rows.chunks_exact(dim)
                .flat_map(|r| &r[..k])
                .copied()
                .collect()
        };
        if self.normalize_embeddings {
            out.chunks_exact_mut(k)
                .for_each(stk_cpu::normalize::normalize_in_place);
        }
        Ok(out)
    }

    /// All three steps over the rows of one call (`n × dim` model outputs): int8/uint8 take
    /// their ranges from [`EncodeOptions::calibration`], else from these rows.
    pub fn apply(&self, rows: &[f32], dim: usize) -> Result<EncodedArray> {
        let k = self.truncated_dim(dim)?;
        let prepared = self.truncate_and_normalize(rows, dim)?;
        quantize_embeddings(&prepared, k, self.precision, self.calibration.as_ref())
    }
}

/// `quantize_embeddings(embeddings, precision, ranges)` for `rows` (`n × k` f32 values):
/// int8/uint8 take `ranges`, or when `None` the ranges of `rows` themselves.
///
/// ```
/// use stk::quantize::{quantize_embeddings, Elements, Precision};
/// // [3, 1]: the range is [0, 1]; as in numpy, the maximum lands in bucket 254, not 255
/// // (1 / (1 / 255) is 254.99998 in f32).
/// let uint8 = quantize_embeddings(&[0.0, 1.0, 0.5], 1, Precision::Uint8, None)?;
/// assert_eq!(uint8.elements(), &Elements::U8(vec![0, 254, 127]));
/// // [2, 3] sign bits, first dimension in the high bit: rows of ceil(3/8) = 1 byte.
/// let rows = [0.5, -1.0, 2.0, 0.0, 1.0, -2.0];
/// let packed = quantize_embeddings(&rows, 3, Precision::Ubinary, None)?;
/// assert_eq!(packed.elements(), &Elements::U8(vec![0b1010_0000, 0b0100_0000]));
/// # Ok::<(), stk::Error>(())
/// ```
pub fn quantize_embeddings(
    rows: &[f32],
    k: usize,
    precision: Precision,
    ranges: Option<&Ranges>,
) -> Result<EncodedArray> {
    if k == 0 || rows.len() % k != 0 {
        return Err(Error::shape(
            "embeddings to quantize",
            format!("a multiple of {k} values (k ≥ 1)"),
            &[rows.len()],
        ));
    }
    let n = rows.len() / k;
    let own;
    let ranges = match ranges {
        Some(r) => {
            r.check_width(k)?;
            Some(r)
        }
        None if precision.needs_ranges() && n == 1 => {
            return Err(Error::invalid(format!(
                "cannot compute {precision} ranges from a single embedding: pass calibration \
                 embeddings (or encode more texts at once)"
            )))
        }
        None if precision.needs_ranges() && n > 1 => {
            own = Ranges::from_rows(rows, k)?;
            Some(&own)
        }
        None => None,
    };
    let elements = match (precision, ranges) {
        (Precision::Float32, _) => Elements::F32(rows.to_vec()),
        (Precision::Uint8, Some(r)) => Elements::U8(scale_to_bytes(rows, r, 0.0)),
        (Precision::Int8, Some(r)) => Elements::I8(
            scale_to_bytes(rows, r, 128.0)
                .into_iter()
                .map(|b| b as i8)
                .collect(),
        ),
        (Precision::Ubinary, _) => Elements::U8(pack_sign_bits(rows, k)),
        // The packed byte minus 128, as a signed byte: the byte with its high bit flipped.
        (Precision::Binary, _) => Elements::I8(
            pack_sign_bits(rows, k)
                .into_iter()
                .map(|b| (b ^ 0x80) as i8)
                .collect(),
        ),
        // No rows: nothing to calibrate.
        (Precision::Int8, None) => Elements::I8(Vec::new()),
        (Precision::Uint8, None) => Elements::U8(Vec::new()),
    };
    EncodedArray::new(elements, n, precision.width(k))
}

/// `clip(floor((x - start) / step), 0, 255) - offset` per value, in f32 as numpy computes it,
/// then converted to a byte (NaN gives 0, as numpy's `astype` does on x86-64).
fn scale_to_bytes(rows: &[f32], ranges: &Ranges, offset: f32) -> Vec<u8> {
    let k = ranges.dim();
    let (starts, steps) = ranges.starts_steps();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.chunks_exact(k) {
        for ((&x, &start), &step) in row.iter().zip(starts).zip(&steps) {
            out.push(bucket_byte((x - start) / step, offset));
        }
    }
    out
}

/// `(clip(floor(scaled), 0, 255) - offset)` as the byte numpy's `astype(uint8/int8)` gives.
pub fn bucket_byte(scaled: f32, offset: f32) -> u8 {
    let q = scaled.floor().clamp(0.0, 255.0) - offset;
    if q.is_nan() {
        0
    } else {
        // q is an integer in [-128, 255]: the cast is exact; `as u8` keeps an i8's bits.
        q as i32 as u8
    }
}

/// `x > 0` bits of each row packed into bytes, first dimension in the high bit; a row's last
/// byte is padded with zero bits.
fn pack_sign_bits(rows: &[f32], k: usize) -> Vec<u8> {
    let width = k.div_ceil(8);
    let mut out = Vec::with_capacity(rows.len() / k * width);
    for row in rows.chunks_exact(k) {
        for chunk in row.chunks(8) {
            let byte = chunk
                .iter()
                .enumerate()
                .fold(0u8, |b, (i, &x)| b | (u8::from(x > 0.0) << (7 - i)));
            out.push(byte);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `np.clip(np.floor(v), 0, 255).astype(np.uint8)` and `(... - 128).astype(np.int8)` with
    /// numpy 2.4 on x86-64, checked with the real library.
    #[test]
    fn buckets_match_numpy() {
        let cases: [(f32, u8, i8); 10] = [
            (-3.5, 0, -128),
            (-0.0, 0, -128),
            (0.99, 0, -128),
            (127.9, 127, -1),
            (128.0, 128, 0),
            (254.99998, 254, 126),
            (255.0, 255, 127),
            (300.2, 255, 127),
            (f32::INFINITY, 255, 127),
            (f32::NAN, 0, 0),
        ];
        for (x, u, i) in cases {
            assert_eq!(bucket_byte(x, 0.0), u, "uint8 {x}");
            assert_eq!(bucket_byte(x, 128.0) as i8, i, "int8 {x}");
        }
    }

    #[test]
    fn binary_packs_high_bit_first_and_pads_rows() {
        let rows = [1.0, -1.0, 0.0, 2.0, 0.5, 0.5, 0.5, 0.5, 3.0, f32::NAN, -0.0];
        let q = quantize_embeddings(&rows, 11, Precision::Ubinary, None).unwrap();
        assert_eq!((q.rows(), q.cols()), (1, 2));
        assert_eq!(q.elements(), &Elements::U8(vec![0b1001_1111, 0b1000_0000]));
        let b = quantize_embeddings(&rows, 11, Precision::Binary, None).unwrap();
        assert_eq!(b.elements(), &Elements::I8(vec![31, 0]));
    }

    #[test]
    fn int8_ranges_of_the_call() {
        // Column 0 spans [0, 255]: steps of 1; column 1 is constant: a step of 1.
        let rows = [0.0, 5.0, 255.0, 5.0, 100.7, 5.0];
        let u = quantize_embeddings(&rows, 2, Precision::Uint8, None).unwrap();
        assert_eq!(u.elements(), &Elements::U8(vec![0, 0, 255, 0, 100, 0]));
        let i = quantize_embeddings(&rows, 2, Precision::Int8, None).unwrap();
        assert_eq!(
            i.elements(),
            &Elements::I8(vec![-128, -128, 127, -128, -28, -128])
        );
        // Calibration ranges: values outside them clip.
        let cal = Ranges::new(vec![10.0, 0.0], vec![265.0, 255.0]).unwrap();
        let u = quantize_embeddings(&rows, 2, Precision::Uint8, Some(&cal)).unwrap();
        assert_eq!(u.elements(), &Elements::U8(vec![0, 5, 245, 5, 90, 5]));
        // One row has no ranges of its own; no rows give an empty output.
        let e = quantize_embeddings(&rows[..2], 2, Precision::Int8, None).unwrap_err();
        assert!(e.to_string().contains("single embedding"), "{e}");
        let empty = quantize_embeddings(&[], 2, Precision::Uint8, None).unwrap();
        assert_eq!((empty.rows(), empty.cols()), (0, 2));
    }

    #[test]
    fn options_are_checked() {
        let bad = |o: EncodeOptions| o.apply(&[1.0; 8], 4).unwrap_err().to_string();
        let e = bad(EncodeOptions {
            truncate_dim: Some(0),
            ..Default::default()
        });
        assert!(e.contains("truncate_dim 0 is out of range"), "{e}");
        let e = bad(EncodeOptions {
            truncate_dim: Some(5),
            ..Default::default()
        });
        assert!(e.contains("expected 1..=4"), "{e}");
        let e = bad(EncodeOptions {
            truncate_dim: Some(2),
            precision: Precision::Int8,
            calibration: Some(Ranges::from_rows(&[0.0; 3], 3).unwrap()),
            ..Default::default()
        });
        assert!(e.contains("calibration width mismatch"), "{e}");
        let e = "fp8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("unknown precision `fp8`"), "{e}");
    }

    #[test]
    fn truncation_then_normalization() {
        let o = EncodeOptions {
            truncate_dim: Some(2),
            normalize_embeddings: true,
            ..Default::default()
        };
        let q = o.apply(&[3.0, 4.0, 100.0, 0.0, -2.0, 9.0], 3).unwrap();
        assert_eq!(q.elements(), &Elements::F32(vec![0.6, 0.8, 0.0, -1.0]));
    }
}
