//! Embedding rows as the bytes of an output file, formatted in parallel into buffers that are
//! kept from batch to batch (their pages stay mapped), so that the writer only writes.
//!
//! Rows whose bytes in memory are already the file's (f32, f16 or byte elements into a
//! `.npy` / `.safetensors` of that type, on a little-endian machine) are not copied at all:
//! [`RowLayout::as_is`]. Everything else (f32 rounded to f16, `.jsonl` text) is formatted by
//! [`RowLayout::format_into`], a part of at most [`ROWS_PER_PART`] rows per rayon task.

use half::f16;
use rayon::prelude::*;
use stk_core::{Error, Result};

use super::OutputFormat;
use crate::quantize::{ElementSlice, ElementType};

/// Rows formatted by one task: enough work to hide the task's overhead, small enough that a
/// batch spreads over every thread (a `.jsonl` part of 256 rows of 256 values is ~0.7 MB).
pub(super) const ROWS_PER_PART: usize = 256;

/// What a file's rows look like: its format, element type and row width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowLayout {
    pub format: OutputFormat,
    /// The element type of the file.
    pub dtype: ElementType,
    /// Elements per row.
    pub dim: usize,
}

impl RowLayout {
    /// Whether `data` can be written: whole rows, of the file's element type (or f32 for an
    /// f16 file, rounded to nearest). `what()` names the rows in an error (made only then).
    pub fn check(&self, data: ElementSlice<'_>, what: impl Fn() -> String) -> Result<()> {
        if data.len() % self.dim != 0 {
            return Err(Error::shape(
                what(),
                format!("a multiple of {} values", self.dim),
                &[data.len()],
            ));
        }
        match (self.dtype, data.element_type()) {
            (ElementType::F16, ElementType::F32) => Ok(()),
            (want, got) if want == got => Ok(()),
            (want, got) => Err(Error::dtype(
                what(),
                format!("{want:?}"),
                format!("{got:?}"),
            )),
        }
    }

    /// The file's bytes for `data` when they are `data`'s own bytes in memory (checked rows).
    pub fn as_is<'a>(&self, data: ElementSlice<'a>) -> Option<&'a [u8]> {
        if self.format == OutputFormat::Jsonl
            || self.dtype != data.element_type()
            || cfg!(target_endian = "big")
        {
            return None;
        }
        Some(match data {
            ElementSlice::F32(v) => bytemuck::cast_slice(v),
            ElementSlice::F16(v) => bytemuck::cast_slice(v),
            ElementSlice::I8(v) => bytemuck::cast_slice(v),
            ElementSlice::U8(v) => v,
        })
    }

    /// Format checked rows into `parts` (one per task, in row order; their allocations are
    /// reused): little-endian elements for `.npy` / `.safetensors`, JSON lines for `.jsonl`.
    pub fn format_into(&self, data: ElementSlice<'_>, parts: &mut Vec<Vec<u8>>) -> Result<()> {
        self.check(data, || "embedding rows".into())?;
        let dim = self.dim;
        let jsonl = self.format == OutputFormat::Jsonl;
        let to_f16 = self.dtype == ElementType::F16;
        match data {
            // f32 rows into an f16 file: rounded first; `.jsonl` then holds the f16 values (as
            // the f32 they are), the same numbers `.npy` would.
            ElementSlice::F32(v) if to_f16 && jsonl => fill_parts(v, dim, parts, |rows, out| {
                jsonl_rows(rows, dim, out, |x, out| {
                    push_f32(f16::from_f32(x).to_f32(), out)
                })
            }),
            ElementSlice::F32(v) if to_f16 => fill_parts(v, dim, parts, |rows, out| {
                out.extend(rows.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()))
            }),
            ElementSlice::F32(v) if jsonl => fill_parts(v, dim, parts, |rows, out| {
                jsonl_rows(rows, dim, out, push_f32)
            }),
            ElementSlice::F32(v) => fill_parts(v, dim, parts, |rows, out| {
                out.extend(rows.iter().flat_map(|x| x.to_le_bytes()))
            }),
            ElementSlice::F16(v) if jsonl => fill_parts(v, dim, parts, |rows, out| {
                jsonl_rows(rows, dim, out, |x, out| push_f32(x.to_f32(), out))
            }),
            ElementSlice::F16(v) => fill_parts(v, dim, parts, |rows, out| {
                out.extend(rows.iter().flat_map(|x| x.to_le_bytes()))
            }),
            ElementSlice::I8(v) if jsonl => fill_parts(v, dim, parts, |rows, out| {
                jsonl_rows(rows, dim, out, |x, out| push_int(x.into(), out))
            }),
            ElementSlice::I8(v) => fill_parts(v, dim, parts, |rows, out| {
                out.extend(rows.iter().map(|&x| x as u8))
            }),
            ElementSlice::U8(v) if jsonl => fill_parts(v, dim, parts, |rows, out| {
                jsonl_rows(rows, dim, out, |x, out| push_int(x.into(), out))
            }),
            ElementSlice::U8(v) => fill_parts(v, dim, parts, |rows, out| out.extend(rows)),
        }
        Ok(())
    }
}

