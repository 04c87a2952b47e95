//! `stk.StaticModel`: a loaded `stk::Model` with model2vec's `StaticModel` surface.

use std::io::Write;
use std::path::PathBuf;

use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice, PyString, PyTuple};
use stk::{
    Elements, EncodeOptions, LoadOptions, MaxLength, Model, Precision, Semantics, TokenEmbeddings,
};

use crate::arrays::type_name;
use crate::errors::{type_error, value_error, IntoPyResult};
use crate::threads;

/// What a model was loaded from: enough to load it again in another process (pickling).
#[derive(Clone)]
struct Source {
    /// `None`: the embedded default model.
    path: Option<PathBuf>,
    normalize: Option<bool>,
    semantics: Option<String>,
    max_length: MaxLengthArg,
    threads: Option<usize>,
}

/// `max_length` as model2vec's `from_pretrained` takes it: not passed (the config's
/// `max_length`, else 512), `None` (no limit) or a number of tokens. Pickled as the string
/// `"config"`, `None` or the number.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxLengthArg(MaxLength);

impl<'py> FromPyObject<'_, 'py> for MaxLengthArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_none() {
            return Ok(MaxLengthArg(MaxLength::Unlimited));
        }
        if let Ok(s) = obj.extract::<&str>() {
            if s == "config" {
                return Ok(MaxLengthArg(MaxLength::FromConfig));
            }
        }
        match obj.extract::<usize>() {
            Ok(n) => Ok(MaxLengthArg(MaxLength::Limit(n))),
            Err(_) => Err(type_error(format!(
                "max_length must be a non-negative int or None, got {}",
                obj.repr().map(|r| r.to_string()).unwrap_or_default()
            ))),
        }
    }
}

impl MaxLengthArg {
    /// The value `_load_pickled` reads back.
    fn to_pickle<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.0 {
            MaxLength::FromConfig => "config".into_pyobject(py)?.into_any(),
            MaxLength::Limit(n) => n.into_pyobject(py)?.into_any(),
            MaxLength::Unlimited => py.None().into_bound(py),
        })
    }
}

/// A static embedding model (model2vec or sentence-transformers StaticEmbedding) loaded by stk.
#[pyclass(module = "stk._stk", name = "StaticModel", frozen)]
pub struct StaticModel {
    model: Model,
    source: Source,
}

fn load(py: Python<'_>, source: Source) -> PyResult<StaticModel> {
    let semantics = source
        .semantics
        .as_deref()
        .map(str::parse::<Semantics>)
        .transpose()
        .py()?;
    let options = LoadOptions {
        semantics,
        normalize: source.normalize,
        max_length: source.max_length.0,
        ..LoadOptions::default()
    };
    threads::pool(source.threads)?; // refuses `threads=0` before loading
    let path = source.path.clone();
    let model = py
        .detach(|| match &path {
            Some(p) => Model::load_with(p, &options),
            None => Model::load_default(&options),
        })
        .py()?;
    Ok(StaticModel { model, source })
}

/// Unpickle: load the model again from the folder it was loaded from.
#[pyfunction]
pub fn _load_pickled(
    py: Python<'_>,
    path: Option<PathBuf>,
    normalize: Option<bool>,
    semantics: Option<String>,
    max_length: MaxLengthArg,
    threads: Option<usize>,
) -> PyResult<StaticModel> {
    load(
        py,
        Source {
            path,
            normalize,
            semantics,
            max_length,
            threads,
        },
    )
}

/// The texts of `sentences` (a list, tuple or other iterable of `str`), borrowed.
fn collect_texts<'py>(sentences: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    if sentences.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(type_error(
            "sentences must be a str or a list of str, got bytes (decode it first)",
        ));
    }
    let items = sentences.try_iter().map_err(|_| {
        type_error(format!(
            "sentences must be a str or a list of str, got {}",
            type_name(sentences)
        ))
    })?;
    let mut texts = Vec::with_capacity(sentences.len().unwrap_or(0));
    for (i, item) in items.enumerate() {
        let item = item?;
        let text = item.cast_into::<PyString>().map_err(|e| {
            type_error(format!(
                "sentences[{i}] is {}, not str",
                type_name(&e.into_inner())
            ))
        })?;
        texts.push(text);
    }
    Ok(texts)
}

