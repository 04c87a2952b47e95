//! `stk.pool`, `stk.normalize`, `stk.weighted_layer_pooling` on numpy arrays: the same library
//! calls as `stk pool`, `stk normalize` and `stk layer-pool`, on borrowed inputs.

use numpy::prelude::*;
use numpy::PyReadonlyArrayDyn;
use pyo3::prelude::*;
use stk::ops::{self, PoolInput, PoolInputs};
use stk::{Device, PoolingMode, PoolingSpec, Tensor};
use stk_core::{PaddedBatch, VarlenBatch};

use crate::arrays::{borrow_floats, to_numpy};
use crate::errors::{value_error, IntoPyResult};
use crate::threads;

/// Run `work` without the GIL on this process's pool.
fn compute<T: Send>(py: Python<'_>, work: impl FnOnce() -> stk::Result<T> + Send) -> PyResult<T> {
    let pool = threads::pool(None)?;
    py.detach(|| pool.install(work)).py()
}

/// `(sentence_embedding, is_bf16_bits)`. The Python wrapper converts arguments: `modes` is a
/// comma-separated list, the mask and `cu_seq_lens` are int64, `token_weights_sum` float32.
#[pyfunction]
#[pyo3(signature = (token_embeddings, bf16, attention_mask, modes, prompt_length, cu_seq_lens, token_weights_sum))]
#[allow(clippy::too_many_arguments)]
pub fn pool<'py>(
    py: Python<'py>,
    token_embeddings: &Bound<'py, PyAny>,
    bf16: bool,
    attention_mask: Option<PyReadonlyArrayDyn<'py, i64>>,
    modes: &str,
    prompt_length: Option<usize>,
    cu_seq_lens: Option<PyReadonlyArrayDyn<'py, i64>>,
    token_weights_sum: Option<PyReadonlyArrayDyn<'py, f32>>,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    let tokens = borrow_floats(token_embeddings, "token_embeddings", bf16)?;
    let spec = PoolingSpec::new(PoolingMode::parse_list(modes).py()?)
        .py()?
        .with_prompt_length(prompt_length);
    let batch = match (attention_mask, cu_seq_lens) {
        (Some(_), Some(_)) => {
            return Err(value_error(
                "pass attention_mask (padded [B, T, D] layout) or cu_seq_lens (varlen [N, D] \
                 layout), not both",
            ))
        }
        (None, Some(cu)) => {
            if cu.ndim() != 1 {
                return Err(value_error(format!(
                    "cu_seq_lens must be 1-D [B + 1], got shape {:?}",
                    cu.shape()
                )));
            }
            PoolInput::Varlen(VarlenBatch::new(tokens, cu.as_slice()?).py()?)
        }
        (mask, None) => {
            let mask = match mask {
                Some(m) => Some(Tensor::from_slice(m.shape().to_vec(), m.as_slice()?).py()?),
                None => None,
            };
            PoolInput::Padded(PaddedBatch::new(tokens, mask.as_ref()).py()?)
        }
    };
    let token_weights_sum = match token_weights_sum {
        None => None,
        Some(t) if t.ndim() == 1 => Some(t.as_slice()?.to_vec()),
        Some(t) => {
            return Err(value_error(format!(
                "token_weights_sum must be 1-D [B], got shape {:?}",
                t.shape()
            )))
        }
    };
    let inputs = PoolInputs {
        batch,
        token_weights_sum,
        cls_token_embeddings: None,
    };
    let pooled = compute(py, || ops::pool_tensors(&inputs, &spec, Device::Cpu))?;
    to_numpy(py, &pooled)
}

/// L2-normalize over the last dimension: `(normalized, is_bf16_bits)`.
#[pyfunction]
pub fn normalize<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    bf16: bool,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    let x = borrow_floats(x, "x", bf16)?;
    let normalized = compute(py, || ops::normalize_tensor(&x, Device::Cpu))?;
    to_numpy(py, &normalized)
}

/// WeightedLayerPooling of `[L+1, B, T, D]`: `(token_embeddings, is_bf16_bits)`.
#[pyfunction]
pub fn weighted_layer_pooling<'py>(
    py: Python<'py>,
    all_layer_embeddings: &Bound<'py, PyAny>,
    layers_bf16: bool,
    layer_weights: &Bound<'py, PyAny>,
    weights_bf16: bool,
    layer_start: usize,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    let layers = borrow_floats(all_layer_embeddings, "all_layer_embeddings", layers_bf16)?;
    let weights = borrow_floats(layer_weights, "layer_weights", weights_bf16)?;
    let pooled = compute(py, || {
        ops::layer_pool_tensors(&layers, layer_start, &weights, Device::Cpu)
    })?;
    to_numpy(py, &pooled)
}
