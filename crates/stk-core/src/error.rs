use std::path::PathBuf;

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way stk can refuse an input or fail. Messages name the offending thing
/// (file, tensor, config key, line) so the user can fix it without reading code.
///
/// `#[non_exhaustive]`: new failure kinds may be added; match the ones you act on (a server
/// retries [`Error::OutOfMemory`] with a smaller batch) and treat the rest alike.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("tensor `{name}` not found in {path} (it has: {available})")]
    MissingTensor {
        name: String,
        path: PathBuf,
        available: String,
    },
    #[error("{what}: expected dtype {expected}, got {got}")]
    DType {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        what: String,
        expected: String,
        got: Vec<usize>,
    },
    #[error("invalid batch layout: {0}")]
    Layout(String),
    #[error("token id {id} at position {position} is out of range for a table of {vocab} rows")]
    IdOutOfRange {
        id: i64,
        position: usize,
        vocab: usize,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("unsupported module type `{module}` (supported: {supported})")]
    UnsupportedModule { module: String, supported: String },
    #[error("unknown pooling mode `{0}` (expected one of: cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken)")]
    UnknownPoolingMode(String),
    #[error("unknown device `{0}` (expected cpu, cuda or cuda:N)")]
    UnknownDevice(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{path}: line {line} is not valid UTF-8")]
    InvalidUtf8 { path: PathBuf, line: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("no CUDA driver found (libcuda.so.1 could not be loaded)")]
    NoCudaDriver,
    #[error("no CUDA device {0} available")]
    NoCudaDevice(usize),
    #[error("CUDA error: {0}")]
    Cuda(String),
    /// The device could not allocate (or a launch ran out of resources): retrying with a
    /// smaller batch may succeed.
    #[error("CUDA out of memory while {what}")]
    OutOfMemory {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A CUDA driver call failed; `source` is the driver's error (its `CUresult` code).
    #[error("CUDA driver error while {what}: {source}")]
    CudaDriver {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The driver is older than the embedded PTX needs.
    #[error("the CUDA driver supports CUDA {found}, but stk's kernels (PTX ISA {ptx_isa}) need a driver for CUDA {needed} or newer (R{min_branch}+); update the NVIDIA driver")]
    DriverTooOld {
        found: String,
        needed: String,
        ptx_isa: String,
        min_branch: u32,
    },
    #[error("{0} is not supported on {1}")]
    Unsupported(String, String),
}

impl Error {
    /// Attach a path to an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn shape(what: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    pub fn dtype(what: impl Into<String>, expected: impl Into<String>, got: impl ToString) -> Self {
        Error::DType {
            what: what.into(),
            expected: expected.into(),
            got: got.to_string(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
