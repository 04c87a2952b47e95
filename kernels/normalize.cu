// Row-wise L2 normalization: out = x / divisor(||x||), computed in f32, stored in x's type.
//
// Contract (checked on the host by stk_cuda::normalize): x and out are [rows, D] of the same
// type and do not overlap. divisor = max(||x|| + norm_add, norm_floor) (see norm_divisor), so
// one kernel serves sentence-transformers Normalize (max(||x||, 1e-12)) and model2vec
// (||x|| + 1e-32); a zero row stays zero.
//
// One warp per row: a first pass over the row sums squares, a second pass (served from cache)
// divides. Each lane handles V columns per 32 * V-column chunk, loaded and stored 16 bytes at a
// time for V > 1 (both buffers are 16-byte aligned then).
#include "common.cuh"

#define NORMALIZE_THREADS 256

template <typename T, int V>
__device__ __forceinline__ void normalize_body(const T* __restrict__ x, T* __restrict__ out,
                                               int64_t rows, int D, float norm_add,
                                               float norm_floor) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // whole warp
    const T* in = x + row * D;
    T* dst = out + row * D;

    float sumsq = 0.f;
    for (int j = lane * V; j < D; j += 32 * V) {
        const typename PackRaw<T, V>::type raw = load_pack<T, V>(in + j);
        #pragma unroll
        for (int i = 0; i < V; ++i) {
            const float v = pack_get<T, V>(raw, i);
            sumsq += v * v;
        }
    }
    #pragma unroll
    for (int m = 16; m > 0; m >>= 1) sumsq += __shfl_xor_sync(0xffffffffu, sumsq, m);
    const float denom = norm_divisor(sumsq, norm_add, norm_floor);

    for (int j = lane * V; j < D; j += 32 * V) {
        const typename PackRaw<T, V>::type raw = load_pack<T, V>(in + j);
        float v[V];
        #pragma unroll
        for (int i = 0; i < V; ++i) v[i] = pack_get<T, V>(raw, i) / denom;
        store_pack<T, V>(dst + j, v);
    }
}

#define NORMALIZE_KERNEL(NAME, T, V)                                                   \
    extern "C" __global__ void __launch_bounds__(NORMALIZE_THREADS)                   \
        NAME(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int D,        \
             float norm_add, float norm_floor) {                                       \
        normalize_body<T, V>(x, out, rows, D, norm_add, norm_floor);                   \
    }                                                                                  \
    SIM_REGISTER(NAME)

NORMALIZE_KERNEL(normalize_f32_v4, float, 4)
NORMALIZE_KERNEL(normalize_f32_v1, float, 1)
NORMALIZE_KERNEL(normalize_f16_v8, f16, 8)
NORMALIZE_KERNEL(normalize_f16_v1, f16, 1)
NORMALIZE_KERNEL(normalize_bf16_v8, bf16, 8)
NORMALIZE_KERNEL(normalize_bf16_v1, bf16, 1)
