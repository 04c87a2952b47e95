// A CPU stand-in for the parts of CUDA the stk kernels use, so that kernels/*.cu compile with
// g++ (-DSTK_KERNEL_SIM) and run on the host: `cargo xtask kernel-sim`.
//
// Every CUDA thread of a block is an OS thread. __syncthreads is a barrier of the block's
// threads; a warp shuffle writes the lane's value to a per-warp buffer, waits for the warp,
// reads its partner's value and waits again. Exited threads leave the barriers, as exited
// threads stop counting on the GPU. Built with AddressSanitizer, a read or write outside the
// buffers the host passed (or outside the dynamic shared memory) stops the run with a report.
// This checks the kernels' indexing and arithmetic; it says nothing about their speed.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmath>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) uint4 {
    uint32_t x, y, z, w;
};

namespace sim {
extern thread_local uint3 thread_idx;
extern thread_local uint3 block_idx;
extern uint3 block_dim;
extern uint3 grid_dim;
void sync_block();
float shfl_xor(float v, int lane_mask);
void* dynamic_shared();
}  // namespace sim

#define threadIdx sim::thread_idx
#define blockIdx sim::block_idx
#define blockDim sim::block_dim
#define gridDim sim::grid_dim

inline void __syncthreads() { sim::sync_block(); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) { return sim::shfl_xor(v, lane_mask); }
template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// IEEE binary16 and bfloat16, with round-to-nearest-even narrowing as the device does.
struct __half {
    uint16_t x;
};
struct __nv_bfloat16 {
    uint16_t x;
};

inline __half __ushort_as_half(unsigned short s) { return __half{s}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }

inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16;
    const uint32_t exp = (h.x >> 10) & 0x1fu;
    uint32_t mant = h.x & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  // subnormal: normalize
        int e = -1;
        do {
            ++e;
            mant <<= 1;
        } while ((mant & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
    return __uint_as_float(bits);
}

inline __half __float2half_rn(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xff) return __half{(uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0))};
    const int e = (int)exp - 127 + 15;
    if (e >= 31) return __half{(uint16_t)(sign | 0x7c00u)};
    if (e <= 0) {
        if (e < -10) return __half{(uint16_t)sign};
        mant |= 0x800000u;
        const int shift = 14 - e;
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1))) ++h;
        return __half{(uint16_t)(sign | h)};
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;  // a carry may reach inf: correct
    return __half{(uint16_t)h};
}

inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((uint32_t)b.x << 16); }

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((x >> 16) | 0x40u)};
    return __nv_bfloat16{(uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16)};
}

#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>

namespace sim {
// The arguments of one launch, in order, as the launch file gives them. Each read checks the
// file's type tag against the kernel's C parameter type, so a host that passes arguments in
// another order or of another kind than the kernel declares is reported, not run.
struct ArgReader {
    virtual ~ArgReader() = default;
    virtual void* pointer(const char* kernel, int index) = 0;
    virtual int32_t i32(const char* kernel, int index) = 0;
    virtual int64_t i64(const char* kernel, int index) = 0;
    virtual uint64_t u64(const char* kernel, int index) = 0;
    virtual float f32(const char* kernel, int index) = 0;
};

template <typename P, typename = void>
struct Read;
template <typename P>
struct Read<P, std::enable_if_t<std::is_pointer_v<P>>> {
    static P get(ArgReader& r, const char* k, int i) { return static_cast<P>(r.pointer(k, i)); }
};
template <>
struct Read<int32_t> {
    static int32_t get(ArgReader& r, const char* k, int i) { return r.i32(k, i); }
};
template <>
struct Read<int64_t> {
    static int64_t get(ArgReader& r, const char* k, int i) { return r.i64(k, i); }
};
template <>
struct Read<uint64_t> {
    static uint64_t get(ArgReader& r, const char* k, int i) { return r.u64(k, i); }
};
template <>
struct Read<float> {
    static float get(ArgReader& r, const char* k, int i) { return r.f32(k, i); }
};

using Bound = std::function<void()>;
using Binder = std::function<Bound(ArgReader&)>;
std::map<std::string, Binder>& registry();

template <typename... P, size_t... I>
std::tuple<P...> read_all(ArgReader& r, const char* name, std::index_sequence<I...>) {
    return std::tuple<P...>{Read<P>::get(r, name, (int)I)...};
}

// Called once per kernel (SIM_REGISTER): how to read its arguments and run it.
template <typename... P>
bool register_kernel(const char* name, void (*f)(P...)) {
    registry()[name] = [f, name](ArgReader& r) -> Bound {
        std::tuple<P...> args = read_all<P...>(r, name, std::index_sequence_for<P...>{});
        return [f, args]() { std::apply(f, args); };
    };
    return true;
}
}  // namespace sim

#define SIM_REGISTER(NAME) static const bool sim_registered_##NAME = sim::register_kernel(#NAME, &NAME);
#define DYNAMIC_SHARED(T, NAME) T* NAME = static_cast<T*>(sim::dynamic_shared())