impl StaticModel {
    /// `rows` embeddings (`out`) as a `[rows, width]` numpy array of the options' element type.
    fn apply_options<'py>(
        &self,
        py: Python<'py>,
        out: Vec<f32>,
        rows: usize,
        options: &EncodeOptions,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dim = self.model.dim();
        let shape_error = |e: numpy::ndarray::ShapeError| value_error(format!("output shape: {e}"));
        if options.is_identity() {
            let array = Array2::from_shape_vec((rows, dim), out).map_err(shape_error)?;
            return Ok(array.into_pyarray(py).into_any());
        }
        let encoded = py.detach(|| options.apply(&out, dim)).py()?;
        let shape = (encoded.rows(), encoded.cols());
        Ok(match encoded.into_elements() {
            Elements::F32(v) => Array2::from_shape_vec(shape, v)
                .map_err(shape_error)?
                .into_pyarray(py)
                .into_any(),
            Elements::I8(v) => Array2::from_shape_vec(shape, v)
                .map_err(shape_error)?
                .into_pyarray(py)
                .into_any(),
            Elements::U8(v) => Array2::from_shape_vec(shape, v)
                .map_err(shape_error)?
                .into_pyarray(py)
                .into_any(),
            Elements::F16(_) => return Err(value_error("encode options never give f16")),
        })
    }

    /// Encode `texts` into one `[N, dim]` buffer, batch by batch (see `for_each_batch`).
    fn encode_texts(
        &self,
        py: Python<'_>,
        texts: &[&str],
        batch_size: usize,
        show_progress_bar: bool,
    ) -> PyResult<Vec<f32>> {
        let dim = self.model.dim();
        let len = texts
            .len()
            .checked_mul(dim)
            .ok_or_else(|| value_error("too many sentences for one output array"))?;
        let mut out = stk_core::zeroed_f32s(len, "the embeddings").py()?;
        let mut filled = 0;
        self.for_each_batch(py, texts, batch_size, show_progress_bar, |batch| {
            let rows = &mut out[filled..filled + batch.len() * dim];
            filled += rows.len();
            self.model.encode_into(batch, rows)
        })?;
        Ok(out)
    }

    /// Run `work` on `texts` in batches of `batch_size`, in order, without the GIL, on this
    /// process's pool; with `show_progress_bar`, a count on stderr after each batch.
    fn for_each_batch(
        &self,
        py: Python<'_>,
        texts: &[&str],
        batch_size: usize,
        show_progress_bar: bool,
        mut work: impl FnMut(&[&str]) -> stk::Result<()> + Send,
    ) -> PyResult<()> {
        if batch_size == 0 {
            return Err(value_error("batch_size must be at least 1"));
        }
        let pool = threads::pool(self.source.threads)?;
        let total = texts.len();
        py.detach(|| {
            pool.install(|| {
                let mut done = 0;
                for batch in texts.chunks(batch_size) {
                    work(batch)?;
                    done += batch.len();
                    if show_progress_bar {
                        let _ = write!(std::io::stderr(), "\rstk: encoded {done}/{total}");
                    }
                }
                if show_progress_bar {
                    let _ = writeln!(std::io::stderr());
                }
                Ok(())
            })
        })
        .py()
    }

    /// The texts of `sentences` (one `str`, or a list of them) and whether it was one `str`.
    fn texts_of<'py>(sentences: &Bound<'py, PyAny>) -> PyResult<(Vec<Bound<'py, PyString>>, bool)> {
        Ok(match sentences.cast::<PyString>() {
            Ok(one) => (vec![one.clone()], true),
            Err(_) => (collect_texts(sentences)?, false),
        })
    }
}

#[pymethods]
impl StaticModel {
    /// Load a model2vec folder or a sentence-transformers folder (`path=None`: the default
    /// model, potion-base-8M with an f16 table).
    #[staticmethod]
    #[pyo3(signature = (path=None, *, normalize=None, semantics=None, max_length=MaxLengthArg::default(), threads=None))]
    fn from_pretrained(
        py: Python<'_>,
        path: Option<PathBuf>,
        normalize: Option<bool>,
        semantics: Option<String>,
        max_length: MaxLengthArg,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        load(
            py,
            Source {
                path,
                normalize,
                semantics,
                max_length,
                threads,
            },
        )
    }

