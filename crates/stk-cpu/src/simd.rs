//! Explicit SIMD for the embedding bag's row sums, chosen at run time; the only module of
//! stk-cpu allowed to write `unsafe`.
//!
//! On x86_64 with AVX2 and F16C (checked once, with `is_x86_feature_detected!`), table rows
//! are added 8 columns per instruction: f32 rows as they are, f16 rows widened with `vcvtph2ps`,
//! bf16 rows with `vpmovzxwd` + a 16-bit shift (exact), int8 rows with `vpmovsxbd` + `vcvtdq2ps`. Without those features (and on other targets,
//! where aarch64 still gets NEON through `half`'s slice conversion) the portable loops of
//! `embedding_bag.rs` run. Both compute, per column, `((0 + w0·x0) + w1·x1) + ...` in id
//! order with every product rounded to f32 (Rust never fuses a multiply and an add), then
//! divide by the count, so they give the same bits.
//!
//! The `unsafe` here is the calling of `#[target_feature]` functions, which is sound only on a
//! CPU that has the features: the one entry into them, [`mean_rows`], sits behind
//! [`Isa::detect`]'s answer. (They are `unsafe fn` because the declared MSRV, 1.85, predates
//! safe `#[target_feature]` functions; their only precondition is that CPU check.) Vector
//! loads and stores go through `bytemuck` (no raw pointers); `_mm_prefetch` (SSE, which every
//! x86_64 CPU has) never faults.
#![allow(unsafe_code)]

use half::{bf16, f16};

/// The instruction set the row sums use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain Rust loops (auto-vectorized for the build's baseline target).
    Portable,
    /// x86_64 AVX2 + F16C.
    Avx2F16c,
}

impl Isa {
    /// The best instruction set this CPU has (the detection is cached by std).
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2F16c;
            }
        }
        Isa::Portable
    }
}

/// Table element types, widened to f32 exactly (int8 values are used as they are).
pub(crate) trait Element: bytemuck::Pod {
    /// Which vector widening [`mean_rows`] uses.
    const KIND: Kind;
    fn widen(self) -> f32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    F32,
    F16,
    BF16,
    I8,
}

