//! Reading texts and writing embeddings as streams, so that `stk encode` keeps its memory
//! bounded by a few batches whatever the size of the input; reading, encoding and writing
//! overlap (see [`encode_stream`]).
//!
//! * Input ([`TextSource`]): a `.json` file holding one JSON array of strings, any other file as
//!   one text per line (`\n` or `\r\n`; a final newline does not start another text), or stdin
//!   as lines. A line that is not UTF-8 is an error naming its number.
//! * Output ([`OutputFormat`], by extension): `.safetensors` (tensor `embeddings`, f32
//!   `[N, D]`), `.npy` (NPY 1.0, `<f4`, C order) or `.jsonl` (one JSON array per line); f16
//!   (`F16`, `<f2`, values rounded to f16) when asked ([`StreamOptions::output_dtype`]).
//!   The safetensors and NPY headers hold `N`, unknown until the input ends: they are written
//!   at a fixed, space-padded size first and rewritten in place at the end. Every output goes
//!   through [`write_file_atomic`]: on any error, no file (partial or not) is left behind.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};

use rayon::prelude::*;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use stk_core::{write_file_atomic, DType, Error, Result};

use crate::model::Model;

/// Where texts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// One text per line.
    Lines(PathBuf),
    /// A JSON array of strings.
    JsonArray(PathBuf),
    /// One text per line from standard input.
    Stdin,
}

impl TextSource {
    /// `-` is stdin; a `.json` file is a JSON array; any other file is read line by line.
    pub fn from_arg(arg: &Path) -> TextSource {
        if arg.as_os_str() == "-" {
            TextSource::Stdin
        } else if has_extension(arg, "json") {
            TextSource::JsonArray(arg.to_path_buf())
        } else {
            TextSource::Lines(arg.to_path_buf())
        }
    }

    /// The name used in messages.
    pub fn display_path(&self) -> PathBuf {
        match self {
            TextSource::Lines(p) | TextSource::JsonArray(p) => p.clone(),
            TextSource::Stdin => PathBuf::from("<stdin>"),
        }
    }

    /// Byte size of the input when it is a file (for progress).
    pub fn len_bytes(&self) -> Option<u64> {
        match self {
            TextSource::Lines(p) | TextSource::JsonArray(p) => {
                std::fs::metadata(p).ok().map(|m| m.len())
            }
            TextSource::Stdin => None,
        }
    }

    /// Call `on_batch` with successive batches of at most `batch_size` texts (the last batch
    /// may be shorter; no call for an empty input). `on_batch` also receives the number of
    /// input bytes consumed so far (0 when unknown). Returns the number of texts.
    pub fn for_each_batch(
        &self,
        batch_size: usize,
        mut on_batch: impl FnMut(&[&str], u64) -> Result<()>,
    ) -> Result<u64> {
        if batch_size == 0 {
            return Err(Error::invalid("the batch size must be at least 1"));
        }
        match self {
            TextSource::Lines(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                for_each_line_batch(
                    BufReader::with_capacity(1 << 20, file),
                    p,
                    batch_size,
                    &mut on_batch,
                )
            }
            TextSource::Stdin => {
                let stdin = std::io::stdin();
                for_each_line_batch(
                    stdin.lock(),
                    &self.display_path(),
                    batch_size,
                    &mut on_batch,
                )
            }
            TextSource::JsonArray(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                for_each_json_batch(
                    BufReader::with_capacity(1 << 20, file),
                    p,
                    batch_size,
                    &mut on_batch,
                )
            }
        }
    }

