// Fused masked pooling: one launch computes every requested pooling mode for a whole batch.
//
// Where each output row's token rows come from (`source`):
//   SOURCE_PLAN       a host-built plan (stk_cuda::pool::PoolPlan), four tables:
//     ranges        [B + 1]  i64 CSR: segments of output row b are ranges[b]..ranges[b+1]
//     segments      [2 * S]  (begin, end) ranges of token rows that count for a row (the runs
//                   of 1s of a mask row after prompt exclusion)
//     row_rows      [3 * B]  per row: cls token row (-1: zeros), last-token row (-1: zeros;
//                   -2 - r: row r times 0, the reference's answer for a row with no real
//                   token), and the "origin" row whose weightedmean weight is 1
//     row_divisors  [3 * B]  per row: mean, mean_sqrt_len_tokens and weightedmean divisors,
//                   already clamped (max(n, 1e-9), sqrt of it, max(sum w, 1e-9))
//   SOURCE_CU_SEQ_LENS  ranges = cu_seq_lens [B + 1] i32 (varlen [N, D] tokens, seq_len = N)
//   SOURCE_SPANS        ranges = spans [B, 2] i64 (start, end) rows of [N, D] tokens (seq_len = N)
//   SOURCE_MASK         ranges = mask [B, seq_len] of mask_bytes-wide integers (nonzero counts)
//                       over padded [B, seq_len, D] tokens; right, left or holes
// For the three device sources the block derives the row facts itself (rows_of_run /
// rows_of_mask below, the same rules as the host plan), so no host work, copy or allocation
// precedes the launch; `token_weights_sum` [B] (or null) replaces the count divisors.
//   slots         4 bits per output slot, slot k at bits 4k..4k+3 (codes below), num_slots <= 16
//   out           [B, num_slots * D], in T or (out_f32 != 0) in f32
//
// One block per output row. The block's threads form `groups = blockDim.x / lanes` groups of
// `lanes` threads (lanes is a multiple of 32, not necessarily a power of two); a
// group covers `lanes * V` columns and takes every groups-th token row, each thread loading U
// rows before it adds them, so U * groups rows of the block are in flight. The groups' partial
// sums are combined in shared memory in a fixed order (no atomics: the result does not depend
// on scheduling). Accumulation is f32 for every input type.
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

#define SOURCE_PLAN 0
#define SOURCE_CU_SEQ_LENS 1
#define SOURCE_SPANS 2
#define SOURCE_MASK 3

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

// What the token loop and the epilogue need to know about one output row.
struct RowFacts {
    int64_t begin, end;   // token rows [begin, end) that may count
    int64_t cls_row, last_row, origin;
    float div_mean, div_sqrt, div_weighted;
    bool holes;           // rows in [begin, end) count only where the mask is nonzero
};

__device__ __forceinline__ int64_t triangle(int64_t n) { return n * (n + 1) / 2; }

__device__ __forceinline__ void set_divisors(RowFacts& f, float count, float weight_total,
                                             const float* token_weights_sum, int64_t b) {
    const float n = token_weights_sum != nullptr ? token_weights_sum[b] : count;
    f.div_mean = n < 1e-9f ? 1e-9f : n;
    f.div_sqrt = sqrtf(f.div_mean);
    const float w = token_weights_sum != nullptr ? token_weights_sum[b] : weight_total;
    f.div_weighted = w < 1e-9f ? 1e-9f : w;
}

// A run [s, e) of token rows that all count (a varlen sequence or a span), the first `prompt`
// of them left out: the host plan's `run_row`. The bounds come from device memory the host has
// not seen, so they are clamped into the n token rows: bad bounds give a meaningless row, never
// a read outside the tokens.
__device__ __forceinline__ RowFacts rows_of_run(int64_t s, int64_t e, int64_t n, int64_t prompt,
                                                const float* token_weights_sum, int64_t b) {
    s = s < 0 ? 0 : (s > n ? n : s);
    e = e < s ? s : (e > n ? n : e);
    RowFacts f;
    const int64_t len = e - s, skip = prompt < len ? prompt : len;
    f.begin = s + skip;
    f.end = e;
    f.cls_row = len > prompt ? s + skip : (len > 0 ? s : -1);
    f.last_row = len > 0 ? e - 1 : -1;
    f.origin = s;
    f.holes = false;
    set_divisors(f, (float)(len - skip), (float)(triangle(len) - triangle(skip)),
                 token_weights_sum, b);
    return f;
}

__device__ __forceinline__ bool mask_at(const void* mask, int mask_bytes, int64_t i) {
    switch (mask_bytes) {
        case 1: return static_cast<const uint8_t*>(mask)[i] != 0;
        case 4: return static_cast<const uint32_t*>(mask)[i] != 0;
        default: return static_cast<const uint64_t*>(mask)[i] != 0;
    }
}

