//! numpy arrays ⇄ stk tensors.
//!
//! Inputs are borrowed, not copied: a C-contiguous float array becomes a [`Tensor`] over the
//! array's own buffer ([`Tensor::from_shared`]), holding a reference to the array so the buffer
//! outlives the tensor. Non-contiguous arrays are refused with a message saying how to copy
//! them. bfloat16 has no numpy dtype: the Python side passes a bf16 tensor as its 16-bit
//! integer view and says so with `bf16=True`.

use std::sync::Arc;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::prelude::*;
use numpy::{Element, PyArrayDyn, PyUntypedArray};
use pyo3::prelude::*;
use stk_core::{f16, DType, SharedBytes, Tensor};

use crate::errors::{type_error, value_error, IntoPyResult};

/// A numpy array's data buffer, kept alive by a reference to the array.
struct ArrayBytes {
    _array: Py<PyAny>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr..ptr + len` is the data buffer of the array that `_array` keeps alive; numpy
// never moves or frees the buffer of a live array while it is referenced (`resize` refuses
// arrays with other references). The bytes are only read. Python code that writes the array
// from another thread while stk computes races with stk exactly as with any numpy function
// that releases the GIL; it can change the numbers, not the buffer's bounds.
#[allow(unsafe_code)]
unsafe impl Send for ArrayBytes {}
// SAFETY: as for `Send`: shared access is read-only.
#[allow(unsafe_code)]
unsafe impl Sync for ArrayBytes {}

impl SharedBytes for ArrayBytes {
    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see the `Send` impl: the buffer is live, `len` bytes long, and read-only here.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// The stk dtype of a numpy array (`bf16`: its 16-bit integers are bfloat16 bits).
fn float_dtype(array: &Bound<'_, PyUntypedArray>, what: &str, bf16: bool) -> PyResult<DType> {
    let dtype = array.dtype();
    match (dtype.kind(), dtype.itemsize(), bf16) {
        (b'f', 4, false) => Ok(DType::F32),
        (b'f', 2, false) => Ok(DType::F16),
        (b'i' | b'u', 2, true) => Ok(DType::BF16),
        _ => Err(type_error(format!(
            "{what}: expected dtype float32, float16 or bfloat16, got {}",
            dtype.str()?
        ))),
    }
}

fn borrow_typed<T: Element>(array: &Bound<'_, PyUntypedArray>, dtype: DType) -> PyResult<Tensor> {
    let typed = array.cast::<PyArrayDyn<T>>()?;
    let bytes = ArrayBytes {
        _array: array.clone().into_any().unbind(),
        ptr: typed.data() as *const u8,
        len: typed.len() * std::mem::size_of::<T>(),
    };
    Tensor::from_shared(array.shape().to_vec(), dtype, Arc::new(bytes)).py()
}

/// Borrow a float numpy array as a tensor named `what` in errors.
pub fn borrow_floats(obj: &Bound<'_, PyAny>, what: &str, bf16: bool) -> PyResult<Tensor> {
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        type_error(format!(
            "{what} must be a numpy array or a torch tensor, got {}",
            type_name(obj)
        ))
    })?;
    if !array.is_c_contiguous() {
        return Err(value_error(format!(
            "{what} is not contiguous (strides {:?}): pass np.ascontiguousarray(x) or \
             x.contiguous() (stk reads arrays in place and does not copy them silently)",
            array.strides()
        )));
    }
    if array.dtype().is_native_byteorder() == Some(false) {
        return Err(type_error(format!(
            "{what} is not in the machine's byte order: convert it with x.astype(x.dtype.newbyteorder('='))"
        )));
    }
    match float_dtype(array, what, bf16)? {
        DType::F32 => borrow_typed::<f32>(array, DType::F32),
        DType::F16 => borrow_typed::<f16>(array, DType::F16),
        _ => borrow_typed::<i16>(array, DType::BF16),
    }
}

/// A tensor as a new numpy array of its dtype (bf16 as int16 bits; the flag says so).
pub fn to_numpy<'py>(py: Python<'py>, tensor: &Tensor) -> PyResult<(Bound<'py, PyAny>, bool)> {
    fn owned<'py, T: Element + bytemuck::Pod>(
        py: Python<'py>,
        tensor: &Tensor,
    ) -> PyResult<Bound<'py, PyAny>> {
        let values: Vec<T> = bytemuck::pod_collect_to_vec(tensor.bytes());
        let array = ArrayD::from_shape_vec(IxDyn(tensor.dims()), values)
            .map_err(|e| value_error(format!("output shape {:?}: {e}", tensor.dims())))?;
        Ok(array.into_pyarray(py).into_any())
    }
    match tensor.dtype() {
        DType::F32 => Ok((owned::<f32>(py, tensor)?, false)),
        DType::F16 => Ok((owned::<f16>(py, tensor)?, false)),
        DType::BF16 => Ok((owned::<i16>(py, tensor)?, true)),
        other => Err(type_error(format!(
            "stk returned a {other} tensor, which has no numpy form"
        ))),
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an unknown type".into())
}