    /// Every text, in memory (for inputs known to be small, such as benchmarks).
    pub fn read_all(&self) -> Result<Vec<String>> {
        let mut all = Vec::new();
        self.for_each_batch(8192, |batch, _| {
            all.extend(batch.iter().map(|s| s.to_string()));
            Ok(())
        })?;
        Ok(all)
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Lines of `reader` in batches; `\n` ends a line, a `\r` before it is dropped.
pub fn for_each_line_batch<R: BufRead>(
    mut reader: R,
    path: &Path,
    batch_size: usize,
    on_batch: &mut dyn FnMut(&[&str], u64) -> Result<()>,
) -> Result<u64> {
    let mut texts: Vec<String> = Vec::with_capacity(batch_size.min(1 << 16));
    let mut buf = Vec::new();
    let mut line_no: usize = 0;
    let mut consumed: u64 = 0;
    let mut total: u64 = 0;
    let mut flush = |texts: &mut Vec<String>, consumed: u64| -> Result<()> {
        if texts.is_empty() {
            return Ok(());
        }
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        on_batch(&refs, consumed)?;
        texts.clear();
        Ok(())
    };
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        consumed += n as u64;
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let text = std::str::from_utf8(&buf).map_err(|_| Error::InvalidUtf8 {
            path: path.to_path_buf(),
            line: line_no,
        })?;
        texts.push(text.to_owned());
        total += 1;
        if texts.len() == batch_size {
            flush(&mut texts, consumed)?;
        }
    }
    flush(&mut texts, consumed)?;
    Ok(total)
}

/// The strings of a JSON array in batches, parsed as they are read.
pub fn for_each_json_batch<R: Read>(
    reader: R,
    path: &Path,
    batch_size: usize,
    on_batch: &mut dyn FnMut(&[&str], u64) -> Result<()>,
) -> Result<u64> {
    struct Batches<'a> {
        batch_size: usize,
        on_batch: &'a mut dyn FnMut(&[&str], u64) -> Result<()>,
        /// The callback's own error, kept to be returned as it is (not as a JSON error).
        failed: Option<Error>,
    }
    impl<'de> DeserializeSeed<'de> for &mut Batches<'_> {
        type Value = u64;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<u64, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for &mut Batches<'_> {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<u64, A::Error> {
            let mut texts: Vec<String> = Vec::with_capacity(self.batch_size.min(1 << 16));
            let mut total = 0u64;
            let flush = |texts: &mut Vec<String>,
                         this: &mut Batches<'_>|
             -> std::result::Result<(), A::Error> {
                if texts.is_empty() {
                    return Ok(());
                }
                let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
                if let Err(e) = (this.on_batch)(&refs, 0) {
                    this.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
                texts.clear();
                Ok(())
            };
            while let Some(text) = seq.next_element::<String>()? {
                texts.push(text);
                total += 1;
                if texts.len() == self.batch_size {
                    flush(&mut texts, self)?;
                }
            }
            flush(&mut texts, self)?;
            Ok(total)
        }
    }

    let mut batches = Batches {
        batch_size,
        on_batch,
        failed: None,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = (&mut batches)
        .deserialize(&mut de)
        .and_then(|n| de.end().map(|_| n));
    match (result, batches.failed) {
        (_, Some(e)) => Err(e),
        (Ok(n), None) => Ok(n),
        (Err(e), None) => Err(Error::config(
            path,
            format!("expected a JSON array of strings: {e}"),
        )),
    }
}

/// Output file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Tensor `embeddings`, f32 `[N, D]`.
    Safetensors,
    /// NPY 1.0, `<f4`, C order, shape `(N, D)`.
    Npy,
    /// One JSON array of numbers per line.
    Jsonl,
}

impl OutputFormat {
    pub fn from_path(path: &Path) -> Result<OutputFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("safetensors") => Ok(OutputFormat::Safetensors),
            Some("npy") => Ok(OutputFormat::Npy),
            Some("jsonl") => Ok(OutputFormat::Jsonl),
            _ => Err(Error::invalid(format!(
                "output `{}`: unknown extension (expected .safetensors, .npy or .jsonl)",
                path.display()
            ))),
        }
    }
}

/// Name of the tensor in `.safetensors` outputs.
pub const SAFETENSORS_NAME: &str = "embeddings";

