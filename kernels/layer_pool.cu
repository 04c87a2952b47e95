// WeightedLayerPooling: out = sum_l w_l * layer_l / sum_l w_l over the kept layers.
//
// Contract (checked on the host by stk_cuda::layer_pool): `layers` holds num_layers kept
// layers back to back, each `n` elements ([B, T, D] flattened); weights [num_layers] f32;
// weight_sum is the f32 sum of the weights, computed once on the host; out [n] in T.
// Accumulation is f32. For the 16-byte kernels n is a multiple of V, so every layer starts on
// a 16-byte boundary, and the output is written 16 bytes at a time.
//
// Elementwise over n: each thread handles V consecutive elements per step (grid-stride), and
// reads the layers in an unrolled loop so several layers' loads are in flight at once.
#include "common.cuh"

#define LAYER_POOL_THREADS 256

template <typename T, int V>
__device__ __forceinline__ void layer_pool_body(const T* __restrict__ layers,
                                                const float* __restrict__ weights, int num_layers,
                                                int64_t n, float weight_sum, T* __restrict__ out) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x * V;
    for (int64_t e = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V; e < n; e += stride) {
        float acc[V];
        #pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = 0.f;
        #pragma unroll 4
        for (int l = 0; l < num_layers; ++l) {
            const typename PackRaw<T, V>::type raw = load_pack<T, V>(layers + (int64_t)l * n + e);
            const float w = weights[l];
            #pragma unroll
            for (int i = 0; i < V; ++i) acc[i] += w * pack_get<T, V>(raw, i);
        }
        #pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = acc[i] / weight_sum;
        store_pack<T, V>(out + e, acc);
    }
}

#define LAYER_POOL_KERNEL(NAME, T, V)                                                     \
    extern "C" __global__ void __launch_bounds__(LAYER_POOL_THREADS)                     \
        NAME(const T* __restrict__ layers, const float* __restrict__ weights,             \
             int num_layers, int64_t n, float weight_sum, T* __restrict__ out) {          \
        layer_pool_body<T, V>(layers, weights, num_layers, n, weight_sum, out);           \
    }                                                                                     \
    SIM_REGISTER(NAME)

LAYER_POOL_KERNEL(layer_pool_f32_v4, float, 4)
LAYER_POOL_KERNEL(layer_pool_f32_v1, float, 1)
LAYER_POOL_KERNEL(layer_pool_f16_v8, f16, 8)
LAYER_POOL_KERNEL(layer_pool_f16_v1, f16, 1)
LAYER_POOL_KERNEL(layer_pool_bf16_v8, bf16, 8)
LAYER_POOL_KERNEL(layer_pool_bf16_v1, bf16, 1)
