//! The exported C functions. This is the crate's one module with `unsafe`: each function turns
//! the caller's pointers into references and slices (after checking them for `NULL` and
//! computing their lengths from the arguments), then calls the safe code of [`crate::host`],
//! inside [`guard`] so that no panic crosses the boundary.
//!
//! What a C caller promises (stated again in `stk.h`): a non-`NULL` pointer points to as many
//! valid elements as the arguments say, stays valid for the call, and output buffers do not
//! overlap inputs.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{c_char, c_int, c_void, CStr};

use stk_core::Error;
use stk_cuda::{NormRule, RawPool, RawRows};
use stk_facade::{LoadOptions, Model};

use crate::host::{self, PoolBuffers, PoolShapes};
use crate::status::{self, guard, Failure};
use crate::types::{self, stk_model, stk_pool_args};

fn null(what: &str) -> Failure {
    Failure::Null(what.to_string())
}

/// `ptr` as a slice of `len` elements; `NULL` is accepted only for `len == 0`.
///
/// # Safety
/// A non-`NULL` `ptr` points to `len` initialized, aligned elements that stay valid and
/// unwritten for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    check_byte_len::<T>(len, what)?;
    // SAFETY: non-null, and the caller promises `len` valid elements for 'a; the byte length
    // fits in isize (checked above).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// [`slice`] for an output buffer.
///
/// # Safety
/// A non-`NULL` `ptr` points to `len` aligned elements, writable and used by no one else for
/// `'a`.
unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(null(what));
    }
    check_byte_len::<T>(len, what)?;
    // SAFETY: non-null, and the caller promises `len` writable elements that nothing else
    // accesses during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// [`slice`] of an optional buffer: `None` when `len` is `None`.
///
/// # Safety
/// As [`slice`] when `len` is `Some`.
unsafe fn optional<'a, T>(
    ptr: *const T,
    len: Option<usize>,
    what: &str,
) -> Result<Option<&'a [T]>, Failure> {
    // SAFETY: the caller's promise, passed on.
    len.map(|len| unsafe { slice(ptr, len, what) }).transpose()
}

/// A slice may span at most `isize::MAX` bytes.
fn check_byte_len<T>(len: usize, what: &str) -> Result<(), Failure> {
    match len.checked_mul(std::mem::size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(Error::shape(what, "fewer than isize::MAX bytes", &[len]).into()),
    }
}

/// The library version, e.g. `"0.1.0"` (a static string).
#[no_mangle]
pub extern "C" fn stk_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of this thread's last stk call (`""` after a success). The string stays valid
/// until this thread's next stk call.
#[no_mangle]
pub extern "C" fn stk_last_error_message() -> *const c_char {
    status::last_error()
}

/// Load a model folder (`path`, UTF-8 or the system's bytes, NUL-terminated), or the embedded
/// default model (potion-base-8M-f16) when `path` is `NULL`, into `*out`. On failure `*out` is
/// `NULL`. Free the model with `stk_model_free`.
///
/// # Safety
/// `path` is `NULL` or a NUL-terminated string; `out` points to a writable `stk_model*`.
#[no_mangle]
pub unsafe extern "C" fn stk_model_load(path: *const c_char, out: *mut *mut stk_model) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: `out` is non-null and points to a writable pointer (the caller's promise).
        unsafe { out.write(std::ptr::null_mut()) };
        let options = LoadOptions::default();
        let model = if path.is_null() {
            Model::load_default(&options)?
        } else {
            // SAFETY: a non-null `path` is a NUL-terminated string (the caller's promise).
            let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
            Model::load_with(path_of(bytes)?, &options)?
        };
        let model = Box::into_raw(Box::new(stk_model { model }));
        // SAFETY: as above.
        unsafe { out.write(model) };
        Ok(())
    })
}

#[cfg(unix)]
fn path_of(bytes: &[u8]) -> Result<&std::path::Path, Failure> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_of(bytes: &[u8]) -> Result<&std::path::Path, Failure> {
    std::str::from_utf8(bytes)
        .map(std::path::Path::new)
        .map_err(|e| Error::invalid(format!("path is not valid UTF-8: {e}")).into())
}

