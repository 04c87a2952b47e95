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
// on scheduling). Sums are blocked, as stk-cpu's are: each thread adds its rows in f32 and,
// every POOL_BLOCK_ROWS of its rows, adds that f32 block sum to an f64 total; the groups'
// totals are combined in f64 and divided once. The rounding error is that of a 64-row f32 sum
// and does not grow with the sequence length (a single running f32 sum over 20,000 identical
// rows is off by ~7e-5 relative; `cargo xtask kernel-sim` checks the blocked one within 1e-6
// of f64). The order is fixed by the launch shape, so every run gives the same bits.
//
// Long rows split over several blocks (`phase`, `chunks`, `workspace`), for batches too small
// to fill the GPU with one block per row. Three launches of the same kernel on one stream,
// no float atomics, the same bits every run:
//   PHASE_FACTS    grid B: each row's facts (token range, cls/last rows, divisors) into the
//                  workspace (the mask is scanned once per row, not once per chunk)
//   PHASE_PARTIAL  grid B * chunks: block (b, c) sums chunk c of row b's token range (rows
//                  [lo + c * per, lo + (c + 1) * per), per = ceil(rows / chunks)) and writes its
//                  f32 sum, weighted sum and max of each column into the workspace
//   PHASE_COMBINE  grid B: adds the chunks' partials in chunk order (in f64) and runs the
//                  epilogue (every mode's slot, the fused normalize)
// PHASE_WHOLE (one launch, one block per row) does all of it in one block.
//   workspace     [B] facts of 8 int64, then [B, chunks, 3, D] f32 partials
//                 (`pool_workspace_bytes` in pool.rs)
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

#define PHASE_WHOLE 0
#define PHASE_FACTS 1
#define PHASE_PARTIAL 2
#define PHASE_COMBINE 3
#define INT64_MAX_VALUE 0x7fffffffffffffffLL

#define POOL_SUM_THREADS 512
#define POOL_FULL_THREADS 256
#define POOL_UNROLL 4
// Rows one thread adds in f32 before folding them into its f64 totals (a multiple of
// POOL_UNROLL, so the unrolled loop folds on whole steps).
#define POOL_BLOCK_ROWS 64

// Combine the per-group maxima of `a` into group 0, in group order (all threads must call).
// `red` holds blockDim.x * V floats.
template <int V>
__device__ __forceinline__ void combine_max(float (&a)[V], float* red, int groups, int lanes) {
    __syncthreads();
    #pragma unroll
    for (int i = 0; i < V; ++i) red[i * blockDim.x + threadIdx.x] = a[i];
    __syncthreads();
    if ((int)threadIdx.x < lanes) {
        for (int g = 1; g < groups; ++g) {
            #pragma unroll
            for (int i = 0; i < V; ++i) a[i] = max_keep_nan(a[i], red[i * blockDim.x + g * lanes + threadIdx.x]);
        }
    }
}