/// Bytes reserved for the NPY preamble + header (a multiple of 64, as NPY asks, and room for
/// any `(N, D)` pair of u64 values).
const NPY_HEADER_BYTES: usize = 128;
/// Bytes reserved for the safetensors JSON header (a multiple of 8, so the f32 data stays
/// aligned for readers that map the file).
const SAFETENSORS_HEADER_BYTES: usize = 192;

/// The element types embeddings can be written in: f32 (what stk computes) or f16 (the size
/// model2vec's `encode` answers in for an f16 table).
pub fn check_output_dtype(dtype: DType) -> Result<DType> {
    match dtype {
        DType::F32 | DType::F16 => Ok(dtype),
        other => Err(Error::invalid(format!(
            "output dtype {other} is not written (expected f32 or f16)"
        ))),
    }
}

/// Writes `[N, D]` rows as they come; the header is fixed up by [`EmbeddingWriter::finish`].
pub struct EmbeddingWriter<W: Write + Seek> {
    out: W,
    format: OutputFormat,
    /// f32 or f16 ([`check_output_dtype`]).
    dtype: DType,
    dim: usize,
    rows: u64,
}

impl<W: Write + Seek> EmbeddingWriter<W> {
    /// Start an f32 file: reserves the header.
    pub fn new(out: W, format: OutputFormat, dim: usize, path: &Path) -> Result<Self> {
        Self::with_dtype(out, format, DType::F32, dim, path)
    }

    /// Start a file whose values are written as `dtype` (f32 or f16).
    pub fn with_dtype(
        mut out: W,
        format: OutputFormat,
        dtype: DType,
        dim: usize,
        path: &Path,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("cannot write embeddings of width 0"));
        }
        let dtype = check_output_dtype(dtype)?;
        let io = |e| Error::io(path, e);
        match format {
            OutputFormat::Npy => out.write_all(&npy_header(0, dim, dtype)?).map_err(io)?,
            OutputFormat::Safetensors => out
                .write_all(&safetensors_header(0, dim, dtype)?)
                .map_err(io)?,
            OutputFormat::Jsonl => {}
        }
        Ok(EmbeddingWriter {
            out,
            format,
            dtype,
            dim,
            rows: 0,
        })
    }

    /// Append rows (`k × dim` values).
    pub fn write_rows(&mut self, data: &[f32], path: &Path) -> Result<()> {
        if data.len() % self.dim != 0 {
            return Err(Error::shape(
                "embedding rows",
                format!("a multiple of {} values", self.dim),
                &[data.len()],
            ));
        }
        let io = |e| Error::io(path, e);
        match self.format {
            OutputFormat::Npy | OutputFormat::Safetensors => match self.dtype {
                DType::F16 => write_f16_le(&mut self.out, data).map_err(io)?,
                _ => write_f32_le(&mut self.out, data).map_err(io)?,
            },
            OutputFormat::Jsonl => {
                // f16 output: values rounded to f16 first, so the text holds what .npy would.
                let rounded: Vec<f32>;
                let data = match self.dtype {
                    DType::F16 => {
                        rounded = data
                            .iter()
                            .map(|&v| half::f16::from_f32(v).to_f32())
                            .collect();
                        &rounded[..]
                    }
                    _ => data,
                };
                // Rows are formatted in parallel, a block at a time, and written in order.
                let block = self.dim * JSONL_ROWS_PER_TASK;
                let mut texts: Vec<Vec<u8>> = Vec::new();
                data.par_chunks(block)
                    .map(|rows| jsonl_rows(rows, self.dim))
                    .collect_into_vec(&mut texts);
                for text in &texts {
                    self.out.write_all(text).map_err(io)?;
                }
            }
        }
        self.rows += (data.len() / self.dim) as u64;
        Ok(())
    }

    /// Rewrite the header with the final row count; returns the number of rows.
    pub fn finish(mut self, path: &Path) -> Result<u64> {
        let io = |e| Error::io(path, e);
        let header = match self.format {
            OutputFormat::Npy => Some(npy_header(self.rows, self.dim, self.dtype)?),
            OutputFormat::Safetensors => Some(safetensors_header(self.rows, self.dim, self.dtype)?),
            OutputFormat::Jsonl => None,
        };
        if let Some(h) = header {
            self.out.seek(SeekFrom::Start(0)).map_err(io)?;
            self.out.write_all(&h).map_err(io)?;
            self.out.seek(SeekFrom::End(0)).map_err(io)?;
        }
        self.out.flush().map_err(io)?;
        Ok(self.rows)
    }
}

