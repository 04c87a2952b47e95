// Device helpers shared by the stk kernels: element widening/narrowing and 16-byte packs.
//
// Every kernel reads its input as "packs" of V consecutive elements. A pack is either one
// element (V == 1, any alignment) or exactly 16 bytes (one 128-bit load). The host picks the
// 16-byte kernels only when the row length is a multiple of V, so that every pack starts on a
// 16-byte boundary of a buffer that cudarc allocated (256-byte aligned).
#pragma once

#ifdef STK_KERNEL_SIM
// Compiled by g++ to run on the CPU (cargo xtask kernel-sim), see sim/cuda_sim.h.
#include "sim/cuda_sim.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
// NVRTC (what `cargo xtask ptx` compiles with) has no C library headers.
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
// Registers a kernel with the CPU simulator; nothing on the GPU.
#define SIM_REGISTER(NAME)
// The block's dynamic shared memory (sized by the launch).
#define DYNAMIC_SHARED(T, NAME) extern __shared__ T NAME[]
#endif

typedef __half f16;
typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(f16 v) { return __half2float(v); }
__device__ __forceinline__ float widen(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float widen(int8_t v) { return (float)v; }

// Round to nearest even, as the host's `half` crate does, so CPU and GPU round alike.
template <typename T> __device__ __forceinline__ T narrow(float v);
template <> __device__ __forceinline__ float narrow<float>(float v) { return v; }
template <> __device__ __forceinline__ f16 narrow<f16>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ bf16 narrow<bf16>(float v) { return __float2bfloat16_rn(v); }

// Raw storage of a pack: the element itself, or four 32-bit words.
template <typename T, int V> struct PackRaw { typedef uint4 type; };
template <typename T> struct PackRaw<T, 1> { typedef T type; };

__device__ __forceinline__ uint32_t word_of(const uint4& r, int k) {
    return k == 0 ? r.x : k == 1 ? r.y : k == 2 ? r.z : r.w;
}

// Element i of a 16-byte pack, widened to f32. `i` is a compile-time constant after unrolling,
// so the selects fold away and the pack stays in registers.
template <typename T> __device__ __forceinline__ float unpack16(const uint4& r, int i);
template <> __device__ __forceinline__ float unpack16<float>(const uint4& r, int i) {
    return __uint_as_float(word_of(r, i));
}
template <> __device__ __forceinline__ float unpack16<f16>(const uint4& r, int i) {
    const uint32_t w = word_of(r, i >> 1);
    return __half2float(__ushort_as_half((unsigned short)((i & 1) ? (w >> 16) : (w & 0xffffu))));
}
template <> __device__ __forceinline__ float unpack16<bf16>(const uint4& r, int i) {
    // bf16 -> f32 is exact: the bf16 bits are the top half of the f32 bits.
    const uint32_t w = word_of(r, i >> 1);
    return __uint_as_float((i & 1) ? (w & 0xffff0000u) : (w << 16));
}
template <> __device__ __forceinline__ float unpack16<int8_t>(const uint4& r, int i) {
    const uint32_t w = word_of(r, i >> 2);
    return (float)((int32_t)(w << (24 - 8 * (i & 3))) >> 24);
}

// Load the pack starting at element `p` through the read-only data cache.
template <typename T, int V>
__device__ __forceinline__ typename PackRaw<T, V>::type load_pack(const T* p) {
    if constexpr (V == 1) {
        return __ldg(p);
    } else {
        static_assert(sizeof(T) * V == 16, "a pack is one element or 16 bytes");
        return __ldg(reinterpret_cast<const uint4*>(p));
    }
}

// Element i of a loaded pack, widened to f32.
template <typename T, int V>
__device__ __forceinline__ float pack_get(const typename PackRaw<T, V>::type& raw, int i) {
    if constexpr (V == 1) {
        return widen(raw);
    } else {
        return unpack16<T>(raw, i);
    }
}

// The bits of one element, in the low bits of a word.
__device__ __forceinline__ uint32_t bits_of(float v) { return __float_as_uint(v); }
__device__ __forceinline__ uint32_t bits_of(f16 v) { return __half_as_ushort(v); }
__device__ __forceinline__ uint32_t bits_of(bf16 v) { return __bfloat16_as_ushort(v); }

// Store V f32 values at p as elements of T (rounded by narrow<T>): one element when V == 1,
// else whole 16-byte stores (V * sizeof(T) is a multiple of 16 and p is 16-byte aligned: the
// host picks the V > 1 kernels only for aligned buffers and rows a multiple of V long).
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const float (&v)[V]) {
    if constexpr (V == 1) {
        *p = narrow<T>(v[0]);
    } else {
        constexpr int per_word = (int)(4 / sizeof(T));  // elements per 32-bit word: 1 or 2
        constexpr int words = V / per_word;
        static_assert(words % 4 == 0, "whole 16-byte stores");
        #pragma unroll
        for (int q = 0; q < words / 4; ++q) {
            uint32_t w[4];
            #pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int e = (4 * q + k) * per_word;
                w[k] = bits_of(narrow<T>(v[e]));
                if constexpr (per_word == 2) w[k] |= bits_of(narrow<T>(v[e + 1])) << 16;
            }
            reinterpret_cast<uint4*>(p)[q] = uint4{w[0], w[1], w[2], w[3]};
        }
    }
}