// Block-wide reductions of one int64 per thread (every thread must call; all get the result).
// `scratch` holds blockDim.x int64 values; blockDim.x is a power of two.
#define REDUCE_SUM 0
#define REDUCE_MIN 1
#define REDUCE_MAX 2
__device__ __forceinline__ int64_t block_reduce(int64_t v, int op, int64_t* scratch) {
    __syncthreads();  // scratch may still be read from a previous call
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = blockDim.x >> 1; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            const int64_t a = scratch[threadIdx.x], o = scratch[threadIdx.x + half];
            scratch[threadIdx.x] = op == REDUCE_SUM ? a + o : (op == REDUCE_MIN ? (o < a ? o : a) : (o > a ? o : a));
        }
        __syncthreads();
    }
    return scratch[0];
}

// Row b of a padded batch from its mask: the host plan's `padded_row`, found by the block.
// One run of ones (right or left padding) reads [first + prompt, last]; a mask with holes
// reads the same span row by row, skipping the rows whose mask is zero.
__device__ __forceinline__ RowFacts rows_of_mask(const void* mask, int mask_bytes, int64_t T,
                                                 int64_t prompt, const float* token_weights_sum,
                                                 int64_t b, int64_t* scratch) {
    const int64_t base = b * T;
    int64_t lo = T, hi = -1, ones = 0;
    for (int64_t j = threadIdx.x; j < T; j += blockDim.x) {
        if (mask_at(mask, mask_bytes, base + j)) {
            lo = j < lo ? j : lo;
            hi = j;
            ++ones;
        }
    }
    const int64_t first_one = block_reduce(lo, REDUCE_MIN, scratch);
    const int64_t last_one = block_reduce(hi, REDUCE_MAX, scratch);
    const int64_t total = block_reduce(ones, REDUCE_SUM, scratch);
    RowFacts f;
    f.holes = total > 0 && total != last_one - first_one + 1;
    const int64_t first = total > 0 ? first_one : 0;  // argmax of an all-zero row is 0
    const int64_t excluded_end = first + prompt;
    f.origin = base + first;
    int64_t count, weight_total, first_real, last_real;
    if (!f.holes) {
        const int64_t len = total, skip = prompt < len ? prompt : len;
        count = len - skip;
        weight_total = triangle(len) - triangle(skip);
        first_real = count > 0 ? excluded_end : -1;
        last_real = count > 0 ? last_one : -1;
    } else {
        int64_t c = 0, w = 0, fr = T, lr = -1;
        for (int64_t j = excluded_end + threadIdx.x; j <= last_one; j += blockDim.x) {
            if (mask_at(mask, mask_bytes, base + j)) {
                ++c;
                w += j + 1 - first;
                fr = j < fr ? j : fr;
                lr = j;
            }
        }
        count = block_reduce(c, REDUCE_SUM, scratch);
        weight_total = block_reduce(w, REDUCE_SUM, scratch);
        first_real = block_reduce(fr, REDUCE_MIN, scratch);
        last_real = block_reduce(lr, REDUCE_MAX, scratch);
        if (count == 0) first_real = last_real = -1;
    }
    f.begin = count > 0 ? base + first_real : base;
    f.end = count > 0 ? base + last_real + 1 : base;
    f.cls_row = count > 0 ? base + first_real : (T > 0 ? base : -1);
    f.last_row = count > 0 ? base + last_real : (T > 0 ? -2 - base : -1);
    set_divisors(f, (float)count, (float)weight_total, token_weights_sum, b);
    return f;
}