/// Free a model from `stk_model_load` (`NULL` is accepted and does nothing).
///
/// # Safety
/// `model` is `NULL` or a pointer `stk_model_load` gave and that was not freed yet; no other
/// thread uses it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn stk_model_free(model: *mut stk_model) -> c_int {
    guard(|| {
        if !model.is_null() {
            // SAFETY: `model` came from Box::into_raw in stk_model_load and is freed once.
            drop(unsafe { Box::from_raw(model) });
        }
        Ok(())
    })
}

/// The width of the model's embeddings, into `*dim`.
///
/// # Safety
/// `model` is `NULL` or a live model; `dim` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn stk_model_dim(model: *const stk_model, dim: *mut usize) -> c_int {
    guard(|| {
        // SAFETY: a non-null `model` is a live model from stk_model_load.
        let model = unsafe { model.as_ref() }.ok_or_else(|| null("model"))?;
        if dim.is_null() {
            return Err(null("dim"));
        }
        // SAFETY: non-null and writable (the caller's promise).
        unsafe { dim.write(model.model.dim()) };
        Ok(())
    })
}

/// The `n` texts of `texts` as UTF-8 strings.
///
/// # Safety
/// `texts` is `NULL` (only with `n == 0`) or points to `n` pointers, each `NULL` or to a
/// NUL-terminated string, valid for `'a`.
unsafe fn read_texts<'a>(texts: *const *const c_char, n: usize) -> Result<Vec<&'a str>, Failure> {
    // SAFETY: `texts` holds `n` pointers (the caller's promise).
    let pointers = unsafe { slice(texts, n, "texts") }?;
    let mut strings = Vec::with_capacity(n);
    for (i, &p) in pointers.iter().enumerate() {
        if p.is_null() {
            return Err(Failure::Null(format!("texts[{i}]")));
        }
        // SAFETY: each non-null entry is a NUL-terminated string (the caller's promise).
        let text = unsafe { CStr::from_ptr(p) }
            .to_str()
            .map_err(|e| Error::invalid(format!("texts[{i}] is not valid UTF-8: {e}")))?;
        strings.push(text);
    }
    Ok(strings)
}

/// The model behind a caller's pointer.
///
/// # Safety
/// `model` is `NULL` or a live model from `stk_model_load`.
unsafe fn model_ref<'a>(model: *const stk_model) -> Result<&'a Model, Failure> {
    // SAFETY: a non-null `model` is a live model from stk_model_load.
    Ok(&unsafe { model.as_ref() }
        .ok_or_else(|| null("model"))?
        .model)
}

/// Encode `n` UTF-8, NUL-terminated `texts` into `out` (`n * dim` floats, row-major), with the
/// folder's default semantics (for the embedded model: model2vec's, normalized). Texts are
/// encoded in parallel; one model may encode from several threads.
///
/// # Safety
/// `model` is a live model; `texts` points to `n` NUL-terminated strings; `out` to `n * dim`
/// writable floats (either may be `NULL` when `n == 0`).
#[no_mangle]
pub unsafe extern "C" fn stk_model_encode(
    model: *const stk_model,
    texts: *const *const c_char,
    n: usize,
    out: *mut f32,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises about `model` and `texts`, passed on.
        let (model, strings) = unsafe { (model_ref(model)?, read_texts(texts, n)?) };
        let len = n
            .checked_mul(model.dim())
            .ok_or_else(|| Error::invalid("n * dim overflows size_t"))?;
        // SAFETY: `out` holds n * dim writable floats (the caller's promise).
        let out = unsafe { slice_mut(out, len, "out") }?;
        host::encode(model, &strings, out).map_err(Failure::from)
    })
}

