//! `stk::Error` → Python exceptions: a missing file is `FileNotFoundError`, a wrong dtype is
//! `TypeError`, out-of-memory is `MemoryError`, anything else the input got wrong is `ValueError`. The message is stk's, which
//! names the offending tensor, file or argument.

use pyo3::exceptions::{PyFileNotFoundError, PyMemoryError, PyOSError, PyTypeError, PyValueError};
use pyo3::PyErr;
use stk::Error;

pub fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match &error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        Error::DType { .. } => PyTypeError::new_err(message),
        // A caller can retry with a smaller batch, as after numpy's own allocation failures.
        Error::OutOfMemory { .. } => PyMemoryError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// `.map_err(to_py)` for results of the library.
pub trait IntoPyResult<T> {
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPyResult<T> for stk::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}

pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

pub fn type_error(message: impl Into<String>) -> PyErr {
    PyTypeError::new_err(message.into())
}