impl Element for f32 {
    const KIND: Kind = Kind::F32;
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

impl Element for f16 {
    const KIND: Kind = Kind::F16;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Element for bf16 {
    const KIND: Kind = Kind::BF16;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Element for i8 {
    const KIND: Kind = Kind::I8;
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from(self)
    }
}

/// Ask the cache hierarchy for the first line of `row` (a hint: it has no effect on results).
/// Only the first: the hardware fetches the lines that follow once a row is being read, and
/// asking for every line of a bag's rows at once filled the miss queue and stalled (one
/// thread, potion-base-8M f32: the first line only took 5-8% less time than every line, and
/// 3% less than none).
#[inline(always)]
pub(crate) fn prefetch<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of every x86_64 CPU, and a prefetch never dereferences its
        // address (any pointer value is allowed; this one is the row's start).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `out = (Σ weight(id) · row(id)) / ids.len()` over `ids` (not empty), summed in order from
/// zero, with the `Avx2F16c` kernels; `false` (and `out` untouched) when `isa` is `Portable`,
/// so the caller runs its portable loop. Every row must be `out.len()` long. `WEIGHTED =
/// false` skips the products (all weights 1).
#[inline(always)]
pub(crate) fn mean_rows<'t, T: Element, const WEIGHTED: bool>(
    isa: Isa,
    out: &mut [f32],
    ids: &[u32],
    row: impl Fn(u32) -> &'t [T],
    weight: impl Fn(u32) -> f32,
) -> bool {
    match isa {
        Isa::Portable => false,
        Isa::Avx2F16c => {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2F16c` is only returned by `Isa::detect` after the CPU reported
            // AVX2 and F16C, the features `avx2::mean_rows` is compiled for.
            unsafe {
                avx2::mean_rows::<T, WEIGHTED>(out, ids, row, weight)
            };
            cfg!(target_arch = "x86_64")
        }
    }
}

/// Per lane `k` of 8, `Σ x[8i + k]²` in f64 over the whole chunks of 8 of `v`, in order, with
/// the `Avx2F16c` kernels; `None` when `isa` is `Portable` (the caller's portable loop gives the
/// same bits: each product and sum is rounded to f64 the same way).
#[inline]
pub(crate) fn squares_in_f64_lanes(isa: Isa, v: &[f32]) -> Option<[f64; 8]> {
    match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2F16c` comes from `Isa::detect` after the CPU reported AVX2 and F16C.
        Isa::Avx2F16c => Some(unsafe { avx2::squares_in_f64_lanes(v) }),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2F16c => None,
    }
}

/// `x /= d` for every `x` of `v` with the `Avx2F16c` kernels; `false` (and `v` untouched) when
/// `isa` is `Portable`. Division is exact IEEE arithmetic, so any width gives the same bits.
#[inline]
pub(crate) fn divide_all(isa: Isa, v: &mut [f32], d: f32) -> bool {
    match isa {
        Isa::Portable => false,
        Isa::Avx2F16c => {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2F16c` comes from `Isa::detect` after the CPU reported AVX2 and
            // F16C.
            unsafe {
                avx2::divide_all(v, d)
            };
            cfg!(target_arch = "x86_64")
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Element, Kind};

    /// Columns per vector.
    const LANES: usize = 8;

    /// 8 columns of `row` from `j`, widened to f32.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn widen8<T: Element>(row: &[T], j: usize) -> __m256 {
        let bytes: &[u8] = bytemuck::cast_slice(&row[j..j + LANES]);
        match T::KIND {
            Kind::F32 => bytemuck::pod_read_unaligned::<__m256>(bytes),
            Kind::F16 => _mm256_cvtph_ps(bytemuck::pod_read_unaligned::<__m128i>(bytes)),
            // A bf16 is the top half of the f32 with the same value: zero-extend, shift up.
            Kind::BF16 => {
                let wide = _mm256_cvtepu16_epi32(bytemuck::pod_read_unaligned::<__m128i>(bytes));
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide))
            }
            Kind::I8 => {
                let low = i64::from_le_bytes(bytemuck::pod_read_unaligned(bytes));
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(low)))
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn store(acc: &mut [f32], j: usize, v: __m256) {
        let out: &mut [f32; LANES] = (&mut acc[j..j + LANES]).try_into().unwrap_or_else(|_| {
            unreachable!("a slice of LANES values converts to an array of LANES values")
        });
        *out = bytemuck::cast(v);
    }

    /// `x`, scaled by `w` when `WEIGHTED` (the product rounded to f32, as in the scalar loop).
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn scaled<const WEIGHTED: bool>(x: __m256, w: __m256) -> __m256 {
        if WEIGHTED {
            _mm256_mul_ps(x, w)
        } else {
            x
        }
    }

    /// Vectors of columns summed in registers at a time (8 of the 16 AVX registers).
    const BLOCK: usize = 8;

    /// Column blocks of [`BLOCK`] vectors (64 columns): each block's sums stay in registers
    /// while every row of the bag is added to it in id order, and are divided as they are
    /// stored, so `out` is written once; then the vectors that do not fill a block one at a
    /// time, and the columns that do not fill a vector in the scalar loop's order. Every column
    /// sees the same additions in the same order as the portable loops.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn mean_rows<'t, T: Element, const WEIGHTED: bool>(
        out: &mut [f32],
        ids: &[u32],
        row: impl Fn(u32) -> &'t [T],
        weight: impl Fn(u32) -> f32,
    ) {
        let n = ids.len() as f32;
        let vectors = out.len() / LANES;
        let blocked = vectors / BLOCK * BLOCK;
        for start in (0..blocked).step_by(BLOCK) {
            mean_block::<T, WEIGHTED, BLOCK>(out, start * LANES, ids, &row, &weight);
        }
        for v in blocked..vectors {
            mean_block::<T, WEIGHTED, 1>(out, v * LANES, ids, &row, &weight);
        }
        let tail = vectors * LANES;
        out[tail..].fill(0.0);
        for &id in ids {
            let (r, w) = (row(id), weight(id));
            for (a, &x) in out[tail..].iter_mut().zip(&r[tail..]) {
                let x = x.widen();
                *a += if WEIGHTED { x * w } else { x };
            }
        }
        out[tail..].iter_mut().for_each(|v| *v /= n);
    }

    /// `out[j0 .. j0 + N·8] = (Σ w·row) / ids.len()` over `ids` in order, the sums in `N`
    /// registers.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn mean_block<'t, T: Element, const WEIGHTED: bool, const N: usize>(
        out: &mut [f32],
        j0: usize,
        ids: &[u32],
        row: &impl Fn(u32) -> &'t [T],
        weight: &impl Fn(u32) -> f32,
    ) {
        let mut sums = [_mm256_setzero_ps(); N];
        for &id in ids {
            let (r, w) = (row(id), _mm256_set1_ps(weight(id)));
            for (k, s) in sums.iter_mut().enumerate() {
                *s = _mm256_add_ps(*s, scaled::<WEIGHTED>(widen8(r, j0 + k * LANES), w));
            }
        }
        let count = _mm256_set1_ps(ids.len() as f32);
        for (k, s) in sums.iter().enumerate() {
            store(out, j0 + k * LANES, _mm256_div_ps(*s, count));
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn squares_in_f64_lanes(v: &[f32]) -> [f64; 8] {
        let (mut low, mut high) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for c in v.chunks_exact(LANES) {
            let x: __m256 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(c));
            let x_low = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
            let x_high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x));
            low = _mm256_add_pd(low, _mm256_mul_pd(x_low, x_low));
            high = _mm256_add_pd(high, _mm256_mul_pd(x_high, x_high));
        }
        let [a, b, c, d]: [f64; 4] = bytemuck::cast(low);
        let [e, f, g, h]: [f64; 4] = bytemuck::cast(high);
        [a, b, c, d, e, f, g, h]
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn divide_all(v: &mut [f32], d: f32) {
        let dv = _mm256_set1_ps(d);
        let mut chunks = v.chunks_exact_mut(LANES);
        for c in &mut chunks {
            let x: __m256 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(c));
            let out: [f32; LANES] = bytemuck::cast(_mm256_div_ps(x, dv));
            c.copy_from_slice(&out);
        }
        chunks.into_remainder().iter_mut().for_each(|x| *x /= d);
    }
}
