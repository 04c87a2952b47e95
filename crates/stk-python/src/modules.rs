//! `stk._stk.Module`: one sentence-transformers module folder run by stk on a features
//! dictionary of numpy arrays. `stk.sentence_transformers.accelerate` saves a module of a loaded
//! `SentenceTransformer` to a folder, loads it here and hands its `forward` the features it
//! reads; the loading, checks and math are the library's (`stk::pipeline::load_module`).
//!
//! The dictionary speaks sentence-transformers' feature names and padded layouts:
//! `input_ids` and `attention_mask` int64 `[B, T]`, `sentence_lengths` int64 `[B]`,
//! `token_embeddings` float32 `[B, T, D]`, `token_weights_sum` float32 `[B]`,
//! `sentence_embedding` float32 `[B, D]`.

use std::path::PathBuf;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::prelude::*;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use stk::pipeline::{load_module, Features, LoadedModule};
use stk::Tensor;

use crate::errors::{value_error, IntoPyResult};
use crate::threads;

/// A module folder loaded by stk.
#[pyclass(module = "stk._stk", name = "Module", frozen)]
pub struct StkModule {
    module: LoadedModule,
    class: String,
}

#[pymethods]
impl StkModule {
    /// Load the module of class `class` (``"CNN"``, ``"WordWeights"``, ...) from `folder`.
    #[new]
    fn new(py: Python<'_>, class: String, folder: PathBuf) -> PyResult<Self> {
        let module = py.detach(|| load_module(&class, &folder)).py()?;
        Ok(StkModule { module, class })
    }

    /// Whether the module reads text (then call `encode_texts`, else `forward`).
    #[getter]
    fn reads_text(&self) -> bool {
        matches!(self.module, LoadedModule::Text(_))
    }

    fn __repr__(&self) -> String {
        format!("stk._stk.Module({:?})", self.class)
    }

    /// Tokenize `texts` and run the module: the features it makes, as numpy arrays.
    fn encode_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let LoadedModule::Text(module) = &self.module else {
            return Err(value_error(format!(
                "{} does not read text: call forward",
                self.class
            )));
        };
        let pool = threads::pool(None)?;
        let features = py
            .detach(|| {
                pool.install(|| {
                    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                    module.forward(module.tokenize(&texts)?)
                })
            })
            .py()?;
        text_features_to_dict(py, &features)
    }

    /// Run the module on `features` (a dict of numpy arrays, see the module docs): a dict of
    /// the features it writes (`token_embeddings`, `token_weights_sum`, `sentence_embedding`).
    fn forward<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let module: &dyn stk::pipeline::Module = match &self.module {
            LoadedModule::Text(m) => m.as_ref(),
            LoadedModule::Step(m) => m.as_ref(),
        };
        let input = features_from_dict(features)?;
        let pool = threads::pool(None)?;
        let out = py.detach(|| pool.install(|| module.forward(input))).py()?;
        let dict = PyDict::new(py);
        if let Some(t) = &out.token_embeddings {
            dict.set_item("token_embeddings", f32_array(py, t)?)?;
        }
        if let Some(w) = &out.token_weights_sum {
            dict.set_item("token_weights_sum", w.clone().into_pyarray(py))?;
        }
        if let Some(t) = &out.sentence_embedding {
            dict.set_item("sentence_embedding", f32_array(py, t)?)?;
        }
        Ok(dict)
    }
}

fn f32_array<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let values = t.to_f32_vec().py()?;
    let array = ArrayD::from_shape_vec(IxDyn(t.dims()), values)
        .map_err(|e| value_error(format!("output shape {:?}: {e}", t.dims())))?;
    Ok(array.into_pyarray(py))
}