    /// Embeddings of `sentences` as an array `[N, width]` (`[width]` for one `str`): float32,
    /// or with `truncate_dim` / `precision` as `SentenceTransformer.encode` gives them (see
    /// `stk::quantize`; int8/uint8 ranges from the embeddings of this call).
    #[pyo3(signature = (sentences, batch_size=1024, show_progress_bar=false, *, truncate_dim=None, precision="float32"))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        batch_size: usize,
        show_progress_bar: bool,
        truncate_dim: Option<usize>,
        precision: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = EncodeOptions {
            truncate_dim,
            precision: precision.parse::<Precision>().py()?,
            ..EncodeOptions::default()
        };
        options.truncated_dim(self.model.dim()).py()?;
        if let Ok(one) = sentences.cast::<PyString>() {
            let text = one.to_str()?;
            let out = self.encode_texts(py, &[text], 1, false)?;
            let array = self.apply_options(py, out, 1, &options)?;
            return array.call_method1("reshape", ((-1i64,),));
        }
        // The Python strings stay referenced by `owned` while the GIL is released.
        let owned = collect_texts(sentences)?;
        let texts = owned
            .iter()
            .map(|s| s.to_str())
            .collect::<PyResult<Vec<&str>>>()?;
        let out = self.encode_texts(py, &texts, batch_size, show_progress_bar)?;
        self.apply_options(py, out, texts.len(), &options)
    }

    /// model2vec's `encode_as_sequence`: each sentence's token embeddings as a float32 array
    /// `[tokens, dim]` (a list of them; one array for one `str`). `max_length` is this call's
    /// own token limit (and character cut), not the model's. The multiprocessing arguments
    /// are accepted as model2vec takes them; stk always encodes on its own thread pool.
    #[pyo3(signature = (sentences, *, max_length=None, batch_size=1024, show_progress_bar=false, use_multiprocessing=true, multiprocessing_threshold=10_000))]
    #[allow(clippy::too_many_arguments)]
    fn encode_as_sequence<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
        max_length: Option<usize>,
        batch_size: usize,
        show_progress_bar: bool,
        use_multiprocessing: bool,
        multiprocessing_threshold: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (use_multiprocessing, multiprocessing_threshold);
        // The Python strings stay referenced by `owned` while the GIL is released.
        let (owned, single) = Self::texts_of(sentences)?;
        let texts = owned
            .iter()
            .map(|s| s.to_str())
            .collect::<PyResult<Vec<&str>>>()?;
        let mut batches = Vec::new();
        self.for_each_batch(py, &texts, batch_size, show_progress_bar, |batch| {
            batches.push(self.model.encode_as_sequence(batch, max_length)?);
            Ok(())
        })?;
        let mut arrays = Vec::with_capacity(texts.len());
        for batch in batches {
            push_text_views(py, batch, &mut arrays)?;
        }
        if single {
            return Ok(arrays.swap_remove(0));
        }
        Ok(PyList::new(py, arrays)?.into_any())
    }

    /// model2vec's `tokenize`: each sentence's token ids, truncated to the model's
    /// `max_length`, the unknown token dropped (one list for one `str`).
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        sentences: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (owned, single) = Self::texts_of(sentences)?;
        let texts = owned
            .iter()
            .map(|s| s.to_str())
            .collect::<PyResult<Vec<&str>>>()?;
        let pool = threads::pool(self.source.threads)?;
        let mut ids = py
            .detach(|| pool.install(|| self.model.tokenize(&texts)))
            .py()?;
        if single {
            return ids.swap_remove(0).into_pyobject(py).map(Bound::into_any);
        }
        ids.into_pyobject(py).map(Bound::into_any)
    }

    /// Encode UTF-8 texts laid end to end in `data`, text `i` being
    /// `data[offsets[i]:offsets[i+1]]` (an Arrow string array's buffers). Returns `[N, dim]`.
    #[pyo3(signature = (data, offsets, batch_size=1024))]
    fn _encode_utf8<'py>(
        &self,
        py: Python<'py>,
        data: numpy::PyReadonlyArray1<'py, u8>,
        offsets: numpy::PyReadonlyArray1<'py, i64>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = data.as_slice()?;
        let offsets = offsets.as_slice()?;
        let texts = split_utf8(data, offsets)?;
        let out = self.encode_texts(py, &texts, batch_size, false)?;
        let array = Array2::from_shape_vec((texts.len(), self.model.dim()), out)
            .map_err(|e| value_error(format!("output shape: {e}")))?;
        Ok(array.into_pyarray(py).into_any())
    }

    /// A pyarrow string array (or chunked array) as a `FixedSizeList<float32, dim>` array; the
    /// strings are read from the Arrow buffers in place, nulls are refused.
    #[pyo3(signature = (array, batch_size=1024))]
    fn encode_arrow<'py>(
        slf: &Bound<'py, Self>,
        array: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("stk._arrow")?
            .getattr("encode_arrow")?
            .call1((slf, array, batch_size))
    }

    /// Width of each embedding.
    #[getter]
    fn dim(&self) -> usize {
        self.model.dim()
    }

    /// Whether embeddings are L2-normalized.
    #[getter]
    fn normalize(&self) -> bool {
        self.model.normalizes()
    }

    /// `"model2vec"` or `"sentence-transformers"`: whose output this model reproduces.
    #[getter]
    fn semantics(&self) -> &'static str {
        self.model.semantics().as_str()
    }

    /// The folder the model was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.model.dir().to_path_buf()
    }

    /// Worker threads used by `encode` (`None`: one per core).
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.source.threads
    }

    fn __repr__(&self) -> String {
        format!(
            "StaticModel(path={:?}, dim={}, semantics={:?}, normalize={})",
            self.model.dir().display().to_string(),
            self.model.dim(),
            self.model.semantics().as_str(),
            if self.model.normalizes() {
                "True"
            } else {
                "False"
            }
        )
    }

    /// Pickling reloads the model from its folder (absolute path) in the receiving process:
    /// the bytes are not carried, so the folder must be reachable there.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let loader = py.import("stk._stk")?.getattr("_load_pickled")?;
        let path = self.source.path.as_ref().map(|_| {
            std::path::absolute(self.model.dir()).unwrap_or_else(|_| self.model.dir().to_path_buf())
        });
        let semantics = Some(self.model.semantics().as_str().to_string());
        let args = (
            path,
            self.source.normalize,
            semantics,
            self.source.max_length.to_pickle(py)?,
            self.source.threads,
        )
            .into_pyobject(py)?;
        Ok((loader, args))
    }
}