// Load V elements of T at p (16-byte aligned when V > 1), widened to f32, 16 bytes at a time,
// through the coherent data path: for a buffer the kernel itself wrote (load_pack reads through
// the read-only cache, which may not see those writes).
template <typename T, int V>
__device__ __forceinline__ void load_written(const T* p, float (&v)[V]) {
    if constexpr (V == 1) {
        v[0] = widen(*p);
    } else {
        constexpr int per_load = (int)(16 / sizeof(T));
        static_assert(V % per_load == 0, "whole 16-byte loads");
        #pragma unroll
        for (int q = 0; q < V / per_load; ++q) {
            const uint4 raw = reinterpret_cast<const uint4*>(p)[q];
            #pragma unroll
            for (int i = 0; i < per_load; ++i) v[q * per_load + i] = unpack16<T>(raw, i);
        }
    }
}

// Divide the V elements of T at p (16-byte aligned when V > 1) by d in place, rounding each
// to T: 16-byte loads and stores, each word rescaled as it is unpacked (no V-float array held
// at once, which keeps the tight register budgets).
template <typename T, int V>
__device__ __forceinline__ void divide_written(T* p, float d) {
    if constexpr (V == 1) {
        *p = narrow<T>(widen(*p) / d);
    } else {
        constexpr int per_word = (int)(4 / sizeof(T));  // elements per 32-bit word: 1 or 2
        static_assert((V * sizeof(T)) % 16 == 0, "whole 16-byte loads and stores");
        #pragma unroll
        for (int q = 0; q < (int)(V * sizeof(T) / 16); ++q) {
            const uint4 raw = reinterpret_cast<const uint4*>(p)[q];
            uint32_t w[4];
            #pragma unroll
            for (int k = 0; k < 4; ++k) {
                w[k] = bits_of(narrow<T>(unpack16<T>(raw, k * per_word) / d));
                if constexpr (per_word == 2) {
                    w[k] |= bits_of(narrow<T>(unpack16<T>(raw, 2 * k + 1) / d)) << 16;
                }
            }
            reinterpret_cast<uint4*>(p)[q] = uint4{w[0], w[1], w[2], w[3]};
        }
    }
}

// -inf, spelled without <math.h> (which NVRTC lacks).
__device__ __forceinline__ float negative_infinity() { return __uint_as_float(0xff800000u); }

// max that propagates NaN like torch.max (fmaxf would drop it).
__device__ __forceinline__ float max_keep_nan(float a, float b) {
    return (b > a || isnan(b)) ? b : a;
}

// The L2 norm divisor of both normalize conventions in one formula:
//   sentence-transformers Normalize: max(||v||, 1e-12)   -> add = 0,     floor = 1e-12
//   model2vec:                       ||v|| + 1e-32       -> add = 1e-32, floor = 0
// A NaN norm stays NaN (as torch's clamp_min keeps it), so a NaN anywhere in v gives NaN
// everywhere; fmaxf would replace it by the floor.
__device__ __forceinline__ float norm_divisor(float sumsq, float add, float floor_) {
    const float d = sqrtf(sumsq) + add;
    return d < floor_ ? floor_ : d;
}

// Sum of `v` over the whole block (every thread must call it). `scratch` holds one float per warp.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    #pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.f;
    for (int w = 0; w < warps; ++w) total += scratch[w];
    return total;
}