/// model2vec's `encode_as_sequence`, step one: write the row offsets of the `n` texts into
/// `offsets` (`n + 1` entries: text `i` gives rows `offsets[i]` to `offsets[i + 1]`, so
/// `offsets[n] * dim` floats hold them all). `max_length` is the call's token limit and
/// character cut; `SIZE_MAX` for none (model2vec's default for this call). Only tokenizes.
/// Model2vec semantics only (`STK_ERR_UNSUPPORTED` otherwise).
///
/// # Safety
/// `model` is a live model; `texts` points to `n` NUL-terminated strings (or is `NULL` when
/// `n == 0`); `offsets` to `n + 1` writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn stk_model_sequence_offsets(
    model: *const stk_model,
    texts: *const *const c_char,
    n: usize,
    max_length: usize,
    offsets: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises about `model` and `texts`, passed on.
        let (model, strings) = unsafe { (model_ref(model)?, read_texts(texts, n)?) };
        let len = n
            .checked_add(1)
            .ok_or_else(|| Error::invalid("n + 1 overflows size_t"))?;
        // SAFETY: `offsets` holds n + 1 writable size_t (the caller's promise).
        let offsets = unsafe { slice_mut(offsets, len, "offsets") }?;
        host::sequence_offsets(model, &strings, max_length, offsets).map_err(Failure::from)
    })
}

/// model2vec's `encode_as_sequence`, step two: every text's token rows (each id's mapped,
/// weighted table row, as f32; neither averaged nor normalized), text after text, into `out`:
/// `out_len` must be `offsets[n] * dim` of [`stk_model_sequence_offsets`] with the same
/// arguments. Model2vec semantics only (`STK_ERR_UNSUPPORTED` otherwise).
///
/// # Safety
/// `model` is a live model; `texts` points to `n` NUL-terminated strings; `out` to `out_len`
/// writable floats (either may be `NULL` when its length is 0).
#[no_mangle]
pub unsafe extern "C" fn stk_model_encode_as_sequence(
    model: *const stk_model,
    texts: *const *const c_char,
    n: usize,
    max_length: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises about `model` and `texts`, passed on.
        let (model, strings) = unsafe { (model_ref(model)?, read_texts(texts, n)?) };
        // SAFETY: `out` holds out_len writable floats (the caller's promise).
        let out = unsafe { slice_mut(out, out_len, "out") }?;
        host::encode_as_sequence(model, &strings, max_length, out).map_err(Failure::from)
    })
}

/// The options behind a caller's pointer, with the calibration rows read.
///
/// # Safety
/// `options` is `NULL` or points to a valid `stk_encode_options` whose `calibration` holds
/// `calibration_rows` rows of the truncated width.
unsafe fn read_options(
    model: &Model,
    options: *const types::stk_encode_options,
) -> Result<stk_facade::EncodeOptions, Failure> {
    // SAFETY: a non-null `options` is a valid struct (the caller's promise).
    let options = unsafe { options.as_ref() }.ok_or_else(|| null("options"))?;
    let mut encode = host::encode_options(options)?;
    if !options.calibration.is_null() {
        let width = encode.truncated_dim(model.dim())?;
        let len = options
            .calibration_rows
            .checked_mul(width)
            .ok_or_else(|| Error::invalid("calibration_rows * width overflows size_t"))?;
        // SAFETY: `calibration` holds calibration_rows rows of `width` floats (the caller's
        // promise).
        let rows = unsafe { slice(options.calibration, len, "options->calibration") }?;
        host::calibrate(&mut encode, rows, width)?;
    }
    Ok(encode)
}

/// What `stk_model_encode_with_options` writes per text: `*dtype` (`STK_DTYPE_F32`,
/// `STK_DTYPE_I8` or `STK_DTYPE_U8`) and `*cols` elements of it.
///
/// # Safety
/// `model` is a live model; `options` a valid `stk_encode_options`; `dtype` and `cols` writable.
#[no_mangle]
pub unsafe extern "C" fn stk_encode_output_shape(
    model: *const stk_model,
    options: *const types::stk_encode_options,
    dtype: *mut i32,
    cols: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promise about `model`, passed on.
        let model = unsafe { model_ref(model) }?;
        // SAFETY: the caller's promise about `options`, passed on.
        let encode = unsafe { read_options(model, options) }?;
        let (element, width) = host::output_shape(model, &encode)?;
        // SAFETY: non-null outputs are writable (the caller's promise).
        let (dtype, cols) = unsafe { (dtype.as_mut(), cols.as_mut()) };
        *dtype.ok_or_else(|| null("dtype"))? = element;
        *cols.ok_or_else(|| null("cols"))? = width;
        Ok(())
    })
}

