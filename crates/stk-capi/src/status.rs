//! Status codes, the thread-local error message, and the guard every exported function runs
//! its body in (no panic crosses the C boundary).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use stk_core::Error;

/// Success.
pub const STK_OK: c_int = 0;
/// A pointer that must not be `NULL` was `NULL` (the message names the argument).
pub const STK_ERR_NULL_POINTER: c_int = -1;
/// An argument is out of its range: an unknown pooling mode, a negative prompt length, a text
/// that is not UTF-8, an unknown device, a layout given twice.
pub const STK_ERR_INVALID_ARGUMENT: c_int = -2;
/// Sizes do not add up: a buffer's dimensions disagree with another's or with the output length.
pub const STK_ERR_SHAPE: c_int = -3;
/// An element type is unknown or not accepted where it was given.
pub const STK_ERR_DTYPE: c_int = -4;
/// A batch layout's values are invalid (mask values other than 0/1, `cu_seq_lens` not
/// increasing from 0 to the token count, token ids out of range).
pub const STK_ERR_LAYOUT: c_int = -5;
/// A file or folder could not be read (it is missing, or not readable).
pub const STK_ERR_IO: c_int = -6;
/// A model file is not a valid safetensors file, or lacks a tensor.
pub const STK_ERR_SAFETENSORS: c_int = -7;
/// A model folder's configuration is invalid, or names a module stk does not support.
pub const STK_ERR_CONFIG: c_int = -8;
/// The tokenizer failed (an invalid `tokenizer.json`, or a text it cannot cut).
pub const STK_ERR_TOKENIZER: c_int = -9;
/// No CUDA driver (libcuda.so.1) or no such device: the device-pointer functions cannot run.
pub const STK_ERR_NO_CUDA: c_int = -10;
/// A CUDA driver call failed, or the driver is too old for stk's kernels.
pub const STK_ERR_CUDA: c_int = -11;
/// The device ran out of memory (a smaller batch may succeed).
pub const STK_ERR_OUT_OF_MEMORY: c_int = -12;
/// The operation is not supported here (for example a module pipeline on a GPU).
pub const STK_ERR_UNSUPPORTED: c_int = -13;
/// A bug in stk: an internal panic was caught. The message says where.
pub const STK_ERR_INTERNAL: c_int = -99;

/// Why a call failed: a null argument (checked before anything is read), or the library's error.
pub(crate) enum Failure {
    Null(String),
    Stk(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Stk(e)
    }
}

/// The status code of a library error.
pub(crate) fn code_of(e: &Error) -> c_int {
    match e {
        Error::Io { .. } | Error::InvalidUtf8 { .. } => STK_ERR_IO,
        Error::Safetensors { .. } | Error::MissingTensor { .. } => STK_ERR_SAFETENSORS,
        Error::DType { .. } => STK_ERR_DTYPE,
        Error::Shape { .. } => STK_ERR_SHAPE,
        Error::Layout(_) | Error::IdOutOfRange { .. } => STK_ERR_LAYOUT,
        Error::Config { .. } | Error::UnsupportedModule { .. } => STK_ERR_CONFIG,
        Error::Tokenizer(_) => STK_ERR_TOKENIZER,
        Error::UnknownPoolingMode(_) | Error::UnknownDevice(_) | Error::InvalidArgument(_) => {
            STK_ERR_INVALID_ARGUMENT
        }
        Error::NoCudaDriver | Error::NoCudaDevice(_) => STK_ERR_NO_CUDA,
        Error::Cuda(_) | Error::CudaDriver { .. } | Error::DriverTooOld { .. } => STK_ERR_CUDA,
        Error::OutOfMemory { .. } => STK_ERR_OUT_OF_MEMORY,
        Error::Unsupported(..) => STK_ERR_UNSUPPORTED,
        // `Error` is non-exhaustive: a kind added later is still reported, with its message.
        _ => STK_ERR_INVALID_ARGUMENT,
    }
}

thread_local! {
    /// The message of this thread's last call ("" after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: String) {
    // An interior NUL would end the C string early: show it instead.
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|m| *m.borrow_mut() = message);
}

/// This thread's last message; the pointer stays valid until the thread's next stk call.
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR.with(|m| m.borrow().as_ptr())
}

/// Run `body`, catching panics, and turn its outcome into a status code and this thread's
/// message.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let (code, message) = match outcome {
        Ok(Ok(())) => (STK_OK, String::new()),
        Ok(Err(Failure::Null(what))) => (STK_ERR_NULL_POINTER, format!("{what} is NULL")),
        Ok(Err(Failure::Stk(e))) => (code_of(&e), e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            (
                STK_ERR_INTERNAL,
                format!("internal error in stk (please report it): {what}"),
            )
        }
    };
    set_last_error(message);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> String {
        LAST_ERROR.with(|m| m.borrow().to_string_lossy().into_owned())
    }

    #[test]
    fn outcomes_become_codes_and_messages() {
        assert_eq!(guard(|| Ok(())), STK_OK);
        assert_eq!(message(), "");
        assert_eq!(
            guard(|| Err(Failure::Null("texts".into()))),
            STK_ERR_NULL_POINTER
        );
        assert_eq!(message(), "texts is NULL");
        assert_eq!(
            guard(|| Err(Error::Layout("cu_seq_lens must start at 0".into()).into())),
            STK_ERR_LAYOUT
        );
        assert!(message().contains("cu_seq_lens must start at 0"));
        assert_eq!(guard(|| panic!("boom")), STK_ERR_INTERNAL);
        assert!(message().contains("internal error") && message().contains("boom"));
        assert_eq!(guard(|| Err(Error::NoCudaDriver.into())), STK_ERR_NO_CUDA);
        assert!(!last_error().is_null());
    }
}