/// Rows of a `.jsonl` output formatted by one task.
const JSONL_ROWS_PER_TASK: usize = 256;

/// `rows` (`k × dim` values) as JSON lines: `[v0,v1,...]\n` per row, each value in the
/// shortest form that reads back as the same f32 (`ryu`), spelled as `serde_json` spells it
/// (`e+` for positive exponents, `null` for NaN and infinities).
fn jsonl_rows(rows: &[f32], dim: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(rows.len() * 12);
    let mut number = ryu::Buffer::new();
    for row in rows.chunks_exact(dim) {
        text.push(b'[');
        for (i, &v) in row.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            if v.is_finite() {
                let digits = number.format_finite(v).as_bytes();
                // serde_json writes a positive exponent with its sign (`1e+38`); ryu does not.
                match digits.iter().position(|&b| b == b'e') {
                    Some(e) if digits.get(e + 1) != Some(&b'-') => {
                        text.extend_from_slice(&digits[..=e]);
                        text.push(b'+');
                        text.extend_from_slice(&digits[e + 1..]);
                    }
                    _ => text.extend_from_slice(digits),
                }
            } else {
                text.extend_from_slice(b"null");
            }
        }
        text.extend_from_slice(b"]\n");
    }
    text
}

fn write_f32_le(out: &mut impl Write, data: &[f32]) -> std::io::Result<()> {
    if cfg!(target_endian = "little") {
        out.write_all(bytemuck::cast_slice(data))
    } else {
        for v in data {
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    }
}

/// `data` rounded to f16, little-endian.
fn write_f16_le(out: &mut impl Write, data: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(data.len() * 2);
    bytes.extend(
        data.iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes()),
    );
    out.write_all(&bytes)
}