/// One numpy array of a batch's token rows (handed over without a copy), and a view of it
/// per text pushed onto `arrays`.
fn push_text_views<'py>(
    py: Python<'py>,
    batch: TokenEmbeddings,
    arrays: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let dim = batch.dim();
    let (values, offsets) = batch.into_parts();
    let rows = offsets.last().copied().unwrap_or(0);
    let all = Array2::from_shape_vec((rows, dim), values)
        .map_err(|e| value_error(format!("output shape: {e}")))?
        .into_pyarray(py);
    for w in offsets.windows(2) {
        let text_rows = PySlice::new(py, w[0] as isize, w[1] as isize, 1);
        arrays.push(all.call_method1("__getitem__", (text_rows,))?);
    }
    Ok(())
}

/// Texts `data[offsets[i]..offsets[i + 1]]`, checked to be in bounds, ordered and UTF-8.
fn split_utf8<'a>(data: &'a [u8], offsets: &[i64]) -> PyResult<Vec<&'a str>> {
    if offsets.is_empty() {
        return Err(value_error("offsets is empty: it needs N + 1 entries"));
    }
    offsets
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let (start, end) = (w[0], w[1]);
            if start < 0 || end < start || end as u64 > data.len() as u64 {
                return Err(value_error(format!(
                    "text {i}: offsets {start}..{end} are outside the {} bytes of string data",
                    data.len()
                )));
            }
            std::str::from_utf8(&data[start as usize..end as usize])
                .map_err(|e| value_error(format!("text {i} is not valid UTF-8: {e}")))
        })
        .collect()
}