/// Encode `n` texts as `SentenceTransformer.encode(texts, truncate_dim=..., precision=...,
/// normalize_embeddings=...)` does into `out`: `out_bytes` bytes, which must be `n * cols *
/// element size` for what `stk_encode_output_shape` reports (row-major). int8/uint8 ranges come
/// from `options->calibration` when given, else from the embeddings of this call.
///
/// # Safety
/// As `stk_model_encode`; `options` points to a valid `stk_encode_options`; `out` holds
/// `out_bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn stk_model_encode_with_options(
    model: *const stk_model,
    texts: *const *const c_char,
    n: usize,
    options: *const types::stk_encode_options,
    out: *mut c_void,
    out_bytes: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises about `model`, `texts` and `options`, passed on.
        let (model, strings) = unsafe { (model_ref(model)?, read_texts(texts, n)?) };
        // SAFETY: as above.
        let encode = unsafe { read_options(model, options) }?;
        // SAFETY: `out` holds `out_bytes` writable bytes (the caller's promise).
        let out = unsafe { slice_mut(out.cast::<u8>(), out_bytes, "out") }?;
        host::encode_with_options(model, &strings, &encode, out).map_err(Failure::from)
    })
}

/// The modes and the described sizes of `args`.
///
/// # Safety
/// `args` is `NULL` or points to a valid `stk_pool_args` whose `modes` holds `modes_len` values.
unsafe fn read_args<'a>(
    args: *const stk_pool_args,
) -> Result<(&'a stk_pool_args, PoolShapes), Failure> {
    // SAFETY: a non-null `args` is a valid struct (the caller's promise).
    let args = unsafe { args.as_ref() }.ok_or_else(|| null("args"))?;
    if args.tokens.is_null() {
        return Err(null("args->tokens"));
    }
    // SAFETY: `modes` holds `modes_len` values (the caller's promise).
    let modes = unsafe { slice(args.modes, args.modes_len, "args->modes") }?;
    let shapes = host::pool_shapes(args, modes)?;
    Ok((args, shapes))
}

/// Pool host buffers (see `stk_pool_args`) into `out`: `out_len` floats, which must be
/// `batch * modes_len * dim` (`[batch, modes_len * dim]`, the modes side by side, f32 whatever
/// the input dtype). The same checks and results as stk's CPU pooling.
///
/// # Safety
/// `args` points to a valid `stk_pool_args` whose non-`NULL` pointers hold what its sizes say;
/// `out` holds `out_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn stk_pool(
    args: *const stk_pool_args,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promise about `args`.
        let (args, shapes) = unsafe { read_args(args) }?;
        let bytes_of =
            |d: &Option<host::Described>, what| d.as_ref().map(|d| d.bytes(what)).transpose();
        let tokens_len = Some(shapes.tokens.bytes("token_embeddings")?);
        let mask_len = bytes_of(&shapes.mask, "attention_mask")?;
        let cu_len = bytes_of(&shapes.cu_seq_lens, "cu_seq_lens")?;
        let tws_len = (!args.token_weights_sum.is_null()).then_some(args.token_weights_sum_len);
        // SAFETY: each non-null pointer of `args` holds the elements its described shape and
        // dtype give (the caller's promise); `len` is None exactly for the absent ones.
        let buffers = unsafe {
            PoolBuffers {
                tokens: optional(args.tokens.cast::<u8>(), tokens_len, "args->tokens")?
                    .unwrap_or_default(),
                mask: optional(args.mask.cast::<u8>(), mask_len, "args->mask")?,
                cu_seq_lens: optional(args.cu_seq_lens.cast::<u8>(), cu_len, "args->cu_seq_lens")?,
                token_weights_sum: optional(
                    args.token_weights_sum,
                    tws_len,
                    "args->token_weights_sum",
                )?,
            }
        };
        // SAFETY: `out` holds `out_len` writable floats (the caller's promise).
        let out = unsafe { slice_mut(out, out_len, "out") }?;
        host::pool(&shapes, &buffers, out).map_err(Failure::from)
    })
}

