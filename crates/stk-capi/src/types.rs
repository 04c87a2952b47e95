//! The types and constants of `stk.h`. Enumerations are `int32_t` constants rather than C
//! enums, so a value C passes that stk does not know is an error (`STK_ERR_INVALID_ARGUMENT` or
//! `STK_ERR_DTYPE`), never undefined behaviour.

use std::ffi::c_void;

use stk_core::{DType, Error, PoolingMode, Result};

/// Element type: 32-bit float.
pub const STK_DTYPE_F32: i32 = 0;
/// Element type: IEEE 754 half precision.
pub const STK_DTYPE_F16: i32 = 1;
/// Element type: bfloat16.
pub const STK_DTYPE_BF16: i32 = 2;
/// Element type: 32-bit signed integer (masks, `cu_seq_lens`).
pub const STK_DTYPE_I32: i32 = 3;
/// Element type: 64-bit signed integer (masks, `cu_seq_lens`).
pub const STK_DTYPE_I64: i32 = 4;
/// Element type: 8-bit signed integer (int8 and binary encode outputs).
pub const STK_DTYPE_I8: i32 = 5;
/// Element type: 8-bit unsigned integer (uint8 and ubinary encode outputs).
pub const STK_DTYPE_U8: i32 = 6;

/// Pooling mode `cls`: the first (non-prompt) token.
pub const STK_POOL_CLS: i32 = 0;
/// Pooling mode `max`: elementwise maximum over the tokens.
pub const STK_POOL_MAX: i32 = 1;
/// Pooling mode `mean`: mean of the tokens.
pub const STK_POOL_MEAN: i32 = 2;
/// Pooling mode `mean_sqrt_len_tokens`: sum divided by the square root of the token count.
pub const STK_POOL_MEAN_SQRT_LEN_TOKENS: i32 = 3;
/// Pooling mode `weightedmean`: position-weighted mean (weights 1..T).
pub const STK_POOL_WEIGHTEDMEAN: i32 = 4;
/// Pooling mode `lasttoken`: the last token.
pub const STK_POOL_LASTTOKEN: i32 = 5;

/// No prompt exclusion (`stk_pool_args.prompt_length`).
pub const STK_NO_PROMPT: i64 = -1;

/// A loaded model (opaque): `stk_model_load` creates it, `stk_model_free` frees it. One model
/// may encode from several threads at once.
pub struct stk_model {
    pub(crate) model: stk_facade::Model,
}

// What the header promises about threads: a model may be shared by threads and freed by another.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<stk_model>();
};

/// A pooling, as sentence-transformers' `Pooling` module computes it. The layout follows from
/// `tokens_rank` and the buffer given beside the tokens:
///
/// * padded: `tokens_rank == 3`, tokens `[batch, seq_len, dim]`, optional `mask`
///   `[mask_dims[0], mask_dims[1]]` of 0/1 values (`NULL`: every token counts);
/// * varlen: `tokens_rank == 2`, tokens `[num_tokens, dim]`, `cu_seq_lens` of `batch + 1`
///   increasing offsets from 0 to `num_tokens` (flash-attention's layout).
///
/// For `stk_pool` every pointer is a host pointer; for `stk_pool_device` a device address
/// (in the context of the device's primary context).
#[repr(C)]
pub struct stk_pool_args {
    /// Token embeddings, `tokens_dims[0..tokens_rank]` elements of `dtype`.
    pub tokens: *const c_void,
    /// `STK_DTYPE_F32`, `STK_DTYPE_F16` or `STK_DTYPE_BF16`.
    pub dtype: i32,
    /// 3 (padded) or 2 (varlen).
    pub tokens_rank: usize,
    /// `[batch, seq_len, dim]` (padded) or `[num_tokens, dim, unused]` (varlen).
    pub tokens_dims: [usize; 3],
    /// Padded only: the attention mask, or `NULL` for all ones.
    pub mask: *const c_void,
    /// `STK_DTYPE_I32` or `STK_DTYPE_I64`.
    pub mask_dtype: i32,
    /// `[batch, seq_len]` of the mask (checked against the tokens).
    pub mask_dims: [usize; 2],
    /// Varlen only: `cu_seq_lens_len` sequence offsets, or `NULL`.
    pub cu_seq_lens: *const c_void,
    /// `STK_DTYPE_I32` or `STK_DTYPE_I64` (`stk_pool_device`: `STK_DTYPE_I32`).
    pub cu_seq_lens_dtype: i32,
    /// `batch + 1`.
    pub cu_seq_lens_len: usize,
    /// `modes_len` `STK_POOL_*` values; the output concatenates them in this order.
    pub modes: *const i32,
    pub modes_len: usize,
    /// Prompt tokens excluded at the start of each sequence, or `STK_NO_PROMPT`.
    pub prompt_length: i64,
    /// Optional (`NULL`): `token_weights_sum_len` f32 values replacing the token counts as the
    /// divisors of `mean` (sentence-transformers' WordWeights feature).
    pub token_weights_sum: *const f32,
    pub token_weights_sum_len: usize,
}

