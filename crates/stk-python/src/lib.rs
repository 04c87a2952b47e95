//! The native part of the `stk` Python package (`stk._stk`): a thin layer over the `stk`
//! library. Validation, layouts and math are the library's; this crate only converts Python
//! objects to stk types and back, releases the GIL while stk works, and maps `stk::Error` to
//! Python exceptions. The Python side (`python/stk/`) adds torch and pyarrow conversions.
//!
//! `unsafe` lives only in `arrays.rs` (borrowing a numpy array's buffer without a copy).
#![deny(unsafe_code)]

mod arrays;
mod errors;
mod model;
mod modules;
mod ops;
mod threads;

use pyo3::prelude::*;

#[pymodule]
fn _stk(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::StaticModel>()?;
    m.add_class::<modules::StkModule>()?;
    m.add_function(wrap_pyfunction!(model::_load_pickled, m)?)?;
    m.add_function(wrap_pyfunction!(ops::pool, m)?)?;
    m.add_function(wrap_pyfunction!(ops::normalize, m)?)?;
    m.add_function(wrap_pyfunction!(ops::weighted_layer_pooling, m)?)?;
    Ok(())
}