/// L2-normalize `rows` rows of `dim` values of `dtype` (`STK_DTYPE_F32/F16/BF16`) into `out`
/// (`out_len == rows * dim` floats), as sentence-transformers' `Normalize` module does.
///
/// # Safety
/// `x` holds `rows * dim` elements of `dtype`; `out` holds `out_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn stk_normalize(
    x: *const c_void,
    dtype: i32,
    rows: usize,
    dim: usize,
    out: *mut f32,
    out_len: usize,
) -> c_int {
    guard(|| {
        if x.is_null() {
            return Err(null("x"));
        }
        let input = host::Described {
            dtype: types::dtype(dtype, "embeddings")?,
            dims: vec![rows, dim],
        };
        // SAFETY: `x` holds rows * dim elements of `dtype` (the caller's promise).
        let bytes = unsafe { slice(x.cast::<u8>(), input.bytes("embeddings")?, "x") }?;
        // SAFETY: `out` holds `out_len` writable floats (the caller's promise).
        let out = unsafe { slice_mut(out, out_len, "out") }?;
        host::normalize(&input, bytes, out).map_err(Failure::from)
    })
}

/// The device of `ordinal`, after the arguments were checked (so that argument errors are
/// reported the same with or without a GPU).
fn device(ordinal: c_int) -> Result<std::sync::Arc<stk_cuda::CudaDevice>, Failure> {
    let ordinal =
        usize::try_from(ordinal).map_err(|_| Error::UnknownDevice(format!("cuda:{ordinal}")))?;
    Ok(stk_cuda::shared_device(ordinal)?)
}

/// The device layout of `args` (its rows read from the mask or `cu_seq_lens` on the device).
fn device_rows(args: &stk_pool_args, shapes: &PoolShapes) -> Result<RawRows, Failure> {
    let tokens = &shapes.tokens.dims;
    match (tokens.len(), &shapes.mask, &shapes.cu_seq_lens) {
        (3, Some(mask), None) => {
            if mask.dims != tokens[..2] {
                let expected = format!(
                    "[{}, {}] (the tokens' batch and seq_len)",
                    tokens[0], tokens[1]
                );
                return Err(Error::shape("attention_mask", expected, &mask.dims).into());
            }
            let mask_bytes = match mask.dtype {
                stk_core::DType::I32 => 4,
                stk_core::DType::I64 => 8,
                other => return Err(Error::dtype("attention_mask", "i32 or i64", other).into()),
            };
            Ok(RawRows::Padded {
                mask: args.mask as u64,
                batch: tokens[0],
                seq_len: tokens[1],
                mask_bytes,
            })
        }
        (3, None, _) => Err(null(
            "args->mask (stk_pool_device needs the attention mask)",
        )),
        (2, None, Some(cu)) => {
            if cu.dtype != stk_core::DType::I32 {
                return Err(Error::dtype("cu_seq_lens", "i32 on the device", cu.dtype).into());
            }
            let batch = cu.dims[0].checked_sub(1).ok_or_else(|| {
                Error::shape("cu_seq_lens", "batch + 1 offsets (at least 1)", &cu.dims)
            })?;
            Ok(RawRows::Varlen {
                cu_seq_lens: args.cu_seq_lens as u64,
                batch,
            })
        }
        (2, _, None) => Err(null("args->cu_seq_lens (a varlen batch needs it)")),
        _ => Err(Error::invalid(
            "stk_pool_args has attention_mask and cu_seq_lens: each names a layout; keep one",
        )
        .into()),
    }
}