/// The stk dtype of a `STK_DTYPE_*` value.
pub(crate) fn dtype(value: i32, what: &str) -> Result<DType> {
    Ok(match value {
        STK_DTYPE_F32 => DType::F32,
        STK_DTYPE_F16 => DType::F16,
        STK_DTYPE_BF16 => DType::BF16,
        STK_DTYPE_I32 => DType::I32,
        STK_DTYPE_I64 => DType::I64,
        other => {
            return Err(Error::dtype(
                what,
                "a STK_DTYPE_* value (0 to 4)",
                format!("unknown dtype value {other}"),
            ))
        }
    })
}

/// The pooling mode of a `STK_POOL_*` value.
pub(crate) fn pooling_mode(value: i32) -> Result<PoolingMode> {
    Ok(match value {
        STK_POOL_CLS => PoolingMode::Cls,
        STK_POOL_MAX => PoolingMode::Max,
        STK_POOL_MEAN => PoolingMode::Mean,
        STK_POOL_MEAN_SQRT_LEN_TOKENS => PoolingMode::MeanSqrtLenTokens,
        STK_POOL_WEIGHTEDMEAN => PoolingMode::WeightedMean,
        STK_POOL_LASTTOKEN => PoolingMode::LastToken,
        other => {
            return Err(Error::UnknownPoolingMode(format!(
                "{other} (a STK_POOL_* value, 0 to 5)"
            )))
        }
    })
}

/// The prompt length of `stk_pool_args.prompt_length`.
pub(crate) fn prompt_length(value: i64) -> Result<Option<usize>> {
    match value {
        STK_NO_PROMPT => Ok(None),
        n => usize::try_from(n).map(Some).map_err(|_| {
            Error::invalid(format!(
                "prompt_length {n}: expected a count of tokens, or STK_NO_PROMPT (-1)"
            ))
        }),
    }
}

/// Output precision `float32` (`SentenceTransformer.encode(precision=...)`): f32 values.
pub const STK_PRECISION_FLOAT32: i32 = 0;
/// Output precision `int8`: one int8 per dimension, ranges from min/max (see `stk_encode_options`).
pub const STK_PRECISION_INT8: i32 = 1;
/// Output precision `uint8`: one uint8 per dimension, ranges as for int8.
pub const STK_PRECISION_UINT8: i32 = 2;
/// Output precision `binary`: signs packed 8 to an int8 (`ceil(width / 8)` per row), minus 128.
pub const STK_PRECISION_BINARY: i32 = 3;
/// Output precision `ubinary`: signs packed 8 to a uint8 (`ceil(width / 8)` per row).
pub const STK_PRECISION_UBINARY: i32 = 4;

/// `SentenceTransformer.encode`'s output options, applied in its order: the model's modules
/// (its own normalization included), then `truncate_dim`, then `normalize_embeddings`, then
/// `precision` with sentence-transformers' `quantize_embeddings` rules.
#[repr(C)]
pub struct stk_encode_options {
    /// Keep the first `truncate_dim` dimensions (Matryoshka); 0 keeps them all.
    pub truncate_dim: usize,
    /// Non-zero: L2-normalize each row after truncation.
    pub normalize_embeddings: i32,
    /// A `STK_PRECISION_*` value.
    pub precision: i32,
    /// int8/uint8 only, optional: `calibration_rows` rows of the truncated width whose
    /// per-dimension min/max set the ranges. `NULL`: the ranges come from the embeddings of
    /// this call (then it needs at least two texts), as sentence-transformers does.
    pub calibration: *const f32,
    /// Rows of `calibration`.
    pub calibration_rows: usize,
}

/// The precision of a `STK_PRECISION_*` value.
pub(crate) fn precision(value: i32) -> Result<stk_facade::Precision> {
    use stk_facade::Precision;
    Ok(match value {
        STK_PRECISION_FLOAT32 => Precision::Float32,
        STK_PRECISION_INT8 => Precision::Int8,
        STK_PRECISION_UINT8 => Precision::Uint8,
        STK_PRECISION_BINARY => Precision::Binary,
        STK_PRECISION_UBINARY => Precision::Ubinary,
        other => {
            return Err(Error::invalid(format!(
                "precision {other}: expected a STK_PRECISION_* value (0 to 4)"
            )))
        }
    })
}