/// `format(rows, out)` on parts of [`ROWS_PER_PART`] rows of `values`, in parallel, each into
/// its own (cleared) buffer of `parts`; `parts` ends with exactly one buffer per part.
/// Each buffer is reserved once for the longest text a part can take (see [`max_bytes`]): it
/// never grows by copying, and pages it does not use are never touched (nor resident).
fn fill_parts<T: Sync>(
    values: &[T],
    dim: usize,
    parts: &mut Vec<Vec<u8>>,
    format: impl Fn(&[T], &mut Vec<u8>) + Sync,
) {
    let per_part = dim * ROWS_PER_PART;
    let count = values.len().div_ceil(per_part);
    parts.resize_with(count, Vec::new);
    parts
        .par_iter_mut()
        .zip(values.par_chunks(per_part))
        .for_each(|(out, rows)| {
            out.clear();
            out.reserve(max_bytes::<T>(rows.len(), dim));
            format(rows, out);
        });
}

/// Bytes a part of `values` elements takes in any layout, as a reservation: 16 per value (a
/// sign, the 9 digits an f32 needs at most, a point, `e-38` and a comma; embeddings, all of
/// magnitude < 1, never take more), 3 per row (`[`, `]\n`). Longer texts (large values in
/// fixed notation) only make the buffer grow.
fn max_bytes<T>(values: usize, dim: usize) -> usize {
    values * 16.max(std::mem::size_of::<T>()) + values / dim * 3
}

/// Rows as JSON lines: `[v0,v1,...]\n` per row, each value written by `number`.
fn jsonl_rows<T: Copy>(
    values: &[T],
    dim: usize,
    out: &mut Vec<u8>,
    mut number: impl FnMut(T, &mut Vec<u8>),
) {
    for row in values.chunks_exact(dim) {
        out.push(b'[');
        for (i, &v) in row.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            number(v, out);
        }
        out.extend_from_slice(b"]\n");
    }
}