/// NPY 1.0 preamble + header for `(rows, dim)` `<f4` or `<f2`, padded to [`NPY_HEADER_BYTES`].
fn npy_header(rows: u64, dim: usize, dtype: DType) -> Result<Vec<u8>> {
    let descr = if dtype == DType::F16 { "<f2" } else { "<f4" };
    let dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // magic (6) + version (2) + header length (2) + dict + spaces + '\n'
    let header_len = NPY_HEADER_BYTES - 10;
    if dict.len() + 1 > header_len {
        return Err(Error::invalid(format!(
            "NPY shape ({rows}, {dim}) does not fit the header"
        )));
    }
    let mut out = Vec::with_capacity(NPY_HEADER_BYTES);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(NPY_HEADER_BYTES - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

/// safetensors length prefix + JSON header for one f32 or f16 `[rows, dim]` tensor, padded with
/// spaces to [`SAFETENSORS_HEADER_BYTES`].
fn safetensors_header(rows: u64, dim: usize, dtype: DType) -> Result<Vec<u8>> {
    let bytes = rows
        .checked_mul(dim as u64)
        .and_then(|n| n.checked_mul(dtype.size_in_bytes() as u64))
        .ok_or_else(|| {
            Error::invalid(format!("[{rows}, {dim}] {dtype} is too large for a file"))
        })?;
    let name = dtype.as_str().to_ascii_uppercase();
    let json = format!(
        "{{\"{SAFETENSORS_NAME}\":{{\"dtype\":\"{name}\",\"shape\":[{rows},{dim}],\"data_offsets\":[0,{bytes}]}}}}"
    );
    let n = SAFETENSORS_HEADER_BYTES - 8;
    if json.len() > n {
        return Err(Error::invalid(format!(
            "safetensors shape [{rows}, {dim}] does not fit the header"
        )));
    }
    let mut out = Vec::with_capacity(SAFETENSORS_HEADER_BYTES);
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(SAFETENSORS_HEADER_BYTES, b' ');
    Ok(out)
}

/// Write finished embeddings to `path` (format by extension), atomically.
pub fn write_embeddings(path: &Path, data: &[f32], rows: usize, dim: usize) -> Result<()> {
    let format = OutputFormat::from_path(path)?;
    if rows.checked_mul(dim) != Some(data.len()) {
        return Err(Error::shape(
            "embeddings",
            format!("[{rows}, {dim}]"),
            &[data.len()],
        ));
    }
    write_file_atomic(path, |w| {
        let mut writer = EmbeddingWriter::new(w, format, dim, path)?;
        writer.write_rows(data, path)?;
        writer.finish(path).map(|_| ())
    })
}

/// Options of [`encode_stream`].
pub struct StreamOptions<'a> {
    /// Texts read and encoded at a time (the memory bound).
    pub batch_size: usize,
    /// Called after each batch with (texts done, input bytes consumed or 0 when unknown).
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
    /// Element type of the file: f32 (what stk computes) or f16.
    pub output_dtype: DType,
}

/// Encode every text of `source` with `model` into `output` (format by extension), one batch at
/// a time. Returns the number of rows written. On error nothing is left at `output`.
///
/// Three threads overlap: one reads and splits the input a batch ahead, the caller's thread
/// encodes (on rayon's pool), one writes the previous batch. Each hand-over holds at most one
/// batch, so memory stays bounded by a few batches.
pub fn encode_stream(
    model: &Model,
    source: &TextSource,
    output: &Path,
    mut options: StreamOptions<'_>,
) -> Result<u64> {
    let format = OutputFormat::from_path(output)?;
    let dim = model.dim();
    let batch_size = options.batch_size;
    let mut rows = 0u64;
    write_file_atomic(output, |w| {
        let writer = EmbeddingWriter::with_dtype(w, format, options.output_dtype, dim, output)?;
        // Set when the encoder stopped taking batches (it failed, or the writer did): the
        // reader then stops too, and the failure that stopped it is the one reported.
        let abandoned = &AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (batch_tx, batch_rx) = sync_channel::<(Vec<String>, u64)>(1);
            let reader = scope.spawn(move || {
                source.for_each_batch(batch_size, |texts, consumed| {
                    let owned = texts.iter().map(|t| t.to_string()).collect();
                    if batch_tx.send((owned, consumed)).is_err() {
                        abandoned.store(true, Ordering::Relaxed);
                        return Err(Error::invalid("the encoder stopped"));
                    }
                    Ok(())
                })
            });
            let (rows_tx, rows_rx) = sync_channel::<Vec<f32>>(1);
            let (spare_tx, spare_rx) = channel::<Vec<f32>>();
            let writing = scope.spawn(move || -> Result<u64> {
                let mut writer = writer;
                for data in rows_rx {
                    writer.write_rows(&data, output)?;
                    let _ = spare_tx.send(data);
                }
                writer.finish(output)
            });
            let mut encoded: Result<()> = Ok(());
            for (texts, consumed) in batch_rx {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let mut data = spare_rx.try_recv().unwrap_or_default();
                data.resize(refs.len() * dim, 0.0);
                if let Err(e) = model.encode_into(&refs, &mut data) {
                    encoded = Err(e);
                    break;
                }
                rows += refs.len() as u64;
                if rows_tx.send(data).is_err() {
                    break; // the writer failed: its error is returned below
                }
                if let Some(p) = options.progress.as_mut() {
                    p(rows, consumed);
                }
            }
            drop(rows_tx);
            let written = join(writing);
            let read = join(reader);
            // The first failure in pipeline order: the input, the encoding, the output.
            if !abandoned.load(Ordering::Relaxed) {
                read?;
            }
            encoded?;
            rows = written?;
            Ok(())
        })
    })?;
    Ok(rows)
}