/// `stk_pool` on device buffers of CUDA device `device_ordinal`, enqueued on `stream` (a `CUstream`
/// of the device's primary context; `NULL`: the legacy default stream). Nothing is copied,
/// allocated or synchronized, so the call can be captured in a CUDA graph. The padded layout
/// needs the mask (i32 or i64); the varlen layout i32 `cu_seq_lens`. `out` gets `out_len`
/// elements, `batch * modes_len * dim`, of the input dtype (f32 when `token_weights_sum` is
/// given). Returns `STK_ERR_NO_CUDA` without a CUDA driver.
///
/// # Safety
/// Every pointer of `args` and `out` is a device address in that context holding what the
/// sizes say, `out` overlaps no input, and all stay allocated until the launch has run.
#[no_mangle]
pub unsafe extern "C" fn stk_pool_device(
    device_ordinal: c_int,
    args: *const stk_pool_args,
    out: *mut c_void,
    out_len: usize,
    stream: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promise about `args` (a host struct; its buffers are not read).
        let (args, shapes) = unsafe { read_args(args) }?;
        let rows = device_rows(args, &shapes)?;
        let batch = match rows {
            RawRows::Padded { batch, .. } | RawRows::Varlen { batch, .. } => batch,
            RawRows::Spans { batch, .. } => batch,
        };
        if !args.token_weights_sum.is_null() && args.token_weights_sum_len != batch {
            return Err(Error::shape(
                "token_weights_sum",
                format!("[{batch}]"),
                &[args.token_weights_sum_len],
            )
            .into());
        }
        if out.is_null() {
            return Err(null("out"));
        }
        let dims = &shapes.tokens.dims;
        let dim = dims[dims.len() - 1];
        let width = shapes.spec.modes.len().saturating_mul(dim);
        host::check_out_len(batch, width, out_len)?;
        let raw = RawPool {
            tokens: args.tokens as u64,
            dtype: shapes.tokens.dtype,
            token_rows: dims[..dims.len() - 1].iter().product(),
            dim,
            rows,
            spec: &shapes.spec,
            token_weights_sum: (!args.token_weights_sum.is_null())
                .then_some(args.token_weights_sum as u64),
            out: out as u64,
            normalize: false,
        };
        let device = device(device_ordinal)?;
        // SAFETY: the pointers are the caller's device addresses with the sizes `raw` states
        // (the caller's promise, as pool_raw's contract asks), and `stream` is a stream of the
        // device's context.
        unsafe { device.pool_raw(stream as cudarc::driver::sys::CUstream, &raw) }?;
        Ok(())
    })
}

/// `stk_normalize` on device buffers (`x` and `out`: `rows * dim` elements of `dtype`), on
/// CUDA device `device_ordinal` and `stream`, as `stk_pool_device`. Returns `STK_ERR_NO_CUDA` without a
/// CUDA driver.
///
/// # Safety
/// `x` and `out` are device addresses in the device's context of `rows * dim` elements of
/// `dtype`, not overlapping, allocated until the launch has run; `stream` is a stream of that
/// context.
#[no_mangle]
pub unsafe extern "C" fn stk_normalize_device(
    device_ordinal: c_int,
    x: *const c_void,
    dtype: i32,
    rows: usize,
    dim: usize,
    out: *mut c_void,
    stream: *mut c_void,
) -> c_int {
    guard(|| {
        if x.is_null() {
            return Err(null("x"));
        }
        if out.is_null() {
            return Err(null("out"));
        }
        let dtype = types::dtype(dtype, "embeddings")?;
        let device = device(device_ordinal)?;
        // SAFETY: the caller's promise about `x`, `out` and `stream` is normalize_raw's contract.
        unsafe {
            device.normalize_raw(
                stream as cudarc::driver::sys::CUstream,
                x as u64,
                out as u64,
                rows,
                dim,
                dtype,
                NormRule::SENTENCE_TRANSFORMERS,
            )
        }?;
        Ok(())
    })
}
