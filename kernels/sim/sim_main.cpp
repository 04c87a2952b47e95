// `stk-kernel-sim LAUNCH OUT`: run one kernel launch described by the file LAUNCH on the CPU
// (see cuda_sim.h) and write every buffer argument, after the run, to OUT.
//
// LAUNCH (little-endian): "STKSIM1\n"; u32 name length, name; u32 grid, block, shared bytes;
// u32 argument count; per argument a tag byte and its value:
//   'B' u64 byte count + bytes (a device buffer), 'N' (a null pointer),
//   'I' i32, 'L' i64, 'U' u64, 'F' f32.
// OUT: u32 buffer count; per buffer argument, in order, u64 byte count + bytes.
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cuda_sim.h"

namespace sim {
thread_local uint3 thread_idx;
thread_local uint3 block_idx;
uint3 block_dim;
uint3 grid_dim;

std::map<std::string, Binder>& registry() {
    static std::map<std::string, Binder> r;
    return r;
}

namespace {
struct Block {
    std::unique_ptr<std::barrier<>> block_barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
    std::vector<float> exchange;  // 32 floats per warp
    void* shared = nullptr;
};
thread_local Block* current = nullptr;
}  // namespace

void sync_block() { current->block_barrier->arrive_and_wait(); }

float shfl_xor(float v, int lane_mask) {
    const unsigned warp = thread_idx.x / 32, lane = thread_idx.x % 32;
    float* buf = &current->exchange[warp * 32];
    buf[lane] = v;
    current->warp_barriers[warp]->arrive_and_wait();
    const float r = buf[lane ^ (unsigned)lane_mask];
    current->warp_barriers[warp]->arrive_and_wait();
    return r;
}

void* dynamic_shared() { return current->shared; }

// Run the bound kernel over the grid, one block at a time: one OS thread per CUDA thread of a
// block, reused from block to block (each block gets fresh barriers and shared memory).
void launch(const Bound& kernel, unsigned grid, unsigned block, size_t shared_bytes) {
    grid_dim = {grid, 1, 1};
    block_dim = {block, 1, 1};
    Block blk;
    std::barrier<> start(block + 1), done(block + 1);  // the workers and this thread
    auto prepare = [&] {
        blk.block_barrier = std::make_unique<std::barrier<>>(block);
        blk.warp_barriers.clear();
        const unsigned warps = (block + 31) / 32;
        for (unsigned w = 0; w < warps; ++w) {
            blk.warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, block - w * 32)));
        }
        blk.exchange.assign(warps * 32, 0.f);
        // Exactly the requested bytes, so AddressSanitizer sees any access past them.
        blk.shared = shared_bytes ? std::malloc(shared_bytes) : nullptr;
    };
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
        threads.emplace_back([&, t] {
            current = &blk;
            for (unsigned b = 0; b < grid; ++b) {
                start.arrive_and_wait();
                thread_idx = {t, 0, 0};
                block_idx = {b, 0, 0};
                kernel();
                // An exited thread no longer holds back the others' barriers.
                blk.warp_barriers[t / 32]->arrive_and_drop();
                blk.block_barrier->arrive_and_drop();
                done.arrive_and_wait();
            }
        });
    }
    for (unsigned b = 0; b < grid; ++b) {
        prepare();
        start.arrive_and_wait();
        done.arrive_and_wait();
        std::free(blk.shared);
        blk.shared = nullptr;
    }
    for (auto& th : threads) th.join();
}
}  // namespace sim

namespace {
struct Arg {
    char tag;
    std::vector<unsigned char>* buffer = nullptr;  // 'B'
    int32_t i = 0;
    int64_t l = 0;
    uint64_t u = 0;
    float f = 0;
};

struct FileArgs : sim::ArgReader {
    std::vector<Arg> args;
    std::vector<std::unique_ptr<std::vector<unsigned char>>> buffers;
    size_t next = 0;

    const Arg& take(const char* kernel, int index, const char* want, const char* tags) {
        if (next >= args.size()) throw std::runtime_error(std::string(kernel) + ": the launch file has too few arguments");
        const Arg& a = args[next++];
        if (!strchr(tags, a.tag)) {
            std::ostringstream m;
            m << kernel << " argument " << index << ": the kernel takes " << want << ", the launch file gives '" << a.tag << "'";
            throw std::runtime_error(m.str());
        }
        return a;
    }
    void* pointer(const char* k, int i) override {
        const Arg& a = take(k, i, "a pointer", "BN");
        return a.tag == 'N' ? nullptr : a.buffer->data();
    }
    int32_t i32(const char* k, int i) override { return take(k, i, "an i32", "I").i; }
    int64_t i64(const char* k, int i) override { return take(k, i, "an i64", "L").l; }
    uint64_t u64(const char* k, int i) override { return take(k, i, "a u64", "U").u; }
    float f32(const char* k, int i) override { return take(k, i, "an f32", "F").f; }
};

template <typename T>
T get(std::istream& in) {
    T v;
    if (!in.read(reinterpret_cast<char*>(&v), sizeof v)) throw std::runtime_error("launch file truncated");
    return v;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: stk-kernel-sim LAUNCH OUT\n";
        return 2;
    }
    try {
        std::ifstream in(argv[1], std::ios::binary);
        char magic[8];
        if (!in.read(magic, 8) || std::string(magic, 8) != "STKSIM1\n") throw std::runtime_error("not a launch file");
        std::string name(get<uint32_t>(in), '\0');
        in.read(name.data(), (std::streamsize)name.size());
        const uint32_t grid = get<uint32_t>(in), block = get<uint32_t>(in), shared = get<uint32_t>(in);
        const uint32_t count = get<uint32_t>(in);
        FileArgs args;
        for (uint32_t k = 0; k < count; ++k) {
            Arg a;
            a.tag = get<char>(in);
            switch (a.tag) {
                case 'B': {
                    const uint64_t n = get<uint64_t>(in);
                    args.buffers.push_back(std::make_unique<std::vector<unsigned char>>(n));
                    a.buffer = args.buffers.back().get();
                    if (n && !in.read(reinterpret_cast<char*>(a.buffer->data()), (std::streamsize)n))
                        throw std::runtime_error("launch file truncated in a buffer");
                    break;
                }
                case 'N': break;
                case 'I': a.i = get<int32_t>(in); break;
                case 'L': a.l = get<int64_t>(in); break;
                case 'U': a.u = get<uint64_t>(in); break;
                case 'F': a.f = get<float>(in); break;
                default: throw std::runtime_error(std::string("unknown argument tag ") + a.tag);
            }
            args.args.push_back(a);
        }
        auto it = sim::registry().find(name);
        if (it == sim::registry().end()) throw std::runtime_error("no kernel named " + name);
        sim::Bound kernel = it->second(args);
        if (args.next != args.args.size()) throw std::runtime_error(name + ": the launch file has more arguments than the kernel");
        if (block == 0 || block % 32 != 0 || block > 1024) throw std::runtime_error("block size must be a multiple of 32 up to 1024");
        sim::launch(kernel, grid, block, shared);

        std::ofstream out(argv[2], std::ios::binary);
        const uint32_t n = (uint32_t)args.buffers.size();
        out.write(reinterpret_cast<const char*>(&n), 4);
        for (auto& b : args.buffers) {
            const uint64_t len = b->size();
            out.write(reinterpret_cast<const char*>(&len), 8);
            out.write(reinterpret_cast<const char*>(b->data()), (std::streamsize)len);
        }
        if (!out) throw std::runtime_error("writing the output file failed");
    } catch (const std::exception& e) {
        std::cerr << "stk-kernel-sim: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