/// A scoped thread's result; its panic (a bug) becomes an error instead of a crash.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::invalid("an encoding thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::SafetensorsFile;

    fn lines(input: &[u8], batch: usize) -> Result<Vec<Vec<String>>> {
        let mut out = Vec::new();
        for_each_line_batch(input, Path::new("in.txt"), batch, &mut |b, _| {
            out.push(b.iter().map(|s| s.to_string()).collect());
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn lines_in_batches() {
        assert_eq!(
            lines(b"a\r\nb\n\nc", 2).unwrap(),
            [vec!["a", "b"], vec!["", "c"]]
        );
        assert_eq!(lines(b"a\n", 2).unwrap(), [vec!["a"]]);
        assert!(lines(b"", 2).unwrap().is_empty());
        let e = lines(b"ok\nok\n\xff\xfe\n", 8).unwrap_err().to_string();
        assert!(e.contains("line 3 is not valid UTF-8"), "{e}");
    }

    fn json(input: &str, batch: usize) -> Result<Vec<Vec<String>>> {
        let mut out = Vec::new();
        for_each_json_batch(
            input.as_bytes(),
            Path::new("in.json"),
            batch,
            &mut |b, _| {
                out.push(b.iter().map(|s| s.to_string()).collect());
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn json_arrays_in_batches() {
        assert_eq!(
            json(r#" ["a", "b\n", "c"] "#, 2).unwrap(),
            [vec!["a", "b\n"], vec!["c"]]
        );
        assert!(json("[]", 2).unwrap().is_empty());
        for bad in [
            r#"{"a": 1}"#,
            r#"["a", 1]"#,
            r#""a""#,
            r#"["a"] x"#,
            "[",
            "",
        ] {
            let e = json(bad, 2).unwrap_err().to_string();
            assert!(e.contains("expected a JSON array of strings"), "{bad}: {e}");
        }
        // The callback's own error comes back as it is.
        let e = for_each_json_batch(&b"[\"a\"]"[..], Path::new("x"), 1, &mut |_, _| {
            Err(Error::invalid("boom"))
        });
        assert!(matches!(e, Err(Error::InvalidArgument(m)) if m == "boom"));
    }

    /// The `.jsonl` formatter writes what `serde_json` writes, value for value.
    #[test]
    fn jsonl_rows_match_serde_json() {
        let values = [
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
        let want: String = values
            .chunks(3)
            .map(|row| serde_json::to_string(row).unwrap() + "\n")
            .collect();
        assert_eq!(String::from_utf8(jsonl_rows(&values, 3)).unwrap(), want);
    }

    #[test]
    fn outputs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let st = dir.path().join("e.safetensors");
        write_embeddings(&st, &data, 2, 3).unwrap();
        let t = SafetensorsFile::open(&st)
            .unwrap()
            .get(SAFETENSORS_NAME)
            .unwrap();
        assert_eq!(t.dims(), &[2, 3]);
        assert_eq!(t.as_slice::<f32>().unwrap(), &data[..]);

        let npy = dir.path().join("e.npy");
        write_embeddings(&npy, &data, 2, 3).unwrap();
        let bytes = std::fs::read(&npy).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        let body: Vec<f32> = bytes[10 + hlen..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(body, data);

        let jl = dir.path().join("e.jsonl");
        write_embeddings(&jl, &data, 2, 3).unwrap();
        let text = std::fs::read_to_string(&jl).unwrap();
        let rows: Vec<Vec<f32>> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows, [data[..3].to_vec(), data[3..].to_vec()]);

        // Zero rows are valid files.
        write_embeddings(&st, &[], 0, 3).unwrap();
        assert_eq!(
            SafetensorsFile::open(&st)
                .unwrap()
                .get(SAFETENSORS_NAME)
                .unwrap()
                .dims(),
            &[0, 3]
        );
        write_embeddings(&jl, &[], 0, 3).unwrap();
        assert_eq!(std::fs::read(&jl).unwrap().len(), 0);

        let e = write_embeddings(&dir.path().join("e.csv"), &data, 2, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown extension"), "{e}");
        assert!(write_embeddings(&npy, &data, 3, 3).is_err());
    }
}
