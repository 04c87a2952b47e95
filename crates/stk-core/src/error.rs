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
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a safetensors file stk can read (header, offsets, dtype).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        reason: String,
    },
    /// A safetensors file lacks a tensor an operation needs.
    #[error("tensor `{name}` not found in {path} (it has: {available})")]
    MissingTensor {
        /// The tensor looked for (or its accepted names, joined).
        name: String,
        /// The file.
        path: PathBuf,
        /// The names the file holds, comma-separated.
        available: String,
    },
    /// A tensor has an element type the operation does not take.
    #[error("{what}: expected dtype {expected}, got {got}")]
    DType {
        /// The tensor or argument.
        what: String,
        /// The dtypes accepted, in words.
        expected: String,
        /// The dtype given.
        got: String,
    },
    /// A tensor's shape disagrees with the operation or with another input.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// The tensor or argument.
        what: String,
        /// The shape expected, in words (`[B, T, D]`, `[4]`, a rule).
        expected: String,
        /// The dimensions given.
        got: Vec<usize>,
    },
    /// A batch layout is inconsistent (mask values, `cu_seq_lens`, spans, bag offsets).
    #[error("invalid batch layout: {0}")]
    Layout(String),
    /// A token id is not a row of the table it indexes.
    #[error("token id {id} at position {position} is out of range for a table of {vocab} rows")]
    IdOutOfRange {
        /// The id.
        id: i64,
        /// Its position in the flat id list.
        position: usize,
        /// The table's number of rows (ids must be below it).
        vocab: usize,
    },
    /// A model folder or one of its config files is malformed or disagrees with its weights.
    #[error("{path}: {reason}")]
    Config {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong, naming the key, tensor or width.
        reason: String,
    },
    /// A `modules.json` names a module type stk does not implement.
    #[error("unsupported module type `{module}` (supported: {supported})")]
    UnsupportedModule {
        /// The type as written in `modules.json`.
        module: String,
        /// The types stk implements, comma-separated.
        supported: String,
    },
    /// A pooling mode name that is not one of the reference's.
    #[error("unknown pooling mode `{0}` (expected one of: cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken)")]
    UnknownPoolingMode(String),
    /// A device name that is not `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device `{0}` (expected cpu, cuda or cuda:N)")]
    UnknownDevice(String),
    /// A tokenizer file could not be loaded or a text could not be tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A line of a text input is not UTF-8.
    #[error("{path}: line {line} is not valid UTF-8")]
    InvalidUtf8 {
        /// The input (`<stdin>` for standard input).
        path: PathBuf,
        /// Its 1-based line number.
        line: usize,
    },
    /// An argument out of its range or inconsistent with the others.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A CUDA device was asked for, but `libcuda.so.1` could not be loaded.
    #[error("no CUDA driver found (libcuda.so.1 could not be loaded)")]
    NoCudaDriver,
    /// The driver is there, but not the device with this ordinal.
    #[error("no CUDA device {0} available")]
    NoCudaDevice(usize),
    /// A CUDA failure that fits none of the variants below.
    #[error("CUDA error: {0}")]
    Cuda(String),
    /// The device could not allocate (or a launch ran out of resources): retrying with a
    /// smaller batch may succeed.
    #[error("CUDA out of memory while {what}")]
    OutOfMemory {
        /// The step that needed the memory.
        what: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A CUDA driver call failed; `source` is the driver's error (its `CUresult` code).
    #[error("CUDA driver error while {what}: {source}")]
    CudaDriver {
        /// The step that failed.
        what: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The driver is older than the embedded PTX needs.
    #[error("the CUDA driver supports CUDA {found}, but stk's kernels (PTX ISA {ptx_isa}) need a driver for CUDA {needed} or newer (R{min_branch}+); update the NVIDIA driver")]
    DriverTooOld {
        /// The CUDA version the driver supports (`12.1`).
        found: String,
        /// The CUDA version the PTX needs.
        needed: String,
        /// The PTX ISA version of the embedded kernels.
        ptx_isa: String,
        /// The oldest driver branch that loads them (535 for R535).
        min_branch: u32,
    },
    /// An operation (first) that a device or build (second) does not offer.
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

    /// [`Error::Config`] for `path`.
    pub fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// [`Error::Shape`]: `what` should have `expected`, has `got`.
    pub fn shape(what: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    /// [`Error::Shape`] for dimensions whose element or byte count overflows `usize`.
    pub fn too_large(what: impl Into<String>, got: &[usize]) -> Self {
        Error::shape(what, "dimensions whose byte size fits in memory", got)
    }

    /// [`Error::DType`]: `what` should be one of `expected`, is `got`.
    pub fn dtype(what: impl Into<String>, expected: impl Into<String>, got: impl ToString) -> Self {
        Error::DType {
            what: what.into(),
            expected: expected.into(),
            got: got.to_string(),
        }
    }

    /// [`Error::InvalidArgument`] with `msg`.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// `n` and `noun`, the noun in the plural unless `n` is 1 (`counted(1, "text")` is "1 text",
/// `counted(3, "id")` "3 ids"), for messages that state a count.
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
