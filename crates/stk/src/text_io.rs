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
//!   Encode options ([`StreamOptions::encode`], see [`crate::quantize`]) change the width and
//!   the element type: int8/binary are `I8` / `|i1`, uint8/ubinary `U8` / `|u1`, written as
//!   integers in `.jsonl`. One writer ([`EmbeddingWriter`]) serves every element type.
//! * int8/uint8 need the ranges of the whole run, which a stream does not have when it starts:
//!   [`encode_stream`] takes them from [`EncodeOptions::calibration`] and refuses to run
//!   without; [`ranges_from_source`] computes them in a first pass over texts (the input
//!   itself, or calibration texts), and [`read_embeddings`] reads calibration embeddings.
//!   The safetensors and NPY headers hold `N`, unknown until the input ends: they are written
//!   at a fixed, space-padded size first and rewritten in place at the end. Every output goes
//!   through [`write_file_atomic`]: on any error, no file (partial or not) is left behind.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use stk_core::{write_file_atomic, AlignedVec, DType, Error, Result};

use crate::model::Model;
use crate::quantize::{ElementSlice, ElementType, EncodeOptions, Ranges};

mod rows;
use rows::RowLayout;

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
        self.fill_batches(batch_size, &mut |batch| {
            on_batch(&batch.texts(), batch.consumed)
        })
    }

    /// Fill a [`TextBatch`] with at most `batch_size` texts and call `on_full` with it, again
    /// and again (the last batch may be shorter; no call for an empty input). `on_full` may
    /// swap the batch for another one (an emptied batch coming back from its consumer); the
    /// reader clears whatever batch it holds afterwards. Returns the number of texts.
    pub fn fill_batches(
        &self,
        batch_size: usize,
        on_full: &mut dyn FnMut(&mut TextBatch) -> Result<()>,
    ) -> Result<u64> {
        if batch_size == 0 {
            return Err(Error::invalid("the batch size must be at least 1"));
        }
        let open = |p: &PathBuf| {
            let file = File::open(p).map_err(|e| Error::io(p, e))?;
            Ok::<_, Error>(BufReader::with_capacity(1 << 20, file))
        };
        match self {
            TextSource::Lines(p) => fill_line_batches(open(p)?, p, batch_size, on_full),
            TextSource::Stdin => {
                let path = self.display_path();
                fill_line_batches(std::io::stdin().lock(), &path, batch_size, on_full)
            }
            TextSource::JsonArray(p) => fill_json_batches(open(p)?, p, batch_size, on_full),
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

/// Texts held in one buffer: one allocation for a whole batch, kept from batch to batch (a
/// text per `String` cost an allocation and a free per line, and the frees on another thread
/// than the allocations). Lines are copied with their line ends, a read's worth at a time.
#[derive(Debug, Default)]
pub struct TextBatch {
    text: String,
    /// Where each text lies in `text`.
    spans: Vec<(usize, usize)>,
    /// Input bytes consumed when the batch was handed over (0 when unknown).
    consumed: u64,
}

impl TextBatch {
    /// Number of texts.
    pub fn len(&self) -> usize {
        self.spans.len()
    }
    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
    /// Input bytes consumed up to the end of this batch (0 when unknown).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
    /// The texts, borrowed.
    pub fn texts(&self) -> Vec<&str> {
        self.spans
            .iter()
            .map(|&(start, end)| &self.text[start..end])
            .collect()
    }
    fn push(&mut self, text: &str) {
        let start = self.text.len();
        self.text.push_str(text);
        self.spans.push((start, self.text.len()));
    }
    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.consumed = 0;
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Lines of `reader` in batches; `\n` ends a line, a `\r` before it is dropped.
pub fn for_each_line_batch<R: BufRead>(
    reader: R,
    path: &Path,
    batch_size: usize,
    on_batch: &mut dyn FnMut(&[&str], u64) -> Result<()>,
) -> Result<u64> {
    fill_line_batches(reader, path, batch_size, &mut |batch| {
        on_batch(&batch.texts(), batch.consumed)
    })
}

/// [`for_each_line_batch`] into [`TextBatch`]es (see [`TextSource::fill_batches`]).
///
/// The whole lines of each read are checked for UTF-8 at once and copied into the batch at once
/// (with their line ends, which the spans leave out); only a line cut by the end of a read is
/// gathered apart.
fn fill_line_batches<R: BufRead>(
    mut reader: R,
    path: &Path,
    batch_size: usize,
    on_full: &mut dyn FnMut(&mut TextBatch) -> Result<()>,
) -> Result<u64> {
    let mut lines = LineBatcher {
        batch: TextBatch::default(),
        batch_size,
        path,
        line_no: 0,
        consumed: 0,
    };
    // The start of a line that the last read cut.
    let mut cut: Vec<u8> = Vec::new();
    loop {
        let chunk = reader.fill_buf().map_err(|e| Error::io(path, e))?;
        if chunk.is_empty() {
            break;
        }
        let taken = match memchr::memrchr(b'\n', chunk) {
            None => {
                cut.extend_from_slice(chunk);
                chunk.len()
            }
            Some(_) if !cut.is_empty() => {
                // Finish the cut line alone, then go on from the rest of this read.
                let end = memchr::memchr(b'\n', chunk).map_or(chunk.len(), |nl| nl + 1);
                cut.extend_from_slice(&chunk[..end]);
                lines.push_lines(&cut, on_full)?;
                cut.clear();
                end
            }
            Some(last) => {
                lines.push_lines(&chunk[..=last], on_full)?;
                last + 1
            }
        };
        reader.consume(taken);
    }
    if !cut.is_empty() {
        lines.push_lines(&cut, on_full)?;
    }
    let LineBatcher {
        mut batch,
        consumed,
        line_no,
        ..
    } = lines;
    if !batch.is_empty() {
        batch.consumed = consumed;
        on_full(&mut batch)?;
    }
    Ok(line_no as u64)
}

/// The batch being filled by [`fill_line_batches`], and where the input stands.
struct LineBatcher<'a> {
    batch: TextBatch,
    batch_size: usize,
    path: &'a Path,
    line_no: usize,
    consumed: u64,
}

impl LineBatcher<'_> {
    /// Add the lines of `bytes` (whole lines, each ending with `\n` but perhaps the input's
    /// last), handing the batch over whenever it is full.
    fn push_lines(
        &mut self,
        bytes: &[u8],
        on_full: &mut dyn FnMut(&mut TextBatch) -> Result<()>,
    ) -> Result<()> {
        // The SIMD check first; std's, which says where the input goes wrong, only then.
        let text = simdutf8::basic::from_utf8(bytes)
            .or_else(|_| std::str::from_utf8(bytes))
            .map_err(|e| Error::InvalidUtf8 {
                path: self.path.to_path_buf(),
                line: self.line_no
                    + 1
                    + memchr::memchr_iter(b'\n', &bytes[..e.valid_up_to()]).count(),
            })?;
        // `text[copied..]` is not in the batch yet; it starts at `base` there.
        let mut copied = 0;
        let mut base = self.batch.text.len();
        let mut start = 0;
        while start < text.len() {
            let end =
                memchr::memchr(b'\n', &bytes[start..]).map_or(text.len(), |nl| start + nl + 1);
            let mut line_end = end;
            if bytes[line_end - 1] == b'\n' {
                line_end -= 1;
                if line_end > start && bytes[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
            }
            self.batch
                .spans
                .push((base + start - copied, base + line_end - copied));
            self.line_no += 1;
            self.consumed += (end - start) as u64;
            start = end;
            if self.batch.len() == self.batch_size {
                self.batch.text.push_str(&text[copied..end]);
                self.batch.consumed = self.consumed;
                on_full(&mut self.batch)?;
                self.batch.clear();
                copied = end;
                base = 0;
            }
        }
        self.batch.text.push_str(&text[copied..]);
        Ok(())
    }
}

/// The strings of a JSON array in batches, parsed as they are read.
pub fn for_each_json_batch<R: Read>(
    reader: R,
    path: &Path,
    batch_size: usize,
    on_batch: &mut dyn FnMut(&[&str], u64) -> Result<()>,
) -> Result<u64> {
    fill_json_batches(reader, path, batch_size, &mut |batch| {
        on_batch(&batch.texts(), 0)
    })
}

/// [`for_each_json_batch`] into [`TextBatch`]es (see [`TextSource::fill_batches`]).
fn fill_json_batches<R: Read>(
    reader: R,
    path: &Path,
    batch_size: usize,
    on_full: &mut dyn FnMut(&mut TextBatch) -> Result<()>,
) -> Result<u64> {
    struct Batches<'a> {
        batch_size: usize,
        on_full: &'a mut dyn FnMut(&mut TextBatch) -> Result<()>,
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
            let mut batch = TextBatch::default();
            let mut total = 0u64;
            let hand_over = |batch: &mut TextBatch,
                             this: &mut Batches<'_>|
             -> std::result::Result<(), A::Error> {
                if let Err(e) = (this.on_full)(batch) {
                    this.failed = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
                batch.clear();
                Ok(())
            };
            while let Some(text) = seq.next_element::<std::borrow::Cow<'_, str>>()? {
                batch.push(&text);
                total += 1;
                if batch.len() == self.batch_size {
                    hand_over(&mut batch, self)?;
                }
            }
            if !batch.is_empty() {
                hand_over(&mut batch, self)?;
            }
            Ok(total)
        }
    }

    let mut batches = Batches {
        batch_size,
        on_full,
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
    /// The format an output path's extension names; an error lists the known extensions.
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

/// Bytes reserved for the NPY preamble + header: one 4 KiB block (a multiple of 64, as NPY
/// asks, and room for any `(N, D)` pair of u64 values), so that the rows start at a block
/// boundary and whole batches of them go to the file straight from the encoder's buffer
/// (see [`stk_core::OutputFile`]).
const NPY_HEADER_BYTES: usize = 4096;
/// Bytes reserved for the safetensors JSON header: one 4 KiB block, as for NPY (also a
/// multiple of 8, so the data stays aligned for readers that map the file).
const SAFETENSORS_HEADER_BYTES: usize = 4096;

/// The float types embeddings can be written in: f32 (what stk computes) or f16 (the size
/// model2vec's `encode` answers in for an f16 table). Integer outputs come from a precision
/// ([`crate::quantize::Precision`]), not from an output dtype.
pub fn check_output_dtype(dtype: DType) -> Result<DType> {
    match dtype {
        DType::F32 | DType::F16 => Ok(dtype),
        other => Err(Error::invalid(format!(
            "output dtype {other} is not written (expected f32 or f16)"
        ))),
    }
}

/// The element type of an f32 or f16 output dtype.
fn float_element_type(dtype: DType) -> Result<ElementType> {
    Ok(match check_output_dtype(dtype)? {
        DType::F16 => ElementType::F16,
        _ => ElementType::F32,
    })
}

/// Writes `[N, D]` rows as they come; the header is fixed up by [`EmbeddingWriter::finish`].
pub struct EmbeddingWriter<W: Write + Seek> {
    out: W,
    layout: RowLayout,
    rows: u64,
    /// Formatted rows, kept for the next call.
    parts: Vec<Vec<u8>>,
}

impl<W: Write + Seek> EmbeddingWriter<W> {
    /// Start an f32 file: reserves the header.
    pub fn new(out: W, format: OutputFormat, dim: usize, path: &Path) -> Result<Self> {
        Self::with_dtype(out, format, DType::F32, dim, path)
    }

    /// Start a file whose values are written as `dtype` (f32 or f16).
    pub fn with_dtype(
        out: W,
        format: OutputFormat,
        dtype: DType,
        dim: usize,
        path: &Path,
    ) -> Result<Self> {
        Self::with_element_type(out, format, float_element_type(dtype)?, dim, path)
    }

    /// Start a file of `dtype` elements, `dim` to a row.
    pub fn with_element_type(
        mut out: W,
        format: OutputFormat,
        dtype: ElementType,
        dim: usize,
        path: &Path,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("cannot write embeddings of width 0"));
        }
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
            layout: RowLayout { format, dtype, dim },
            rows: 0,
            parts: Vec::new(),
        })
    }

    /// Append f32 rows (`k × dim` values), rounded to f16 for an f16 file.
    pub fn write_rows(&mut self, data: &[f32], path: &Path) -> Result<()> {
        self.write_elements(ElementSlice::F32(data), path)
    }

    /// Append rows (`k × dim` elements) of the file's element type, or f32 rows for an f16
    /// file (rounded to nearest).
    pub fn write_elements(&mut self, data: ElementSlice<'_>, path: &Path) -> Result<()> {
        self.layout
            .check(data, || format!("rows for {}", path.display()))?;
        let rows = (data.len() / self.layout.dim) as u64;
        match self.layout.as_is(data) {
            Some(bytes) => self.write_bytes(&[bytes], rows, path),
            None => {
                let mut parts = std::mem::take(&mut self.parts);
                let written = self
                    .layout
                    .format_into(data, &mut parts)
                    .and_then(|()| self.write_bytes(&parts, rows, path));
                self.parts = parts;
                written
            }
        }
    }

    /// Append `rows` rows already in the file's bytes (a [`RowBlock`] formatted elsewhere).
    fn write_bytes(&mut self, parts: &[impl AsRef<[u8]>], rows: u64, path: &Path) -> Result<()> {
        for part in parts {
            self.out
                .write_all(part.as_ref())
                .map_err(|e| Error::io(path, e))?;
        }
        self.rows += rows;
        Ok(())
    }

    /// Rewrite the header with the final row count; returns the number of rows.
    pub fn finish(mut self, path: &Path) -> Result<u64> {
        let io = |e| Error::io(path, e);
        let RowLayout { format, dtype, dim } = self.layout;
        let header = match format {
            OutputFormat::Npy => Some(npy_header(self.rows, dim, dtype)?),
            OutputFormat::Safetensors => Some(safetensors_header(self.rows, dim, dtype)?),
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

/// NPY 1.0 preamble + header for `(rows, dim)` elements, padded to [`NPY_HEADER_BYTES`].
fn npy_header(rows: u64, dim: usize, dtype: ElementType) -> Result<Vec<u8>> {
    let descr = dtype.npy_descr();
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

/// safetensors length prefix + JSON header for one `[rows, dim]` tensor, padded with spaces to
/// [`SAFETENSORS_HEADER_BYTES`].
fn safetensors_header(rows: u64, dim: usize, dtype: ElementType) -> Result<Vec<u8>> {
    let bytes = rows
        .checked_mul(dim as u64)
        .and_then(|n| n.checked_mul(dtype.size_in_bytes() as u64))
        .ok_or_else(|| {
            Error::invalid(format!("[{rows}, {dim}] {dtype:?} is too large for a file"))
        })?;
    let name = dtype.safetensors_name();
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

/// Write finished encoded embeddings (any element type) to `path`, atomically.
pub fn write_encoded(path: &Path, array: &crate::quantize::EncodedArray) -> Result<()> {
    let format = OutputFormat::from_path(path)?;
    write_file_atomic(path, |w| {
        let mut writer = EmbeddingWriter::with_element_type(
            w,
            format,
            array.element_type(),
            array.cols(),
            path,
        )?;
        writer.write_elements(array.elements().as_slice(), path)?;
        writer.finish(path).map(|_| ())
    })
}

/// Options of [`encode_stream`].
pub struct StreamOptions<'a> {
    /// Texts read and encoded at a time (the memory bound).
    pub batch_size: usize,
    /// Called after each batch with (texts done, input bytes consumed or 0 when unknown).
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
    /// Element type of a float32-precision file: f32 (what stk computes) or f16.
    pub output_dtype: DType,
    /// Truncation, normalization and precision, applied to each batch. int8/uint8 need
    /// [`EncodeOptions::calibration`] (see [`ranges_from_source`]): a stream never takes
    /// ranges from one batch.
    pub encode: EncodeOptions,
}

/// The element type and row width a stream writes.
fn stream_output_shape(options: &StreamOptions<'_>, dim: usize) -> Result<(ElementType, usize)> {
    let (element_type, cols) = options.encode.output_shape(dim)?;
    if options.encode.precision.needs_ranges() && options.encode.calibration.is_none() {
        return Err(Error::invalid(format!(
            "{} output of a stream needs ranges for the whole input: pass calibration \
             embeddings or texts, or compute them in a first pass over the input \
             (they are never taken from one batch)",
            options.encode.precision
        )));
    }
    match (element_type, float_element_type(options.output_dtype)?) {
        (_, ElementType::F32) => Ok((element_type, cols)),
        (ElementType::F32, float) => Ok((float, cols)),
        (_, _) => Err(Error::invalid(format!(
            "output dtype {} applies to float32 precision only (precision {} writes its own \
             integer type)",
            options.output_dtype, options.encode.precision
        ))),
    }
}

/// The int8/uint8 ranges of every text of `source`, encoded by `model` and truncated and
/// normalized as `options` say (a first pass over the input, or over calibration texts).
/// Returns the ranges (`None` when there is no text) and the number of texts. Standard input
/// cannot be read twice: an error.
pub fn ranges_from_source(
    model: &Model,
    source: &TextSource,
    options: &EncodeOptions,
    batch_size: usize,
) -> Result<(Option<Ranges>, u64)> {
    if *source == TextSource::Stdin {
        return Err(Error::invalid(
            "int8/uint8 ranges cannot come from a first pass over standard input (it is read \
             once): pass calibration embeddings or texts, or the input as a file",
        ));
    }
    let dim = model.dim();
    let mut ranges: Option<Ranges> = None;
    let mut data = Vec::new();
    let count = source.for_each_batch(batch_size, |texts, _| {
        data.resize(texts.len() * dim, 0.0);
        model.encode_into(texts, &mut data)?;
        let rows = options.truncate_and_normalize(&data, dim)?;
        match &mut ranges {
            Some(r) => r.update(&rows),
            None => {
                ranges = Some(Ranges::from_rows(&rows, options.truncated_dim(dim)?)?);
                Ok(())
            }
        }
    })?;
    Ok((ranges, count))
}

/// `[rows, dim]` f32 embeddings from a `.npy` (`<f4`, `<f2` or `<f8`, C order, 2-D) or a
/// `.safetensors` file (its tensor `embeddings`, or its only tensor; f32/f16/bf16/f64), e.g.
/// calibration embeddings for [`Ranges::from_rows`]. Returns `(values, rows, dim)`.
pub fn read_embeddings(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    if has_extension(path, "safetensors") {
        let file = stk_core::SafetensorsFile::open(path)?;
        let names: Vec<&str> = file.names().collect();
        let name = match names.as_slice() {
            _ if names.contains(&SAFETENSORS_NAME) => SAFETENSORS_NAME,
            [only] => only,
            _ => {
                return Err(Error::config(
                    path,
                    format!("expected a tensor `{SAFETENSORS_NAME}` or a single tensor"),
                ))
            }
        };
        let tensor = file.get(name)?;
        let (rows, dim) = match tensor.dims() {
            &[rows, dim] => (rows, dim),
            other => {
                return Err(Error::shape(
                    format!("{} `{name}`", path.display()),
                    "[N, D]",
                    other,
                ))
            }
        };
        if !tensor.dtype().is_float() {
            return Err(Error::dtype(
                format!("{} `{name}`", path.display()),
                "f32, f16 or bf16",
                tensor.dtype(),
            ));
        }
        Ok((tensor.to_f32_vec()?, rows, dim))
    } else if has_extension(path, "npy") {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        read_npy_f32(&bytes).map_err(|reason| Error::config(path, reason))
    } else {
        Err(Error::invalid(format!(
            "embeddings `{}`: unknown extension (expected .npy or .safetensors)",
            path.display()
        )))
    }
}

/// A 2-D little-endian float NPY array as f32, or why not.
fn read_npy_f32(bytes: &[u8]) -> std::result::Result<(Vec<f32>, usize, usize), String> {
    let not_npy = || "is not an NPY file".to_string();
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(not_npy());
    }
    let (header_start, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        _ => return Err(not_npy()),
    };
    let body_start = header_start + header_len;
    let header = bytes
        .get(header_start..body_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(not_npy)?;
    let field = |key: &str| -> Option<&str> {
        let rest = &header[header.find(&format!("'{key}':"))? + key.len() + 3..];
        Some(rest.trim_start())
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\'')?.split('\'').next())
        .ok_or("NPY header has no descr")?;
    if field("fortran_order").is_none_or(|r| !r.starts_with("False")) {
        return Err("only C-order NPY arrays are read (fortran_order must be False)".into());
    }
    let shape: Vec<usize> = field("shape")
        .and_then(|r| r.strip_prefix('(')?.split(')').next())
        .ok_or("NPY header has no shape")?
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad NPY shape entry `{d}`"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let &[rows, dim] = shape.as_slice() else {
        return Err(format!("expected a 2-D [N, D] array, got shape {shape:?}"));
    };
    let size = match descr {
        "<f4" => 4,
        "<f2" => 2,
        "<f8" => 8,
        other => {
            return Err(format!(
                "NPY dtype `{other}` is not read (expected <f4, <f2 or <f8)"
            ))
        }
    };
    let body = &bytes[body_start..];
    let expected = rows.checked_mul(dim).and_then(|n| n.checked_mul(size));
    if expected != Some(body.len()) {
        return Err(format!(
            "NPY data holds {} bytes, not the {rows} x {dim} x {size} of its shape",
            body.len()
        ));
    }
    let values = body
        .chunks_exact(size)
        .map(|c| match size {
            4 => Ok(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            2 => Ok(half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            _ => {
                let wide = f64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                let narrow = wide as f32;
                // As for f64 safetensors: a finite value must stay finite in f32.
                if wide.is_finite() && !narrow.is_finite() {
                    Err(format!("the f64 value {wide} is beyond the f32 range"))
                } else {
                    Ok(narrow)
                }
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((values, rows, dim))
}

/// Text batches in flight in [`encode_stream`]: one being read, one waiting, one being encoded.
const TEXT_BATCHES: usize = 3;
/// Row blocks in flight in [`encode_stream`]: one being encoded while the others are written,
/// queued or free. Two at least; more while they stay within [`ROW_BLOCK_BUDGET`] bytes, so
/// that a write that takes longer than one batch's encoding (the disk's pace varies) does not
/// leave the encoder waiting for a block.
const ROW_BLOCKS: std::ops::RangeInclusive<usize> = 2..=4;
/// Bytes of rows all row blocks together may hold (when each is known to be its rows' f32s).
const ROW_BLOCK_BUDGET: usize = 32 << 20;

/// Encode every text of `source` with `model` into `output` (format by extension), one batch at
/// a time. Returns the number of rows written. On error nothing is left at `output`.
///
/// Three threads overlap: one reads the input a batch ahead, the caller's thread encodes and
/// formats (on rayon's pool), one writes the previous batches. Batches of texts and blocks of
/// rows go round fixed pools (`TEXT_BATCHES` and `ROW_BLOCKS` of them): memory stays bounded
/// by a few batches, and the buffers are allocated once (no page faults on fresh memory per
/// batch).
pub fn encode_stream(
    model: &Model,
    source: &TextSource,
    output: &Path,
    mut options: StreamOptions<'_>,
) -> Result<u64> {
    let format = OutputFormat::from_path(output)?;
    let (dtype, cols) = stream_output_shape(&options, model.dim())?;
    let layout = RowLayout {
        format,
        dtype,
        dim: cols,
    };
    let encode = &options.encode;
    let batch_size = options.batch_size;
    let mut rows = 0u64;
    write_file_atomic(output, |w| {
        let writer = EmbeddingWriter::with_element_type(w, format, dtype, cols, output)?;
        // Set when the encoder stopped taking batches (it failed, or the writer did): the
        // reader then stops too, and the failure that stopped it is the one reported.
        let abandoned = &AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (full_tx, full_rx) = sync_channel::<TextBatch>(1);
            let (empty_tx, empty_rx) = channel::<TextBatch>();
            (0..TEXT_BATCHES).for_each(|_| drop(empty_tx.send(TextBatch::default())));
            let reader = scope.spawn(move || {
                source.fill_batches(batch_size, &mut |batch| {
                    let handed_over = empty_rx
                        .recv()
                        .ok()
                        .and_then(|empty| full_tx.send(std::mem::replace(batch, empty)).ok());
                    if handed_over.is_none() {
                        abandoned.store(true, Ordering::Relaxed);
                        return Err(Error::invalid("the encoder stopped"));
                    }
                    Ok(())
                })
            });
            // Unbounded: the blocks themselves bound what is queued.
            let (block_tx, block_rx) = channel::<RowBlock>();
            let (free_tx, free_rx) = channel::<RowBlock>();
            let blocks = row_blocks(encode, layout, batch_size);
            (0..blocks).for_each(|_| drop(free_tx.send(RowBlock::default())));
            let writing = scope.spawn(move || -> Result<u64> {
                let mut writer = writer;
                for block in block_rx {
                    block.write_to(&mut writer, output)?;
                    let _ = free_tx.send(block);
                }
                writer.finish(output)
            });
            let mut encoded: Result<()> = Ok(());
            let mut scratch = Vec::new();
            for texts in full_rx {
                let Ok(mut block) = free_rx.recv() else {
                    break; // the writer failed: its error is returned below
                };
                let filled = block.fill(model, &texts.texts(), encode, layout, &mut scratch);
                let (count, consumed) = (texts.len() as u64, texts.consumed());
                let _ = empty_tx.send(texts);
                if let Err(e) = filled {
                    encoded = Err(e);
                    break;
                }
                rows += count;
                if block_tx.send(block).is_err() {
                    break; // the writer failed
                }
                if let Some(p) = options.progress.as_mut() {
                    p(rows, consumed);
                }
            }
            drop((block_tx, empty_tx));
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

/// How many row blocks [`encode_stream`] keeps: see [`ROW_BLOCKS`]. Formatted rows (text,
/// f16) take an unknown number of bytes, so they get the fewest blocks.
fn row_blocks(encode: &EncodeOptions, layout: RowLayout, batch_size: usize) -> usize {
    let block_bytes = batch_size
        .saturating_mul(layout.dim)
        .saturating_mul(std::mem::size_of::<f32>());
    if !rows_go_as_is(encode, layout) {
        return *ROW_BLOCKS.start();
    }
    (ROW_BLOCK_BUDGET / block_bytes.max(1)).clamp(*ROW_BLOCKS.start(), *ROW_BLOCKS.end())
}

/// Whether the model's f32 rows are the file's bytes (no option changes them, no formatting).
fn rows_go_as_is(encode: &EncodeOptions, layout: RowLayout) -> bool {
    encode.is_identity() && layout.as_is(ElementSlice::F32(&[])).is_some()
}

/// One batch of rows on its way from the encoder to the file, in buffers kept from batch to
/// batch (see [`encode_stream`]).
#[derive(Default)]
struct RowBlock {
    /// The model's f32 rows, when they go to the file as they are (no formatting, no copy:
    /// aligned, so that whole blocks of them are written in place).
    values: AlignedVec<f32>,
    /// Otherwise the rows in the file's bytes, one part per formatting task (see [`rows`]).
    parts: Vec<Vec<u8>>,
    as_is: bool,
    rows: usize,
}

impl RowBlock {
    /// Encode `texts` and put the rows in the file's form (in parallel, on rayon's pool).
    /// Rows that need formatting are encoded into `scratch`: the encoder's own buffer, so that
    /// blocks in flight hold only what the writer needs.
    fn fill(
        &mut self,
        model: &Model,
        texts: &[&str],
        encode: &EncodeOptions,
        layout: RowLayout,
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let dim = model.dim();
        self.rows = texts.len();
        self.as_is = rows_go_as_is(encode, layout);
        let values = if self.as_is {
            self.values.resize(texts.len() * dim);
            self.values.as_mut_slice()
        } else {
            scratch.resize(texts.len() * dim, 0.0);
            scratch.as_mut_slice()
        };
        model.encode_into(texts, values)?;
        if self.as_is {
            Ok(())
        } else if encode.is_identity() {
            layout.format_into(ElementSlice::F32(values), &mut self.parts)
        } else {
            // Truncation and packing are exact per batch; int8/uint8 use the whole run's
            // ranges (calibration), checked in `stream_output_shape`.
            let encoded = encode.apply(values, dim)?;
            layout.format_into(encoded.elements().as_slice(), &mut self.parts)
        }
    }

    /// Append the rows to the file.
    fn write_to<W: Write + Seek>(
        &self,
        writer: &mut EmbeddingWriter<W>,
        path: &Path,
    ) -> Result<()> {
        if self.as_is {
            writer.write_rows(self.values.as_slice(), path)
        } else {
            writer.write_bytes(&self.parts, self.rows as u64, path)
        }
    }
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
    use stk_core::testing::expect_err;
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

    /// Lines read through a buffer of `capacity` bytes (small ones cut lines, and chars, at
    /// every place), in batches, with the bytes consumed at each batch.
    fn lines_read_by(
        input: &[u8],
        capacity: usize,
        batch: usize,
    ) -> Result<Vec<(Vec<String>, u64)>> {
        let mut out = Vec::new();
        let reader = std::io::BufReader::with_capacity(capacity, input);
        for_each_line_batch(reader, Path::new("in.txt"), batch, &mut |b, consumed| {
            out.push((b.iter().map(|s| s.to_string()).collect(), consumed));
            Ok(())
        })?;
        Ok(out)
    }

    /// What `for_each_line_batch` must give: `\n` ends a line and a `\r` before it is dropped,
    /// a final `\n` starts no line, and the first line that is not UTF-8 is named.
    fn lines_expected(input: &[u8], batch: usize) -> Result<Vec<(Vec<String>, u64)>> {
        let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if input.is_empty() || input.ends_with(b"\n") {
            pieces.pop();
        }
        let mut texts = Vec::new();
        let mut ends = Vec::new();
        let mut consumed = 0u64;
        for (i, piece) in pieces.iter().enumerate() {
            // Whether a `\n` follows (all but an unterminated last line).
            let ended = consumed as usize + piece.len() < input.len();
            consumed += (piece.len() + usize::from(ended)) as u64;
            let line = match piece.strip_suffix(b"\r") {
                Some(line) if ended => line,
                _ => piece,
            };
            let text = std::str::from_utf8(line).map_err(|_| Error::InvalidUtf8 {
                path: "in.txt".into(),
                line: i + 1,
            })?;
            texts.push(text.to_string());
            ends.push(consumed);
        }
        Ok(texts
            .chunks(batch)
            .zip(ends.chunks(batch))
            .map(|(t, e)| (t.to_vec(), *e.last().unwrap()))
            .collect())
    }

    use proptest::prelude::Strategy;
    /// Bytes that are not UTF-8 wherever they are: a byte never used, a cut 3-byte char.
    const NOT_UTF8: &[&[u8]] = &[b"\xff", b"\xe4\xb8"];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        #[test]
        fn lines_read_in_any_pieces(
            input in proptest::collection::vec(proptest::prop_oneof![
                // Valid pieces (chars of 1 to 3 bytes, line ends), now and then a byte that
                // is not UTF-8 there.
                40 => proptest::sample::select(&["a", "\n", "\r", "\r\n", "é", "中"][..])
                    .prop_map(|p| p.as_bytes().to_vec()),
                1 => proptest::sample::select(NOT_UTF8).prop_map(<[u8]>::to_vec),
            ], 0..300).prop_map(|pieces| pieces.concat()),
            // Reads of a few bytes (lines cut everywhere) and of whole lines at once (the
            // UTF-8 check's SIMD blocks of 64 bytes).
            capacity in proptest::prop_oneof![1usize..12, 64usize..1024],
            batch in 1usize..5,
        ) {
            let got = lines_read_by(&input, capacity, batch).map_err(|e| e.to_string());
            let want = lines_expected(&input, batch).map_err(|e| e.to_string());
            proptest::prop_assert_eq!(got, want);
        }
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

    /// Calibration embeddings from NPY: f32/f16/f64, and what is refused.
    #[test]
    fn npy_embeddings_are_read() {
        fn npy(descr: &str, shape: &str, fortran: &str, body: &[u8]) -> Vec<u8> {
            let dict =
                format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((dict.len() as u16).to_le_bytes());
            b.extend(dict.as_bytes());
            b.extend(body);
            b
        }
        let f32s: Vec<u8> = [1.0f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f64s: Vec<u8> = [0.5f64, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> = [1.5f32, -1.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(
            read_npy_f32(&npy("<f4", "(1, 2)", "False", &f32s)).unwrap(),
            (vec![1.0, -2.0], 1, 2)
        );
        assert_eq!(
            read_npy_f32(&npy("<f8", "(2, 1)", "False", &f64s)).unwrap(),
            (vec![0.5, 3.0], 2, 1)
        );
        assert_eq!(
            read_npy_f32(&npy("<f2", "(1, 2)", "False", &f16s)).unwrap(),
            (vec![1.5, -1.0], 1, 2)
        );
        for (bytes, message) in [
            (npy("<f4", "(1, 2)", "True", &f32s), "fortran_order"),
            (npy("<f4", "(2,)", "False", &f32s), "2-D"),
            (npy("<i4", "(1, 2)", "False", &f32s), "`<i4` is not read"),
            (npy("<f4", "(2, 2)", "False", &f32s), "not the 2 x 2 x 4"),
            (
                npy("<f8", "(1, 1)", "False", &1e300f64.to_le_bytes()),
                "beyond the f32 range",
            ),
            (b"\x93NUMPY".to_vec(), "not an NPY file"),
            (b"hello".to_vec(), "not an NPY file"),
        ] {
            let e = read_npy_f32(&bytes).unwrap_err();
            assert!(e.contains(message), "{message}: {e}");
        }
    }

    /// Integer elements: NPY `|i1` / `|u1`, safetensors `I8` / `U8`, JSONL integers.
    #[test]
    fn integer_outputs() {
        use crate::quantize::{Elements, EncodedArray};
        let dir = tempfile::tempdir().unwrap();
        let array = EncodedArray::new(Elements::I8(vec![-128, 0, 127, 5]), 2, 2).unwrap();
        let npy = dir.path().join("q.npy");
        write_encoded(&npy, &array).unwrap();
        let bytes = std::fs::read(&npy).unwrap();
        let header = String::from_utf8_lossy(&bytes[10..NPY_HEADER_BYTES]).into_owned();
        assert!(
            header.contains("'descr': '|i1'") && header.contains("(2, 2)"),
            "{header}"
        );
        assert_eq!(&bytes[NPY_HEADER_BYTES..], &[128, 0, 127, 5]);
        let jl = dir.path().join("q.jsonl");
        write_encoded(&jl, &array).unwrap();
        assert_eq!(std::fs::read_to_string(&jl).unwrap(), "[-128,0]\n[127,5]\n");
        let unsigned = EncodedArray::new(Elements::U8(vec![255, 1]), 1, 2).unwrap();
        write_encoded(&jl, &unsigned).unwrap();
        assert_eq!(std::fs::read_to_string(&jl).unwrap(), "[255,1]\n");
        let st = dir.path().join("q.safetensors");
        write_encoded(&st, &unsigned).unwrap();
        let bytes = std::fs::read(&st).unwrap();
        let header = String::from_utf8_lossy(&bytes[8..SAFETENSORS_HEADER_BYTES]).into_owned();
        assert!(
            header.contains(r#""dtype":"U8","shape":[1,2],"data_offsets":[0,2]"#),
            "{header}"
        );
        assert_eq!(&bytes[SAFETENSORS_HEADER_BYTES..], &[255, 1]);
        // A writer takes its own element type only (f32 into f16 excepted).
        let mut w = EmbeddingWriter::with_element_type(
            std::io::Cursor::new(Vec::new()),
            OutputFormat::Npy,
            ElementType::U8,
            2,
            &npy,
        )
        .unwrap();
        // The writer names the element type it takes (U8) and the one it was given.
        let wrong_type = |e: &Error| matches!(e, Error::DType { expected, .. } if expected == "U8");
        expect_err(
            w.write_elements(ElementSlice::I8(&[1, 2]), &npy),
            wrong_type,
            &["rows for ", "q.npy", "got I8"],
        );
        expect_err(
            w.write_rows(&[1.0, 2.0], &npy),
            wrong_type,
            &["rows for ", "q.npy", "got F32"],
        );
    }

    /// As many row blocks as fit the budget (2 to 4) when rows go out as they are; two when
    /// they are formatted or changed.
    #[test]
    fn row_blocks_fit_the_budget() {
        use crate::quantize::{ElementType, EncodeOptions, Precision};
        let layout = |format, dtype, dim| RowLayout { format, dtype, dim };
        let f32_npy = |dim| layout(OutputFormat::Npy, ElementType::F32, dim);
        let binary = EncodeOptions {
            precision: Precision::Binary,
            ..EncodeOptions::default()
        };
        let plain = EncodeOptions::default();
        let cases = [
            (&plain, f32_npy(256), 8192, 4),
            (&plain, f32_npy(256), 1, 4),
            (&plain, f32_npy(768), 8192, 2),
            (&plain, f32_npy(512), 4096, 4),
            (&plain, f32_npy(1024), 4096, 2),
            (
                &plain,
                layout(OutputFormat::Jsonl, ElementType::F32, 256),
                8192,
                2,
            ),
            (
                &plain,
                layout(OutputFormat::Npy, ElementType::F16, 256),
                8192,
                2,
            ),
            (&binary, f32_npy(256), 8192, 2),
        ];
        for (encode, layout, batch, want) in cases {
            assert_eq!(
                row_blocks(encode, layout, batch),
                want,
                "{layout:?}, batch {batch}"
            );
        }
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
        expect_err(
            write_embeddings(&npy, &data, 3, 3),
            |e| matches!(e, Error::Shape { .. }),
            &["embeddings", "[3, 3]", "[6]"],
        );
    }
}
