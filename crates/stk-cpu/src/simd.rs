//! Explicit SIMD for the embedding bag's row sums, chosen at run time; the only module of
//! stk-cpu allowed to write `unsafe`.
//!
//! On x86_64 with AVX2 and F16C (checked once, with `is_x86_feature_detected!`), table rows
//! are added 8 columns per instruction: f32 rows as they are, f16 rows widened with `vcvtph2ps`,
//! int8 rows with `vpmovsxbd` + `vcvtdq2ps`. Without those features (and on other targets,
//! where aarch64 still gets NEON through `half`'s slice conversion) the portable loops of
//! `embedding_bag.rs` run. Both compute, per column, `((acc + w0·x0) + w1·x1) + ...` in id
//! order with every product rounded to f32 (Rust never fuses a multiply and an add), so they
//! give the same bits.
//!
//! The `unsafe` here is the calling of `#[target_feature]` functions, which is sound only on a
//! CPU that has the features: the one entry into them, [`sum_rows`], sits behind
//! [`Isa::detect`]'s answer. (They are `unsafe fn` because the declared MSRV, 1.85, predates
//! safe `#[target_feature]` functions; their only precondition is that CPU check.) Vector
//! loads and stores go through `bytemuck` (no raw pointers); `_mm_prefetch` (SSE, which every
//! x86_64 CPU has) never faults.
#![allow(unsafe_code)]

use half::f16;

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
    /// Which vector widening [`sum_rows`] uses.
    const KIND: Kind;
    fn widen(self) -> f32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    F32,
    F16,
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

impl Element for i8 {
    const KIND: Kind = Kind::I8;
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from(self)
    }
}

/// Ask the cache hierarchy for every line of `row` (a hint: it has no effect on results).
#[inline(always)]
pub(crate) fn prefetch<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(row);
        let start = row.as_ptr().cast::<i8>();
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: SSE is part of every x86_64 CPU, and a prefetch never dereferences its
            // address (any pointer value is allowed; this one stays inside `row`).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `acc += Σ weight(id) · row(id)` over `ids` in order, with the `Avx2F16c` kernels; `false`
/// (and `acc` untouched) when `isa` is `Portable`, so the caller runs its portable loop.
/// Every row must be `acc.len()` long. `WEIGHTED = false` skips the products (all weights 1).
#[inline(always)]
pub(crate) fn sum_rows<'t, T: Element, const WEIGHTED: bool>(
    isa: Isa,
    acc: &mut [f32],
    ids: &[u32],
    row: impl Fn(u32) -> &'t [T],
    weight: impl Fn(u32) -> f32,
) -> bool {
    match isa {
        Isa::Portable => false,
        Isa::Avx2F16c => {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2F16c` is only returned by `Isa::detect` after the CPU reported
            // AVX2 and F16C, the features `avx2::sum_rows` is compiled for.
            unsafe {
                avx2::sum_rows::<T, WEIGHTED>(acc, ids, row, weight)
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
            Kind::I8 => {
                let low = i64::from_le_bytes(bytemuck::pod_read_unaligned(bytes));
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(low)))
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn load(acc: &[f32], j: usize) -> __m256 {
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&acc[j..j + LANES]))
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

    /// Four rows per pass over `acc`, one vector of 8 columns at a time, then the columns that
    /// do not fill a vector and the ids that do not fill a group of four one by one, each in
    /// the scalar loop's order.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn sum_rows<'t, T: Element, const WEIGHTED: bool>(
        acc: &mut [f32],
        ids: &[u32],
        row: impl Fn(u32) -> &'t [T],
        weight: impl Fn(u32) -> f32,
    ) {
        let d = acc.len();
        let vectors = d / LANES * LANES;
        let mut quads = ids.chunks_exact(4);
        for q in &mut quads {
            let r = [row(q[0]), row(q[1]), row(q[2]), row(q[3])];
            let w = [weight(q[0]), weight(q[1]), weight(q[2]), weight(q[3])];
            let wv = [
                _mm256_set1_ps(w[0]),
                _mm256_set1_ps(w[1]),
                _mm256_set1_ps(w[2]),
                _mm256_set1_ps(w[3]),
            ];
            for j in (0..vectors).step_by(LANES) {
                let mut a = load(acc, j);
                for (rk, &wk) in r.iter().zip(&wv) {
                    a = _mm256_add_ps(a, scaled::<WEIGHTED>(widen8(rk, j), wk));
                }
                store(acc, j, a);
            }
            for (j, a) in acc.iter_mut().enumerate().skip(vectors) {
                for (rk, &wk) in r.iter().zip(&w) {
                    let x = rk[j].widen();
                    *a += if WEIGHTED { x * wk } else { x };
                }
            }
        }
        for &id in quads.remainder() {
            let (r, w) = (row(id), weight(id));
            let wv = _mm256_set1_ps(w);
            for j in (0..vectors).step_by(LANES) {
                let a = _mm256_add_ps(load(acc, j), scaled::<WEIGHTED>(widen8(r, j), wv));
                store(acc, j, a);
            }
            for (a, &x) in acc[vectors..].iter_mut().zip(&r[vectors..]) {
                let x = x.widen();
                *a += if WEIGHTED { x * w } else { x };
            }
        }
    }
}