// Add the per-group f64 totals (thread t's total of element i at total[i * blockDim.x + t])
// into group 0's entries, in group order (all threads must call).
template <int V>
__device__ __forceinline__ void combine_totals(double* total, int groups, int lanes) {
    __syncthreads();
    if ((int)threadIdx.x < lanes) {
        #pragma unroll
        for (int i = 0; i < V; ++i) {
            double t = total[i * blockDim.x + threadIdx.x];
            for (int g = 1; g < groups; ++g) t += total[i * blockDim.x + g * lanes + threadIdx.x];
            total[i * blockDim.x + threadIdx.x] = t;
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

// A row's facts in the workspace of a split launch: 8 int64 slots per row.
__device__ __forceinline__ void store_facts(void* workspace, int64_t b, const RowFacts& f) {
    int64_t* w = static_cast<int64_t*>(workspace) + 8 * b;
    w[0] = f.begin;
    w[1] = f.end;
    w[2] = f.cls_row;
    w[3] = f.last_row;
    w[4] = f.origin;
    w[5] = f.holes ? 1 : 0;
    float* d = reinterpret_cast<float*>(w + 6);
    d[0] = f.div_mean;
    d[1] = f.div_sqrt;
    d[2] = f.div_weighted;
}

__device__ __forceinline__ RowFacts load_facts(const void* workspace, int64_t b) {
    const int64_t* w = static_cast<const int64_t*>(workspace) + 8 * b;
    RowFacts f;
    f.begin = w[0];
    f.end = w[1];
    f.cls_row = w[2];
    f.last_row = w[3];
    f.origin = w[4];
    f.holes = w[5] != 0;
    const float* d = reinterpret_cast<const float*>(w + 6);
    f.div_mean = d[0];
    f.div_sqrt = d[1];
    f.div_weighted = d[2];
    return f;
}

// The split launches' partials: [B, chunks, 3, D] f32 after the B rows of facts.
__device__ __forceinline__ float* partials_of(void* workspace, int chunks, int phase) {
    const int64_t rows_out = phase == PHASE_PARTIAL ? gridDim.x / chunks : gridDim.x;
    return reinterpret_cast<float*>(static_cast<int64_t*>(workspace) + 8 * rows_out);
}

// Store V output values at element `at` (a multiple of V) of the output, in T or (out_f32) in
// f32: whole 16-byte stores for V > 1 (the output is 16-byte aligned then, see PoolProblem).
template <typename T, int V>
__device__ __forceinline__ void store_out_pack(void* out, int out_f32, int64_t at,
                                               const float (&v)[V]) {
    if (out_f32) {
        store_pack<float, V>(static_cast<float*>(out) + at, v);
    } else {
        store_pack<T, V>(static_cast<T*>(out) + at, v);
    }
}

// The V output values at element `at` that this thread stored, read back (16 bytes at a time
// for V > 1), as f32.
template <typename T, int V>
__device__ __forceinline__ void load_out_pack(const void* out, int out_f32, int64_t at,
                                              float (&v)[V]) {
    if (out_f32) {
        load_written<float, V>(static_cast<const float*>(out) + at, v);
    } else {
        load_written<T, V>(static_cast<const T*>(out) + at, v);
    }
}

// Divide the V output values at element `at` (in T or, out_f32, in f32) by d in place: 16
// bytes at a time in the FULL kernels; an element at a time in the 64-register pool_sum
// kernels, where 16-byte loads and stores here spill registers (`cargo xtask ptx --check`).
template <typename T, int V, bool FULL>
__device__ __forceinline__ void divide_out(void* out, int out_f32, int64_t at, float d) {
    if constexpr (FULL) {
        if (out_f32) {
            divide_written<float, V>(static_cast<float*>(out) + at, d);
        } else {
            divide_written<T, V>(static_cast<T*>(out) + at, d);
        }
    } else {
        #pragma unroll
        for (int i = 0; i < V; ++i) {
            float v[1];
            load_out_pack<T, 1>(out, out_f32, at + i, v);
            v[0] = v[0] / d;
            store_out_pack<T, 1>(out, out_f32, at + i, v);
        }
    }
}

// Call f(at) with the output element `at` of every pack this thread stored in the epilogue
// (group 0's threads: column packs c0 + lane * V below D, in every slot), in a fixed order.
template <int V, typename F>
__device__ __forceinline__ void for_each_stored_pack(int D, int chunk, int lane, int num_slots,
                                                     F&& f) {
    for (int c0 = 0; c0 < D; c0 += chunk) {
        const int j = c0 + lane * V;
        if (j >= D) continue;
        for (int k = 0; k < num_slots; ++k) f(((int64_t)blockIdx.x * num_slots + k) * D + j);
    }
}

// Add the f32 block sums to this thread's f64 totals (in shared memory, out of the token
// loop's registers: element i at total[i * blockDim.x + threadIdx.x]) and start the next
// block at zero.
template <int V, bool FULL>
__device__ __forceinline__ void fold_block(float (&sum)[V], float (&wsum)[V], double* sum_total,
                                           double* wsum_total) {
    #pragma unroll
    for (int i = 0; i < V; ++i) {
        sum_total[i * blockDim.x + threadIdx.x] += (double)sum[i];
        sum[i] = 0.f;
        if constexpr (FULL) {
            wsum_total[i * blockDim.x + threadIdx.x] += (double)wsum[i];
            wsum[i] = 0.f;
        }
    }
}

// total / divisor in f32: the total rounded to f32 (an overflow is +-inf, as the reference's
// f32 sum overflows to inf), then one f32 division. One rounding more than stk-cpu's f64
// division (at most one ulp apart), and no f64 division, which the GPU does in a register-
// hungry software routine.
__device__ __forceinline__ float divide_total(double total, float divisor) {
    return (float)total / divisor;
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
                                          float norm_floor, int phase, int chunks,
                                          void* workspace) {
    // Each thread's f64 sum totals (blockDim.x * V doubles; first used as blockDim.x int64 by
    // the mask reductions), with FULL its weighted-sum totals (as many) and the maxima's
    // combine area (blockDim.x * V floats), 32 floats for block_sum, then the row's epilogue
    // facts (8 int64 slots). `pool_shared_bytes` in pool.rs sizes it.
    DYNAMIC_SHARED(float, smem);
    double* sum_total = reinterpret_cast<double*>(smem);
    double* wsum_total = sum_total + blockDim.x * V;
    float* max_red = reinterpret_cast<float*>(wsum_total + (FULL ? blockDim.x * V : 0));
    float* scratch = max_red + (FULL ? blockDim.x * V : 0);
    int64_t* epilogue = reinterpret_cast<int64_t*>(scratch + 32);

    // The output row, and (PHASE_PARTIAL) which of its chunks this block sums. Past the row
    // facts, the output row (the non-partial phases) is blockIdx.x.
    const int64_t b = phase == PHASE_PARTIAL ? (int64_t)(blockIdx.x / chunks) : (int64_t)blockIdx.x;
    const int part = phase == PHASE_PARTIAL ? (int)(blockIdx.x % chunks) : 0;
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
        seg0 = row_segments[b];
        seg1 = row_segments[b + 1];
    }
    if (phase == PHASE_PARTIAL || phase == PHASE_COMBINE) {
        f = load_facts(workspace, b);
    } else if (source == SOURCE_PLAN) {
        f = rows_of_plan(row_rows, row_divisors, b);
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
    if (phase == PHASE_FACTS) {
        if (threadIdx.x == 0) store_facts(workspace, b, f);
        return;
    }
    // Token rows [cb, ce) are this block's: the whole row, or (PHASE_PARTIAL) its chunk. Kept
    // in shared memory (epilogue slots 4 and 5, the row's range [f.begin, f.end) in 6 and 7)
    // out of the token loop's registers.
    if (threadIdx.x == 0) {
        int64_t cb = 0, ce = INT64_MAX_VALUE;
        if (phase == PHASE_PARTIAL) {
            int64_t lo = f.begin, hi = f.end;
            if (source == SOURCE_PLAN) {
                lo = seg1 > seg0 ? segments[2 * seg0] : 0;
                hi = seg1 > seg0 ? segments[2 * seg1 - 1] : 0;
            }
            const int64_t per = (hi - lo + chunks - 1) / chunks;
            cb = lo + part * per;
            ce = cb + per < hi ? cb + per : hi;
        }
        epilogue[4] = cb;
        epilogue[5] = ce;
        epilogue[6] = f.begin;
        epilogue[7] = f.end;
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
    const int chunk = lanes * V;

    for (int c0 = 0; c0 < D; c0 += chunk) {
        const int j = c0 + lane * V;  // first column of this thread's pack
        // D is a multiple of V, so an active pack fits. Threads past the last whole group
        // (blockDim.x not a multiple of lanes) take no rows.
        const bool active = g < groups && j < D;
        float sum[V], wsum[V], mx[V];
        __syncthreads();  // the previous columns' totals have been read
        #pragma unroll
        for (int i = 0; i < V; ++i) {
            sum[i] = 0.f;
            wsum[i] = 0.f;
            mx[i] = negative_infinity();
            sum_total[i * blockDim.x + threadIdx.x] = 0.0;
            if constexpr (FULL) wsum_total[i * blockDim.x + threadIdx.x] = 0.0;
        }
        if (active && phase != PHASE_COMBINE && (need_sum || need_wsum || need_max)) {
            const int64_t row_step = (int64_t)groups * D;  // elements between a group's rows
            for (int64_t s = seg0; s < seg1; ++s) {
                int64_t end = source == SOURCE_PLAN ? segments[2 * s + 1] : epilogue[7];
                int64_t r = source == SOURCE_PLAN ? segments[2 * s] : epilogue[6];
                const int64_t cb = epilogue[4], ce = epilogue[5];
                end = end < ce ? end : ce;
                r = (r > cb ? r : cb) + g;
                const T* p = x + r * D + j;
                // Weight of row r (weightedmean); exact in f32 for positions below 2^24.
                float w = (float)(r - origin + 1);
                // This thread's rows r, r + groups, ... below end, in blocks of
                // POOL_BLOCK_ROWS, each summed in f32 and then folded into the f64 totals.
                int64_t left = r < end ? (end - r + groups - 1) / groups : 0;
                while (left > 0) {
                    int n = left < POOL_BLOCK_ROWS ? (int)left : POOL_BLOCK_ROWS;
                    left -= n;
                    if (f.holes) {
                        // A mask with holes: the rows whose mask is zero are skipped (the
                        // flat mask index of token row r is r).
                        for (; n > 0; --n, r += groups, p += row_step, w += (float)groups) {
                            if (mask_at(ranges, mask_bytes, r)) {
                                accumulate<T, V, FULL>(load_pack<T, V>(p), w, sum, wsum, mx);
                            }
                        }
                    }
                    // Full steps: U rows per thread, loads issued before any is used.
                    for (; n >= POOL_UNROLL; n -= POOL_UNROLL, p += POOL_UNROLL * row_step) {
                        typename PackRaw<T, V>::type raw[POOL_UNROLL];
                        #pragma unroll
                        for (int u = 0; u < POOL_UNROLL; ++u) raw[u] = load_pack<T, V>(p + u * row_step);
                        #pragma unroll
                        for (int u = 0; u < POOL_UNROLL; ++u) {
                            accumulate<T, V, FULL>(raw[u], w, sum, wsum, mx);
                            if constexpr (FULL) w += (float)groups;
                        }
                    }
                    // The block's last rows, one at a time.
                    for (; n > 0; --n, p += row_step) {
                        accumulate<T, V, FULL>(load_pack<T, V>(p), w, sum, wsum, mx);
                        if constexpr (FULL) w += (float)groups;
                    }
                    fold_block<V, FULL>(sum, wsum, sum_total, wsum_total);
                }
            }
        }
        if (phase == PHASE_COMBINE && active && g == 0) {
            // The chunks' partials, added in chunk order.
            for (int c = 0; c < chunks; ++c) {
                const float* q = partials_of(workspace, chunks, phase) + ((int64_t)blockIdx.x * chunks + c) * 3 * (int64_t)D + j;
                #pragma unroll
                for (int i = 0; i < V; ++i) {
                    if (need_sum) sum_total[i * blockDim.x + threadIdx.x] += (double)q[i];
                    if constexpr (FULL) {
                        if (need_wsum) wsum_total[i * blockDim.x + threadIdx.x] += (double)q[D + i];
                        if (need_max) mx[i] = max_keep_nan(mx[i], q[2 * D + i]);
                    }
                }
            }
        }
        if (groups > 1) {
            if (need_sum) combine_totals<V>(sum_total, groups, lanes);
            if constexpr (FULL) {
                if (need_wsum) combine_totals<V>(wsum_total, groups, lanes);
                if (need_max) combine_max<V>(mx, max_red, groups, lanes);
            }
        }
        if (phase == PHASE_PARTIAL) {
            if (g == 0 && active) {
                float* q = partials_of(workspace, chunks, phase) + (int64_t)blockIdx.x * 3 * D + j;
                #pragma unroll
                for (int i = 0; i < V; ++i) {
                    q[i] = (float)sum_total[i * blockDim.x + threadIdx.x];
                    if constexpr (FULL) {
                        q[D + i] = (float)wsum_total[i * blockDim.x + threadIdx.x];
                        q[2 * D + i] = mx[i];
                    }
                }
            }
            continue;  // the combine launch writes the output
        }
        if (g == 0 && active) {
            const int64_t cls_row = epilogue[0], last_row = epilogue[1];
            const float* divisors = reinterpret_cast<const float*>(epilogue + 2);
            const float div_mean = divisors[0], div_sqrt = divisors[1];
            const float div_weighted = divisors[2];
            const int own = threadIdx.x;  // group 0: this thread's totals hold the row's sums
            for (int k = 0; k < num_slots; ++k) {
                const int code = (int)((slots >> (4 * k)) & 0xf);
                typename PackRaw<T, V>::type tok;
                bool have_tok = false;
                if (code == MODE_CLS) {
                    if (cls_embeddings != nullptr) {
                        tok = load_pack<T, V>(cls_embeddings + (int64_t)blockIdx.x * D + j);
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
                const int64_t at = ((int64_t)blockIdx.x * num_slots + k) * D + j;
                float vals[V];
                #pragma unroll
                for (int i = 0; i < V; ++i) {
                    float v;
                    switch (code) {
                        case MODE_MAX: v = mx[i]; break;
                        case MODE_MEAN: v = divide_total(sum_total[own + i * blockDim.x], div_mean); break;
                        case MODE_MEAN_SQRT_LEN:
                            v = divide_total(sum_total[own + i * blockDim.x], div_sqrt);
                            break;
                        case MODE_WEIGHTED_MEAN:
                            v = divide_total(wsum_total[own + i * blockDim.x], div_weighted);
                            break;
                        case MODE_LAST_TOKEN:
                            v = have_tok ? pack_get<T, V>(tok, i) * (last_row >= 0 ? 1.f : 0.f) : 0.f;
                            break;
                        default: v = have_tok ? pack_get<T, V>(tok, i) : 0.f; break;
                    }
                    vals[i] = v;
                }
                store_out_pack<T, V>(out, out_f32, at, vals);
            }
        }
    }

    if (normalize && phase != PHASE_PARTIAL) {
        // The squares of the values this thread stored, read back: normalize sees each value
        // as stored (rounded to the output type), as a separate Normalize after Pooling would.
        // (Read back rather than summed in the loop above, to keep a register free there.)
        float sumsq = 0.f;
        if (g == 0) {
            for_each_stored_pack<V>(D, chunk, lane, num_slots, [&](int64_t at) {
                float v[V];
                load_out_pack<T, V>(out, out_f32, at, v);
                #pragma unroll
                for (int i = 0; i < V; ++i) sumsq += v[i] * v[i];
            });
        }
        const float denom = norm_divisor(block_sum(sumsq, scratch), norm_add, norm_floor);
        if (g == 0) {
            // Each thread rescales exactly the values it stored above.
            for_each_stored_pack<V>(D, chunk, lane, num_slots, [&](int64_t at) {
                divide_out<T, V, FULL>(out, out_f32, at, denom);
            });
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
             int num_slots, int normalize, float norm_add, float norm_floor, int phase,       \
             int chunks, void* workspace) {                                                   \
        pool_body<T, V, FULL>(x, cls_embeddings, source, ranges, segments, row_rows,          \
                              row_divisors, token_weights_sum, seq_len, mask_bytes, prompt,   \
                              out, out_f32, D, lanes, slots, num_slots, normalize, norm_add,  \
                              norm_floor, phase, chunks, workspace);                           \
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
