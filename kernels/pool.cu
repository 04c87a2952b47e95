// Fused masked pooling: one launch computes every requested pooling mode for a whole batch.
//
// Layout contract (built and checked on the host by stk_cuda::pool, see PoolPlan there):
//   x             token rows [rows, D] (padded [B, T, D] flattened, or varlen [N, D])
//   row_segments  [B + 1]  CSR: segments of output row b are row_segments[b]..row_segments[b+1]
//   segments      [2 * S]  (begin, end) ranges of token rows that count for a row. The host
//                 turns each mask row (after prompt exclusion) into its runs of 1s, usually one
//                 run, so the kernel reads every real token row once and never a padded one.
//   row_rows      [3 * B]  per row: cls token row (-1: zeros), last-token row (-1: zeros;
//                 -2 - r: row r times 0, the reference's answer for a row with no real token), and
//                 the "origin" row whose weightedmean weight is 1 (weight = row - origin + 1)
//   row_divisors  [3 * B]  per row: mean, mean_sqrt_len_tokens and weightedmean divisors, already
//                 clamped (max(n, 1e-9), sqrt of it, max(sum w, 1e-9)) or token_weights_sum
//   slots         4 bits per output slot, slot k at bits 4k..4k+3 (codes below), num_slots <= 16
//   out           [B, num_slots * D], in T or (out_f32 != 0) in f32
//
// One block per output row. The block's threads form `groups = blockDim.x / lanes` groups of
// `lanes` threads (lanes is a multiple of 32, not necessarily a power of two); a
// group covers `lanes * V` columns and takes every groups-th token row, each thread loading U
// rows before it adds them, so U * groups rows of the block are in flight. The groups' partial
// sums are combined in shared memory. Accumulation is f32 for every input type.
//
// Two variants per input type: `pool_sum_*` keeps one running sum per column (cls, mean,
// mean_sqrt_len_tokens, lasttoken: the common single-mode cases) and fits 64 registers at 512
// threads; `pool_full_*` also keeps the weighted sum and the max (256 threads, up to 128
// registers, two blocks per SM).
// Modes that need no token loop (cls, lasttoken alone) skip the loop entirely.
#include "common.cuh"

#define MODE_CLS 0
#define MODE_MAX 1
#define MODE_MEAN 2
#define MODE_MEAN_SQRT_LEN 3
#define MODE_WEIGHTED_MEAN 4
#define MODE_LAST_TOKEN 5

#define POOL_SUM_THREADS 512
#define POOL_FULL_THREADS 256
#define POOL_UNROLL 4

// Combine the per-group partials of `a` into group 0 (all threads must call).
template <int V>
__device__ __forceinline__ void combine_groups(float (&a)[V], float* red, int groups, int lanes,
                                               bool is_max) {
    __syncthreads();
    #pragma unroll
    for (int i = 0; i < V; ++i) red[i * blockDim.x + threadIdx.x] = a[i];
    __syncthreads();
    if ((int)threadIdx.x < lanes) {
        for (int g = 1; g < groups; ++g) {
            #pragma unroll
            for (int i = 0; i < V; ++i) {
                const float o = red[i * blockDim.x + g * lanes + threadIdx.x];
                a[i] = is_max ? max_keep_nan(a[i], o) : a[i] + o;
            }
        }
    }
}

template <typename T>
__device__ __forceinline__ void store_out(void* out, int out_f32, int64_t at, float v) {
    if (out_f32) {
        static_cast<float*>(out)[at] = v;
    } else {
        static_cast<T*>(out)[at] = narrow<T>(v);
    }
}

template <typename T>
__device__ __forceinline__ float load_out(const void* out, int out_f32, int64_t at) {
    return out_f32 ? static_cast<const float*>(out)[at] : widen(static_cast<const T*>(out)[at]);
}

