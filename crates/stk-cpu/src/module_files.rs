//! Reading the files of one saved module folder: its JSON config and its `model.safetensors`.
//! Every error names the file (and, for weights, the tensor) so a broken folder can be fixed
//! without reading code.

use serde::de::DeserializeOwned;
use std::path::Path;
use stk_core::{DType, Error, Result, SafetensorsFile, Tensor};

/// The weights file every module with parameters reads.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The pickled PyTorch weights file of older folders, which stk does not read.
pub const PICKLED_WEIGHTS_FILE: &str = "pytorch_model.bin";

/// Parse `dir/name` as JSON into `T`; a missing file, invalid JSON or a wrong shape of the
/// JSON is an `Error::Config` naming the file and what serde found wrong.
pub fn read_json_config<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::config(&path, format!("not a valid {name}: {e}")))
}

/// Open `dir/model.safetensors`. When only `pytorch_model.bin` is there, say so: pickled
/// weights are refused (loading them means running a pickle), the user has to convert them.
pub fn open_weights(dir: &Path, module: &str) -> Result<SafetensorsFile> {
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        let pickled = dir.join(PICKLED_WEIGHTS_FILE);
        if pickled.is_file() {
            return Err(Error::config(
                &pickled,
                format!(
                    "{module} weights are only in pickled PyTorch form, which stk does not read; \
                     convert them to {WEIGHTS_FILE} (e.g. with safetensors.torch.save_file)"
                ),
            ));
        }
        return Err(Error::config(
            &path,
            format!("{module} weights file is missing (expected {WEIGHTS_FILE} in this folder)"),
        ));
    }
    SafetensorsFile::open(&path)
}

/// Tensor `name` of `file`, checked to be a float tensor of exactly `dims`.
pub fn float_tensor(file: &SafetensorsFile, name: &str, dims: &[usize]) -> Result<Tensor> {
    let t = file.get(name)?;
    let what = format!("{}: tensor `{name}`", file.path().display());
    t.expect_dtype(&what, &[DType::F32, DType::F16, DType::BF16])?;
    if t.dims() != dims {
        return Err(Error::shape(
            what,
            format!("{dims:?} (from the module config)"),
            t.dims(),
        ));
    }
    Ok(t)
}

/// Tensor `name` of `file` as f32 values, checked to be of exactly `dims`. For the small
/// parameter tensors (convolutions, LSTM gates, linear layers) that the math reads many times.
pub fn f32_values(file: &SafetensorsFile, name: &str, dims: &[usize]) -> Result<Vec<f32>> {
    float_tensor(file, name, dims)?.to_f32_vec()
}

/// A config value that must be a positive count (a width, a size), named in the error.
pub fn positive(path: &Path, key: &str, value: usize) -> Result<usize> {
    if value == 0 {
        return Err(Error::config(
            path,
            format!("`{key}` must be at least 1, got 0"),
        ));
    }
    Ok(value)
}
