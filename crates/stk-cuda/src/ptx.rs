//! The kernels' PTX (built by `cargo xtask ptx` from `kernels/*.cu`, committed under
//! `kernels/ptx/`) embedded at compile time, and the names of their entry points.
//!
//! Every kernel name the launchers use is spelled once, in the `match` of its family below;
//! [`all_kernels`] lists them so a test can check each one is an entry of its PTX.

use stk_core::{DType, Error, Result};

/// One `kernels/<name>.cu` file: its PTX text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub ptx: &'static str,
}

macro_rules! family {
    ($name:literal) => {
        Family {
            name: $name,
            ptx: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../kernels/ptx/",
                $name,
                ".ptx"
            )),
        }
    };
}

pub const POOL: Family = family!("pool");
pub const EMBEDDING_BAG: Family = family!("embedding_bag");
pub const NORMALIZE: Family = family!("normalize");
pub const LAYER_POOL: Family = family!("layer_pool");

/// Every family, in the order the device loads them.
pub const FAMILIES: [Family; 4] = [POOL, EMBEDDING_BAG, NORMALIZE, LAYER_POOL];

/// Elements per 16-byte pack of a dtype: the `N` of the `_vN` kernels, which the launchers
/// select when a row's length is a multiple of it.
pub fn pack_width(dtype: DType) -> usize {
    16 / dtype.size_in_bytes()
}

fn unsupported(what: &str, dtype: DType, expected: &str) -> Error {
    Error::dtype(format!("{what} on cuda"), expected, dtype)
}

/// Pooling kernel: `full` keeps weighted sums and maxima besides the plain sum; `packed`
/// selects the 16-byte loads (the row length is a multiple of [`pack_width`]).
pub fn pool_kernel(dtype: DType, full: bool, packed: bool) -> Result<&'static str> {
    use DType::*;
    Ok(match (full, dtype, packed) {
        (false, F32, true) => "pool_sum_f32_v4",
        (false, F32, false) => "pool_sum_f32_v1",
        (false, F16, true) => "pool_sum_f16_v8",
        (false, F16, false) => "pool_sum_f16_v1",
        (false, BF16, true) => "pool_sum_bf16_v8",
        (false, BF16, false) => "pool_sum_bf16_v1",
        (true, F32, true) => "pool_full_f32_v4",
        (true, F32, false) => "pool_full_f32_v1",
        (true, F16, true) => "pool_full_f16_v8",
        (true, F16, false) => "pool_full_f16_v1",
        (true, BF16, true) => "pool_full_bf16_v8",
        (true, BF16, false) => "pool_full_bf16_v1",
        (_, d, _) => return Err(unsupported("pooling", d, "f32, f16 or bf16")),
    })
}

pub fn embedding_bag_kernel(dtype: DType, packed: bool) -> Result<&'static str> {
    use DType::*;
    Ok(match (dtype, packed) {
        (F32, true) => "embedding_bag_f32_v4",
        (F32, false) => "embedding_bag_f32_v1",
        (F16, true) => "embedding_bag_f16_v8",
        (F16, false) => "embedding_bag_f16_v1",
        (BF16, true) => "embedding_bag_bf16_v8",
        (BF16, false) => "embedding_bag_bf16_v1",
        (I8, true) => "embedding_bag_i8_v16",
        (I8, false) => "embedding_bag_i8_v1",
        (d, _) => return Err(unsupported("embedding table", d, "f32, f16, bf16 or i8")),
    })
}

pub fn normalize_kernel(dtype: DType, packed: bool) -> Result<&'static str> {
    use DType::*;
    Ok(match (dtype, packed) {
        (F32, true) => "normalize_f32_v4",
        (F32, false) => "normalize_f32_v1",
        (F16, true) => "normalize_f16_v8",
        (F16, false) => "normalize_f16_v1",
        (BF16, true) => "normalize_bf16_v8",
        (BF16, false) => "normalize_bf16_v1",
        (d, _) => return Err(unsupported("normalize", d, "f32, f16 or bf16")),
    })
}

pub fn layer_pool_kernel(dtype: DType, packed: bool) -> Result<&'static str> {
    use DType::*;
    Ok(match (dtype, packed) {
        (F32, true) => "layer_pool_f32_v4",
        (F32, false) => "layer_pool_f32_v1",
        (F16, true) => "layer_pool_f16_v8",
        (F16, false) => "layer_pool_f16_v1",
        (BF16, true) => "layer_pool_bf16_v8",
        (BF16, false) => "layer_pool_bf16_v1",
        (d, _) => return Err(unsupported("weighted layer pooling", d, "f32, f16 or bf16")),
    })
}

/// Every kernel a launcher can select, with its family.
pub fn all_kernels() -> Vec<(Family, &'static str)> {
    const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
    let mut out = Vec::new();
    for packed in [true, false] {
        for d in FLOATS {
            for full in [false, true] {
                out.extend(pool_kernel(d, full, packed).map(|k| (POOL, k)));
            }
            out.extend(normalize_kernel(d, packed).map(|k| (NORMALIZE, k)));
            out.extend(layer_pool_kernel(d, packed).map(|k| (LAYER_POOL, k)));
        }
        for d in [DType::F32, DType::F16, DType::BF16, DType::I8] {
            out.extend(embedding_bag_kernel(d, packed).map(|k| (EMBEDDING_BAG, k)));
        }
    }
    out
}

/// The `.entry` names a PTX text defines, in order.
pub fn ptx_entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix(".visible .entry ")?;
            Some(rest.split('(').next().unwrap_or(rest).trim())
        })
        .collect()
}

/// The kind of one kernel parameter as PTX declares it: pointers, 64-bit integers (`.u64`),
/// 32-bit integers (`.u32`), floats (`.f32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    U64,
    U32,
    F32,
}

/// The parameter kinds of entry `name` in `ptx`, in order.
pub fn entry_params(ptx: &str, name: &str) -> Result<Vec<ParamKind>> {
    let bad = |why: String| Error::Cuda(format!("embedded PTX, kernel {name}: {why}"));
    let header = format!(".visible .entry {name}(");
    let start = ptx
        .find(&header)
        .ok_or_else(|| bad("no such entry".into()))?;
    let body = &ptx[start + header.len()..];
    let end = body
        .find(')')
        .ok_or_else(|| bad("unterminated parameter list".into()))?;
    body[..end]
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let ty = p
                .strip_prefix(".param")
                .map(str::trim_start)
                .and_then(|rest| rest.split_whitespace().next())
                .ok_or_else(|| bad(format!("unreadable parameter `{p}`")))?;
            match ty {
                ".u64" | ".s64" | ".b64" => Ok(ParamKind::U64),
                ".u32" | ".s32" | ".b32" => Ok(ParamKind::U32),
                ".f32" => Ok(ParamKind::F32),
                other => Err(bad(format!(
                    "parameter type {other} has no launcher counterpart"
                ))),
            }
        })
        .collect()
}

/// The `.maxntid` (largest block the kernel was compiled for, from `__launch_bounds__`) of
/// entry `name`, if the PTX declares one.
pub fn entry_max_threads(ptx: &str, name: &str) -> Option<u32> {
    let header = format!(".visible .entry {name}(");
    let body = &ptx[ptx.find(&header)? + header.len()..];
    let body = &body[..body.find('{')?];
    let rest = body.split(".maxntid").nth(1)?;
    rest.split(',').next()?.trim().parse().ok()
}