template <typename T, int V, bool FULL>
__device__ __forceinline__ void pool_body(const T* __restrict__ x, const T* __restrict__ cls_embeddings,
                                          const int64_t* __restrict__ row_segments,
                                          const int64_t* __restrict__ segments,
                                          const int64_t* __restrict__ row_rows,
                                          const float* __restrict__ row_divisors, void* out,
                                          int out_f32, int D, int lanes, uint64_t slots,
                                          int num_slots, int normalize, float norm_add,
                                          float norm_floor) {
    DYNAMIC_SHARED(float, smem);  // blockDim.x * V floats, then 32 for block_sum
    float* red = smem;
    float* scratch = smem + blockDim.x * V;

    const int64_t b = blockIdx.x;
    const int groups = blockDim.x / lanes;
    const int g = threadIdx.x / lanes;
    const int lane = threadIdx.x % lanes;

    bool need_max = false, need_sum = false, need_wsum = false;
    for (int k = 0; k < num_slots; ++k) {
        const int code = (int)((slots >> (4 * k)) & 0xf);
        need_max |= code == MODE_MAX;
        need_sum |= code == MODE_MEAN || code == MODE_MEAN_SQRT_LEN;
        need_wsum |= code == MODE_WEIGHTED_MEAN;
    }

    const int64_t seg0 = row_segments[b], seg1 = row_segments[b + 1];
    const int64_t origin = FULL ? row_rows[3 * b + 2] : 0;
    const int64_t out_row = b * (int64_t)num_slots * D;
    const int chunk = lanes * V;

    float sumsq = 0.f;
    for (int c0 = 0; c0 < D; c0 += chunk) {
        const int j = c0 + lane * V;  // first column of this thread's pack
        // D is a multiple of V, so an active pack fits. Threads past the last whole group
        // (blockDim.x not a multiple of lanes) take no rows.
        const bool active = g < groups && j < D;
        float sum[V], wsum[V], mx[V];
        #pragma unroll
        for (int i = 0; i < V; ++i) {
            sum[i] = 0.f;
            wsum[i] = 0.f;
            mx[i] = -INFINITY;
        }
        if (active && (need_sum || need_wsum || need_max)) {
            const int64_t row_step = (int64_t)groups * D;  // elements between a group's rows
            for (int64_t s = seg0; s < seg1; ++s) {
                const int64_t end = segments[2 * s + 1];
                int64_t r = segments[2 * s] + g;
                const T* p = x + r * D + j;
                // Weight of row r (weightedmean); exact in f32 for positions below 2^24.
                float w = (float)(r - origin + 1);
                // Full steps: U rows per thread, loads issued before any is used.
                for (; r + (int64_t)(POOL_UNROLL - 1) * groups < end;
                     r += (int64_t)POOL_UNROLL * groups, p += POOL_UNROLL * row_step) {
                    typename PackRaw<T, V>::type raw[POOL_UNROLL];
                    #pragma unroll
                    for (int u = 0; u < POOL_UNROLL; ++u) raw[u] = load_pack<T, V>(p + u * row_step);
                    #pragma unroll
                    for (int u = 0; u < POOL_UNROLL; ++u) {
                        #pragma unroll
                        for (int i = 0; i < V; ++i) {
                            const float v = pack_get<T, V>(raw[u], i);
                            sum[i] += v;
                            if constexpr (FULL) {
                                wsum[i] += v * w;
                                mx[i] = max_keep_nan(mx[i], v);
                            }
                        }
                        if constexpr (FULL) w += (float)groups;
                    }
                }
                // The last rows of the segment, one at a time.
                for (; r < end; r += groups, p += row_step) {
                    const typename PackRaw<T, V>::type raw = load_pack<T, V>(p);
                    #pragma unroll
                    for (int i = 0; i < V; ++i) {
                        const float v = pack_get<T, V>(raw, i);
                        sum[i] += v;
                        if constexpr (FULL) {
                            wsum[i] += v * w;
                            mx[i] = max_keep_nan(mx[i], v);
                        }
                    }
                    if constexpr (FULL) w += (float)groups;
                }
            }
        }
        if (groups > 1) {
            if (need_sum) combine_groups<V>(sum, red, groups, lanes, false);
            if constexpr (FULL) {
                if (need_wsum) combine_groups<V>(wsum, red, groups, lanes, false);
                if (need_max) combine_groups<V>(mx, red, groups, lanes, true);
            }
        }
        if (g == 0 && active) {
            // Read here rather than at the start: keeps them out of the token loop's registers.
            const int64_t cls_row = row_rows[3 * b], last_row = row_rows[3 * b + 1];
            const float div_mean = row_divisors[3 * b], div_sqrt = row_divisors[3 * b + 1];
            const float div_weighted = row_divisors[3 * b + 2];
            for (int k = 0; k < num_slots; ++k) {
                const int code = (int)((slots >> (4 * k)) & 0xf);
                typename PackRaw<T, V>::type tok;
                bool have_tok = false;
                if (code == MODE_CLS) {
                    if (cls_embeddings != nullptr) {
                        tok = load_pack<T, V>(cls_embeddings + b * D + j);
                        have_tok = true;
                    } else if (cls_row >= 0) {
                        tok = load_pack<T, V>(x + cls_row * D + j);
                        have_tok = true;
                    }
                } else if (code == MODE_LAST_TOKEN && last_row != -1) {
                    // last_row <= -2: no real token; the reference gathers position 0 of
                    // x * mask, i.e. that row times 0 (NaN and inf give NaN, signs stay).
                    tok = load_pack<T, V>(x + (last_row >= 0 ? last_row : -2 - last_row) * D + j);
                    have_tok = true;
                }
                const int64_t at = out_row + (int64_t)k * D + j;
                #pragma unroll
                for (int i = 0; i < V; ++i) {
                    float v;
                    switch (code) {
                        case MODE_MAX: v = mx[i]; break;
                        case MODE_MEAN: v = sum[i] / div_mean; break;
                        case MODE_MEAN_SQRT_LEN: v = sum[i] / div_sqrt; break;
                        case MODE_WEIGHTED_MEAN: v = wsum[i] / div_weighted; break;
                        case MODE_LAST_TOKEN:
                            v = have_tok ? pack_get<T, V>(tok, i) * (last_row >= 0 ? 1.f : 0.f) : 0.f;
                            break;
                        default: v = have_tok ? pack_get<T, V>(tok, i) : 0.f; break;
                    }
                    store_out<T>(out, out_f32, at + i, v);
                    // Normalize sees the value as stored (rounded to the output type), as a
                    // separate Normalize after Pooling would.
                    const float stored = out_f32 ? v : widen(narrow<T>(v));
                    sumsq += stored * stored;
                }
            }
        }
    }

    if (normalize) {
        const float denom = norm_divisor(block_sum(sumsq, scratch), norm_add, norm_floor);
        if (g == 0) {
            // Each thread rescales exactly the values it stored above.
            for (int c0 = 0; c0 < D; c0 += chunk) {
                const int j = c0 + lane * V;
                if (j >= D) continue;
                for (int k = 0; k < num_slots; ++k) {
                    const int64_t at = out_row + (int64_t)k * D + j;
                    #pragma unroll
                    for (int i = 0; i < V; ++i) {
                        store_out<T>(out, out_f32, at + i, load_out<T>(out, out_f32, at + i) / denom);
                    }
                }
            }
        }
    }
}

