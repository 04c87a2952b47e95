//! Assertions for tests of stk's crates (and of code built on them): one `expect_err` for
//! every crate's error checks. Not for library use: it panics on purpose.

use crate::{Error, Result};

/// Says whether an error is of the expected kind, e.g. `|e| matches!(e, Error::Shape { .. })`.
pub type ErrorKind = fn(&Error) -> bool;

/// Asserts that `result` failed with an error `kind` accepts (an [`Error`] variant, written
/// `|e| matches!(e, Error::Shape { .. })`) whose message contains every one of `words` (the
/// tensor, file or argument a user would look for), and returns the error. Panics otherwise,
/// naming the caller's line.
#[track_caller]
pub fn expect_err<T>(result: Result<T>, kind: ErrorKind, words: &[&str]) -> Error {
    let Err(err) = result else {
        panic!("expected an error, got Ok");
    };
    assert!(kind(&err), "unexpected kind of error: {err:?}");
    let message = err.to_string();
    for word in words {
        assert!(message.contains(word), "message `{message}` lacks `{word}`");
    }
    err
}