// Row b of a host plan with one segment (the device sources always have one).
__device__ __forceinline__ RowFacts rows_of_plan(const int64_t* row_rows,
                                                 const float* row_divisors, int64_t b) {
    RowFacts f;
    f.cls_row = row_rows[3 * b];
    f.last_row = row_rows[3 * b + 1];
    f.origin = row_rows[3 * b + 2];
    f.div_mean = row_divisors[3 * b];
    f.div_sqrt = row_divisors[3 * b + 1];
    f.div_weighted = row_divisors[3 * b + 2];
    f.begin = f.end = 0;
    f.holes = false;
    return f;
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

// Add one token row (pack p, weight w) to the accumulators.
template <typename T, int V, bool FULL>
__device__ __forceinline__ void accumulate(const typename PackRaw<T, V>::type& raw, float w,
                                           float (&sum)[V], float (&wsum)[V], float (&mx)[V]) {
    #pragma unroll
    for (int i = 0; i < V; ++i) {
        const float v = pack_get<T, V>(raw, i);
        sum[i] += v;
        if constexpr (FULL) {
            wsum[i] += v * w;
            mx[i] = max_keep_nan(mx[i], v);
        }
    }
}

template <typename T, int V, bool FULL>
__device__ __forceinline__ void pool_body(const T* __restrict__ x, const T* __restrict__ cls_embeddings,
                                          int source, const void* __restrict__ ranges,
                                          const int64_t* __restrict__ segments,
                                          const int64_t* __restrict__ row_rows,
                                          const float* __restrict__ row_divisors,
                                          const float* __restrict__ token_weights_sum,
                                          int64_t seq_len, int mask_bytes, int64_t prompt,
                                          void* out, int out_f32, int D, int lanes, uint64_t slots,
                                          int num_slots, int normalize, float norm_add,
                                          float norm_floor) {
    // blockDim.x * max(V, 2) floats (the groups' partials, or blockDim.x int64 for the mask
    // reductions), 32 for block_sum, then the row's epilogue facts (8 int64 slots).
    DYNAMIC_SHARED(float, smem);
    float* red = smem;
    float* scratch = smem + blockDim.x * (V > 2 ? V : 2);
    int64_t* epilogue = reinterpret_cast<int64_t*>(scratch + 32);

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

    RowFacts f;
    int64_t seg0 = 0, seg1 = 1;  // the device sources have one segment, [f.begin, f.end)
    if (source == SOURCE_PLAN) {
        const int64_t* row_segments = static_cast<const int64_t*>(ranges);
        f = rows_of_plan(row_rows, row_divisors, b);
        seg0 = row_segments[b];
        seg1 = row_segments[b + 1];
    } else if (source == SOURCE_CU_SEQ_LENS) {
        const int32_t* cu = static_cast<const int32_t*>(ranges);
        f = rows_of_run(cu[b], cu[b + 1], seq_len, prompt, token_weights_sum, b);
    } else if (source == SOURCE_SPANS) {
        const int64_t* spans = static_cast<const int64_t*>(ranges);
        f = rows_of_run(spans[2 * b], spans[2 * b + 1], seq_len, prompt, token_weights_sum, b);
    } else {
        f = rows_of_mask(ranges, mask_bytes, seq_len, prompt, token_weights_sum, b,
                         reinterpret_cast<int64_t*>(smem));
    }
    // What only the epilogue reads waits in shared memory, out of the token loop's registers.
    if (threadIdx.x == 0) {
        epilogue[0] = f.cls_row;
        epilogue[1] = f.last_row;
        reinterpret_cast<float*>(epilogue + 2)[0] = f.div_mean;
        reinterpret_cast<float*>(epilogue + 2)[1] = f.div_sqrt;
        reinterpret_cast<float*>(epilogue + 2)[2] = f.div_weighted;
    }
    __syncthreads();
    const int64_t origin = f.origin;
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
            mx[i] = negative_infinity();
        }
        if (active && (need_sum || need_wsum || need_max)) {
            const int64_t row_step = (int64_t)groups * D;  // elements between a group's rows
            for (int64_t s = seg0; s < seg1; ++s) {
                const int64_t end = source == SOURCE_PLAN ? segments[2 * s + 1] : f.end;
                int64_t r = (source == SOURCE_PLAN ? segments[2 * s] : f.begin) + g;
                const T* p = x + r * D + j;
                // Weight of row r (weightedmean); exact in f32 for positions below 2^24.
                float w = (float)(r - origin + 1);
                if (f.holes) {
                    // A mask with holes: the rows whose mask is zero are skipped (the flat
                    // mask index of token row r is r).
                    for (; r < end; r += groups, p += row_step, w += (float)groups) {
                        if (mask_at(ranges, mask_bytes, r)) {
                            accumulate<T, V, FULL>(load_pack<T, V>(p), w, sum, wsum, mx);
                        }
                    }
                    continue;
                }
                // Full steps: U rows per thread, loads issued before any is used.
                for (; r + (int64_t)(POOL_UNROLL - 1) * groups < end;
                     r += (int64_t)POOL_UNROLL * groups, p += POOL_UNROLL * row_step) {
                    typename PackRaw<T, V>::type raw[POOL_UNROLL];
                    #pragma unroll
                    for (int u = 0; u < POOL_UNROLL; ++u) raw[u] = load_pack<T, V>(p + u * row_step);
                    #pragma unroll
                    for (int u = 0; u < POOL_UNROLL; ++u) {
                        accumulate<T, V, FULL>(raw[u], w, sum, wsum, mx);
                        if constexpr (FULL) w += (float)groups;
                    }
                }
                // The last rows of the segment, one at a time.
                for (; r < end; r += groups, p += row_step) {
                    accumulate<T, V, FULL>(load_pack<T, V>(p), w, sum, wsum, mx);
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
            const int64_t cls_row = epilogue[0], last_row = epilogue[1];
            const float* divisors = reinterpret_cast<const float*>(epilogue + 2);
            const float div_mean = divisors[0], div_sqrt = divisors[1];
            const float div_weighted = divisors[2];
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
        NAME(const T* __restrict__ x, const T* __restrict__ cls_embeddings, int source,       \
             const void* __restrict__ ranges, const int64_t* __restrict__ segments,           \
             const int64_t* __restrict__ row_rows, const float* __restrict__ row_divisors,    \
             const float* __restrict__ token_weights_sum, int64_t seq_len, int mask_bytes,    \
             int64_t prompt, void* out, int out_f32, int D, int lanes, uint64_t slots,        \
             int num_slots, int normalize, float norm_add, float norm_floor) {                \
        pool_body<T, V, FULL>(x, cls_embeddings, source, ranges, segments, row_rows,          \
                              row_divisors, token_weights_sum, seq_len, mask_bytes, prompt,   \
                              out, out_f32, D, lanes, slots, num_slots, normalize, norm_add,  \
                              norm_floor);                                                     \
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