#define POOL_KERNEL(NAME, T, V, FULL, THREADS, MIN_BLOCKS)                                 \
    extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS)                          \
        NAME(const T* __restrict__ x, const T* __restrict__ cls_embeddings,                   \
             const int64_t* __restrict__ row_segments, const int64_t* __restrict__ segments,  \
             const int64_t* __restrict__ row_rows, const float* __restrict__ row_divisors,    \
             void* out, int out_f32, int D, int lanes, uint64_t slots, int num_slots,         \
             int normalize, float norm_add, float norm_floor) {                               \
        pool_body<T, V, FULL>(x, cls_embeddings, row_segments, segments, row_rows,            \
                              row_divisors, out, out_f32, D, lanes, slots, num_slots,         \
                              normalize, norm_add, norm_floor);                               \
    }                                                                                          \
    SIM_REGISTER(NAME)

POOL_KERNEL(pool_sum_f32_v4, float, 4, false, POOL_SUM_THREADS, 2)
POOL_KERNEL(pool_sum_f32_v1, float, 1, false, POOL_SUM_THREADS, 2)
POOL_KERNEL(pool_sum_f16_v8, f16, 8, false, POOL_SUM_THREADS, 2)
POOL_KERNEL(pool_sum_f16_v1, f16, 1, false, POOL_SUM_THREADS, 2)
POOL_KERNEL(pool_sum_bf16_v8, bf16, 8, false, POOL_SUM_THREADS, 2)
POOL_KERNEL(pool_sum_bf16_v1, bf16, 1, false, POOL_SUM_THREADS, 2)
POOL_KERNEL(pool_full_f32_v4, float, 4, true, POOL_FULL_THREADS, 2)
POOL_KERNEL(pool_full_f32_v1, float, 1, true, POOL_FULL_THREADS, 2)
POOL_KERNEL(pool_full_f16_v8, f16, 8, true, POOL_FULL_THREADS, 2)
POOL_KERNEL(pool_full_f16_v1, f16, 1, true, POOL_FULL_THREADS, 2)
POOL_KERNEL(pool_full_bf16_v8, bf16, 8, true, POOL_FULL_THREADS, 2)
POOL_KERNEL(pool_full_bf16_v1, bf16, 1, true, POOL_FULL_THREADS, 2)
