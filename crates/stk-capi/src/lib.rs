//! libstk: the C ABI of stk (`include/stk.h`, generated from this crate by
//! `cargo xtask capi-header`).
//!
//! Every function returns an `int` status (`STK_OK` or a negative `STK_ERR_*` code, one per
//! kind of failure) and leaves a message for [`ffi::stk_last_error_message`]; no panic crosses
//! the boundary. The C types and constants live in [`types`], the status codes and the
//! thread-local message in [`status`], the exported functions (the crate's only `unsafe`:
//! turning C pointers into Rust references) in [`ffi`], and what they compute in [`host`],
//! which calls the library's own validation and operations.
#![deny(unsafe_code)]
#![allow(non_camel_case_types)] // C type names: stk_model, stk_pool_args

pub mod ffi;
pub mod host;
pub mod status;
pub mod types;
