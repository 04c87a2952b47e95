// Gather-mean embedding bag: one output row per bag of token ids (StaticEmbedding, model2vec).
//
// Contract (the table checked on the host by stk_core::validate::EmbeddingTable, the dtypes
// the CPU reads too):
//   table     [rows, D] f32 / f16 / bf16 / int8 (int8 used as is, no scale)
//   mapping   [vocab] int32 or null: the table row of token id t is mapping[t] (< rows), else t
//   weights   [vocab] f32 or null: token t's row is multiplied by weights[t]
//   ids       [num_ids] token ids; an id >= vocab adds nothing (stk_core::TokenBags rules them
//             out; ids that come straight from a caller's device buffer are not checked)
//   offsets   [num_bags + 1] CSR: bag b is ids[offsets[b]..offsets[b + 1]], clamped into
//             0..num_ids, so unchecked offsets cannot make the kernel read outside ids
//   divide_by 0: sum, 1: token count (model2vec, StaticEmbedding), 2: sum of token weights;
//             an empty bag (or a zero divisor) gives a zero row
//   out       [num_bags, D] f32, 16-byte aligned for the V > 1 kernels (written 16 bytes at a
//             time; the host chooses them only for an aligned output)
//
// One warp per bag. The warp splits into 32 / lanes_per_row sub-groups; each sub-group covers
// lanes_per_row * V columns of one row, and each lane loads U rows before adding them, so
// U * 32 / lanes_per_row table rows of a bag are in flight per warp. Sub-groups are combined
// with shuffles. The table is read through the read-only cache: frequent tokens hit in L2.
// Sums are blocked as in kernels/pool.cu: a lane adds its rows in f32 and folds the block sum
// into its f64 totals (in dynamic shared memory, blockDim.x * V doubles, out of the loop's
// registers) every BAG_BLOCK_STEPS unrolled steps (BAG_UNROLL rows each), so a long bag's
// error does not grow with its length; the sub-groups' totals, rounded to f32, are then
// combined by a fixed butterfly of shuffles (same bits every run).
#include "common.cuh"

#define BAG_THREADS 256
#define BAG_UNROLL 4
// Unrolled steps (BAG_UNROLL rows each) a lane sums in f32 before folding into f64.
#define BAG_BLOCK_STEPS 16

#define DIVIDE_NONE 0
#define DIVIDE_COUNT 1
#define DIVIDE_WEIGHT_SUM 2