/// A text module's features as sentence-transformers' preprocess + forward would leave them:
/// ids padded with 0 to the longest text (at least 1), their mask and lengths.
fn text_features_to_dict<'py>(py: Python<'py>, f: &Features) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let b = f.input_ids.len();
    let t = f.input_ids.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = ArrayD::<i64>::zeros(IxDyn(&[b, t]));
    let mut mask = ArrayD::<i64>::zeros(IxDyn(&[b, t]));
    for (row, text_ids) in f.input_ids.iter().enumerate() {
        for (col, &id) in text_ids.iter().enumerate() {
            ids[[row, col]] = i64::from(id);
            mask[[row, col]] = 1;
        }
    }
    let lengths: Vec<i64> = f.input_ids.iter().map(|ids| ids.len() as i64).collect();
    dict.set_item("input_ids", ids.into_pyarray(py))?;
    dict.set_item("attention_mask", mask.into_pyarray(py))?;
    dict.set_item("sentence_lengths", lengths.into_pyarray(py))?;
    if let Some(te) = &f.token_embeddings {
        dict.set_item("token_embeddings", f32_array(py, te)?)?;
    }
    if let Some(se) = &f.sentence_embedding {
        dict.set_item("sentence_embedding", f32_array(py, se)?)?;
    }
    Ok(dict)
}

/// An optional int64 or float32 entry of the features dict.
fn entry<'py, T: numpy::Element>(
    features: &Bound<'py, PyDict>,
    name: &str,
    what: &str,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    match features.get_item(name)? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v
            .extract::<PyReadonlyArrayDyn<'py, T>>()
            .map(Some)
            .map_err(|_| value_error(format!("features[{name:?}] must be a {what} numpy array"))),
    }
}

/// The values of feature `name`, which must be C-contiguous.
fn values<'a, T: numpy::Element>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| value_error(format!("features[{name:?}] is not contiguous")))
}

fn tensor_of<T: numpy::Element + stk_core::Element>(
    a: &PyReadonlyArrayDyn<'_, T>,
    name: &str,
) -> PyResult<Tensor> {
    Tensor::from_slice(a.shape().to_vec(), values(a, name)?).py()
}

/// The features dict as stk `Features`; unpadded `input_ids` rows are cut to each text's
/// length (`sentence_lengths`, else the mask's count of ones, else the padded width).
fn features_from_dict(features: &Bound<'_, PyDict>) -> PyResult<Features> {
    let mut f = Features::default();
    let mask = entry::<i64>(features, "attention_mask", "int64")?;
    let lengths = entry::<i64>(features, "sentence_lengths", "int64")?;
    if let Some(l) = &lengths {
        f.sentence_lengths = values(l, "sentence_lengths")?
            .iter()
            .map(|&n| usize::try_from(n))
            .collect::<Result<_, _>>()
            .map_err(|_| value_error("features[\"sentence_lengths\"] holds a negative length"))?;
    } else if let Some(m) = &mask {
        if m.ndim() == 2 {
            f.sentence_lengths = m
                .as_array()
                .rows()
                .into_iter()
                .map(|r| r.iter().filter(|&&v| v != 0).count())
                .collect();
        }
    }
    if let Some(ids) = entry::<i64>(features, "input_ids", "int64")? {
        f.input_ids = unpad_ids(&ids, &f.sentence_lengths)?;
    }
    if let Some(m) = &mask {
        f.attention_mask = Some(tensor_of(m, "attention_mask")?);
    }
    if let Some(t) = entry::<f32>(features, "token_embeddings", "float32")? {
        f.token_embeddings = Some(tensor_of(&t, "token_embeddings")?);
    }
    if let Some(s) = entry::<f32>(features, "sentence_embedding", "float32")? {
        f.sentence_embedding = Some(tensor_of(&s, "sentence_embedding")?);
    }
    if let Some(w) = entry::<f32>(features, "token_weights_sum", "float32")? {
        f.token_weights_sum = Some(values(&w, "token_weights_sum")?.to_vec());
    }
    Ok(f)
}

/// `[B, T]` padded ids → one row per text of its real length.
fn unpad_ids(ids: &PyReadonlyArrayDyn<'_, i64>, lengths: &[usize]) -> PyResult<Vec<Vec<u32>>> {
    if ids.ndim() != 2 {
        return Err(value_error(format!(
            "features[\"input_ids\"] must be [B, T], got shape {:?}",
            ids.shape()
        )));
    }
    let ids = ids.as_array();
    let width = ids.shape()[1];
    ids.rows()
        .into_iter()
        .enumerate()
        .map(|(row, values)| {
            let len = lengths.get(row).copied().unwrap_or(width).min(width);
            values
                .iter()
                .take(len)
                .map(|&id| {
                    u32::try_from(id).map_err(|_| {
                        value_error(format!(
                            "features[\"input_ids\"] row {row} holds id {id}, outside 0..2^32"
                        ))
                    })
                })
                .collect()
        })
        .collect()
}
