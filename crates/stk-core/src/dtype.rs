use crate::{Error, Result};
use half::{bf16, f16};
use std::fmt;

/// Element types stk stores. Floating types are computed in f32; integer types are ids,
/// masks, offsets or int8 embedding tables (used as they are, no scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE half float.
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa).
    BF16,
    /// Signed byte (int8 embedding tables).
    I8,
    /// 32-bit signed integer (ids, masks, mappings).
    I32,
    /// 64-bit signed integer (ids, masks, offsets).
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 => 1,
            DType::I64 => 8,
        }
    }
    /// True for F32, F16 and BF16.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
    /// The short name (`f32`, `bf16`, `i64`, ...) used in messages and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }
    /// Parse the names users type (`f32`, `float16`, `bf16`, ...).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "f32" | "float32" => DType::F32,
            "f16" | "float16" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "i8" | "int8" => DType::I8,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown dtype `{s}` (expected f32, f16, bf16, i8, i32 or i64)"
                )))
            }
        })
    }
    pub(crate) fn from_st(d: safetensors::Dtype) -> Option<Self> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I8 => DType::I8,
            S::I32 => DType::I32,
            S::I64 => DType::I64,
            _ => return None,
        })
    }
    pub(crate) fn to_st(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::F32 => S::F32,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::I8 => S::I8,
            DType::I32 => S::I32,
            DType::I64 => S::I64,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Rust type that is the element of a tensor of one [`DType`].
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The [`DType`] of this element type.
    const DTYPE: DType;
    /// Widen to f32 (exact for every type but i32/i64 beyond 2^24).
    fn to_f32(self) -> f32;
    /// Narrow from f32 (round to nearest for f16/bf16; saturating `as` for integers).
    fn from_f32(v: f32) -> Self;
}

macro_rules! element {
    ($t:ty, $d:expr, |$x:ident| $to:expr, |$y:ident| $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            #[inline(always)]
            fn to_f32(self) -> f32 {
                let $x = self;
                $to
            }
            #[inline(always)]
            fn from_f32($y: f32) -> Self {
                $from
            }
        }
    };
}
element!(f32, DType::F32, |x| x, |y| y);
element!(f16, DType::F16, |x| x.to_f32(), |y| f16::from_f32(y));
element!(bf16, DType::BF16, |x| x.to_f32(), |y| bf16::from_f32(y));
element!(i8, DType::I8, |x| x as f32, |y| y as i8);
element!(i32, DType::I32, |x| x as f32, |y| y as i32);
element!(i64, DType::I64, |x| x as f32, |y| y as i64);