template <typename T, int V>
__device__ __forceinline__ void embedding_bag_body(
    const T* __restrict__ table, int D, const int32_t* __restrict__ mapping,
    const float* __restrict__ weights, const uint32_t* __restrict__ ids,
    const int64_t* __restrict__ offsets, int64_t num_ids, int64_t vocab, int64_t num_bags,
    int divide_by, int normalize, float norm_add, float norm_floor, int lanes_per_row,
    float* __restrict__ out) {
    DYNAMIC_SHARED(float, bag_smem);
    // This lane's V f64 totals, side by side (one address; the bank conflicts of this layout
    // cost little, as a fold comes once every BAG_BLOCK_STEPS steps). Only this thread uses
    // them, so no barrier is needed.
    volatile double* total = reinterpret_cast<double*>(bag_smem) + threadIdx.x * V;
    const int lane = threadIdx.x & 31;
    const int64_t bag = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (bag >= num_bags) return;  // the whole warp leaves together: shuffles stay full-warp

    const int rows_per_step = 32 / lanes_per_row;
    const int sub = lane / lanes_per_row;
    const int sl = lane % lanes_per_row;
    const int chunk = lanes_per_row * V;
    int64_t k0 = offsets[bag], k1 = offsets[bag + 1];
    k0 = k0 < 0 ? 0 : (k0 > num_ids ? num_ids : k0);
    k1 = k1 < k0 ? k0 : (k1 > num_ids ? num_ids : k1);
    const float count = (float)(k1 - k0);

    float weight_sum = 0.f;
    if (divide_by == DIVIDE_WEIGHT_SUM) {
        for (int64_t k = k0 + lane; k < k1; k += 32) {
            const uint32_t id = ids[k];
            weight_sum += id >= vocab ? 0.f : (weights ? weights[id] : 1.f);
        }
        #pragma unroll
        for (int m = 16; m > 0; m >>= 1) weight_sum += __shfl_xor_sync(0xffffffffu, weight_sum, m);
    }
    const float divisor = divide_by == DIVIDE_COUNT ? count
                          : divide_by == DIVIDE_WEIGHT_SUM ? weight_sum
                                                          : 1.f;

    float* out_row = out + bag * D;
    float sumsq = 0.f;
    for (int c0 = 0; c0 < D; c0 += chunk) {
        const int j = c0 + sl * V;
        const bool active = j < D;
        float acc[V];
        #pragma unroll
        for (int i = 0; i < V; ++i) {
            acc[i] = 0.f;
            total[i] = 0.0;
        }
        if (active) {
            int steps = 0;  // unrolled steps in the current f32 block
            for (int64_t k = k0 + sub; k < k1; k += (int64_t)rows_per_step * BAG_UNROLL) {
                typename PackRaw<T, V>::type raw[BAG_UNROLL];
                float w[BAG_UNROLL];
                bool used[BAG_UNROLL];
                #pragma unroll
                for (int u = 0; u < BAG_UNROLL; ++u) {
                    const int64_t kk = k + (int64_t)u * rows_per_step;
                    used[u] = kk < k1 && ids[kk] < vocab;
                    if (used[u]) {
                        const uint32_t id = ids[kk];
                        const int64_t row = mapping ? (int64_t)mapping[id] : (int64_t)id;
                        w[u] = weights ? weights[id] : 1.f;
                        raw[u] = load_pack<T, V>(table + row * D + j);
                    }
                }
                #pragma unroll
                for (int u = 0; u < BAG_UNROLL; ++u) {
                    if (used[u]) {
                        #pragma unroll
                        for (int i = 0; i < V; ++i) acc[i] += pack_get<T, V>(raw[u], i) * w[u];
                    }
                }
                if (++steps == BAG_BLOCK_STEPS) {
                    #pragma unroll
                    for (int i = 0; i < V; ++i) {
                        total[i] = total[i] + (double)acc[i];
                        acc[i] = 0.f;
                    }
                    steps = 0;
                }
            }
        }
        #pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = (float)(total[i] + (double)acc[i]);
        // Sum the sub-groups; every sub-group ends with the same totals.
        for (int m = lanes_per_row; m < 32; m <<= 1) {
            #pragma unroll
            for (int i = 0; i < V; ++i) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], m);
        }
        if (sub == 0 && active) {
            #pragma unroll
            for (int i = 0; i < V; ++i) {
                acc[i] = (k1 > k0 && divisor != 0.f) ? acc[i] / divisor : 0.f;
                sumsq += acc[i] * acc[i];
            }
            store_pack<float, V>(out_row + j, acc);
        }
    }

    if (normalize) {
        #pragma unroll
        for (int m = 16; m > 0; m >>= 1) sumsq += __shfl_xor_sync(0xffffffffu, sumsq, m);
        const float denom = norm_divisor(sumsq, norm_add, norm_floor);
        if (sub == 0) {
            // Each lane rescales exactly the values it stored above.
            for (int c0 = 0; c0 < D; c0 += chunk) {
                const int j = c0 + sl * V;
                if (j >= D) continue;
                float v[V];
                load_written<float, V>(out_row + j, v);
                #pragma unroll
                for (int i = 0; i < V; ++i) v[i] = v[i] / denom;
                store_pack<float, V>(out_row + j, v);
            }
        }
    }
}

#define EMBEDDING_BAG_KERNEL(NAME, T, V, MIN_BLOCKS)                                          \
    extern "C" __global__ void __launch_bounds__(BAG_THREADS, MIN_BLOCKS)                     \
        NAME(const T* __restrict__ table, int D, const int32_t* __restrict__ mapping,         \
             const float* __restrict__ weights, const uint32_t* __restrict__ ids,             \
             const int64_t* __restrict__ offsets, int64_t num_ids, int64_t vocab,             \
             int64_t num_bags, int divide_by, int normalize, float norm_add, float norm_floor,\
             int lanes_per_row, float* __restrict__ out) {                                    \
        embedding_bag_body<T, V>(table, D, mapping, weights, ids, offsets, num_ids, vocab,    \
                                 num_bags, divide_by, normalize, norm_add, norm_floor,        \
                                 lanes_per_row, out);                                         \
    }                                                                                         \
    SIM_REGISTER(NAME)

EMBEDDING_BAG_KERNEL(embedding_bag_f32_v4, float, 4, 4)
EMBEDDING_BAG_KERNEL(embedding_bag_f32_v1, float, 1, 4)
EMBEDDING_BAG_KERNEL(embedding_bag_f16_v8, f16, 8, 4)
EMBEDDING_BAG_KERNEL(embedding_bag_f16_v1, f16, 1, 4)
EMBEDDING_BAG_KERNEL(embedding_bag_bf16_v8, bf16, 8, 4)
EMBEDDING_BAG_KERNEL(embedding_bag_bf16_v1, bf16, 1, 4)
// 16 int8 columns per lane need more than 64 registers with the blocked sums: 3 blocks
// (24 warps) per SM instead of 4.
EMBEDDING_BAG_KERNEL(embedding_bag_i8_v16, int8_t, 16, 3)
EMBEDDING_BAG_KERNEL(embedding_bag_i8_v1, int8_t, 1, 4)