/// A float as `serde_json` writes it: the shortest text that reads back as the same f32
/// (`zmij`, the formatter `serde_json` itself uses, ~2x faster than `ryu`), `null` for NaN
/// and infinities.
pub(super) fn push_f32(v: f32, out: &mut Vec<u8>) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An integer element (int8 / uint8) in decimal.
fn push_int(v: i16, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    let magnitude = v.unsigned_abs();
    let digits = [magnitude / 100, magnitude / 10 % 10, magnitude % 10];
    let first = digits.iter().position(|&d| d != 0).unwrap_or(2);
    out.extend(digits[first..].iter().map(|&d| b'0' + d as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(format: OutputFormat, dtype: ElementType, dim: usize) -> RowLayout {
        RowLayout { format, dtype, dim }
    }

    fn formatted(layout: RowLayout, data: ElementSlice<'_>) -> Vec<u8> {
        let mut parts = vec![b"stale".to_vec(); 5];
        layout.format_into(data, &mut parts).unwrap();
        parts.concat()
    }

    /// The `.jsonl` text is what `serde_json` writes, value for value, across parts.
    #[test]
    fn jsonl_rows_match_serde_json() {
        let special = [
            0.0f32,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e-45,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            123456.79,
            1e16,
            -2.5e-7,
            f32::MIN,
        ];
        // Enough rows for several parts, so that their order is checked too.
        let values: Vec<f32> = (0..ROWS_PER_PART * 3 + 7)
            .flat_map(|r| special.iter().map(move |&v| v * (r % 5) as f32))
            .collect();
        let want: String = values
            .chunks(special.len())
            .map(|row| serde_json::to_string(row).unwrap() + "\n")
            .collect();
        let jsonl = layout(OutputFormat::Jsonl, ElementType::F32, special.len());
        let got = formatted(jsonl, ElementSlice::F32(&values));
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }

    /// Every finite f32 written reads back as the same f32, bit for bit (negative zero and
    /// subnormals included): a sweep over the bit patterns with a stride that reaches every
    /// exponent, the powers of ten, and the extremes.
    #[test]
    fn jsonl_floats_round_trip() {
        let mut values: Vec<f32> = (0..=u32::MAX)
            .step_by(4093)
            .map(f32::from_bits)
            .filter(|v| v.is_finite())
            .collect();
        values.extend((-45..=38).map(|e| format!("1e{e}").parse::<f32>().unwrap()));
        values.extend((-45..=38).map(|e| -format!("1e{e}").parse::<f32>().unwrap()));
        values.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            -f32::from_bits(1),
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
        ]);
        let mut out = Vec::new();
        for &v in &values {
            out.clear();
            push_f32(v, &mut out);
            let text = std::str::from_utf8(&out).unwrap();
            let back: f32 = text.parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} written as {text}");
            // And as JSON, the way readers of the file parse it.
            let json: f32 = serde_json::from_str(text).unwrap();
            assert_eq!(json.to_bits(), v.to_bits(), "{v:e} written as {text}");
        }
        assert!(values.len() > 1_000_000, "{}", values.len());
    }

    #[test]
    fn integers_in_decimal() {
        let mut out = Vec::new();
        for v in [
            -128i16, -100, -10, -9, -1, 0, 1, 9, 10, 99, 100, 127, 200, 255,
        ] {
            out.clear();
            push_int(v, &mut out);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), v.to_string());
        }
    }

    /// Binary layouts: f32 rounded to f16, and what goes out as it is.
    #[test]
    fn binary_rows() {
        let values = [1.0f32, -0.5, 65504.0, 1e-8, 0.1, 3.0];
        let f16_npy = layout(OutputFormat::Npy, ElementType::F16, 3);
        let want: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(formatted(f16_npy, ElementSlice::F32(&values)), want);
        assert_eq!(f16_npy.as_is(ElementSlice::F32(&values)), None);
        let f32_st = layout(OutputFormat::Safetensors, ElementType::F32, 3);
        let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(formatted(f32_st, ElementSlice::F32(&values)), le);
        if cfg!(target_endian = "little") {
            assert_eq!(f32_st.as_is(ElementSlice::F32(&values)), Some(&le[..]));
        }
        let jsonl = layout(OutputFormat::Jsonl, ElementType::F32, 3);
        assert_eq!(jsonl.as_is(ElementSlice::F32(&values)), None);
        let i8_npy = layout(OutputFormat::Npy, ElementType::I8, 2);
        assert_eq!(formatted(i8_npy, ElementSlice::I8(&[-1, 2])), [255, 2]);
        // An empty batch leaves no part behind.
        let mut parts = vec![vec![1u8]];
        f32_st
            .format_into(ElementSlice::F32(&[]), &mut parts)
            .unwrap();
        assert!(parts.is_empty());
    }
}
