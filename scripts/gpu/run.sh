#!/usr/bin/env bash
# The GPU run: parity tests, golden module cases on the GPU, benchmarks against the device copy
# bandwidth, and the same shapes through sentence-transformers / torch for comparison.
#
# `cargo xtask gpu-bundle` copies this file to gpu-bundle/run.sh beside the binaries it built.
# On the GPU machine (driver, Python with torch and sentence-transformers, no Rust), from the
# checkout with gpu-bundle/ carried along:
#
#     bash gpu-bundle/run.sh [LOG]
#
# Everything is printed and also written to LOG (default benches/results/gpu-<date>.log, the
# file to commit there; a copy goes to $OUT when it is set, the folder the device machine of
# the `run` tool sends back). The exit status is non-zero when a step failed.
#
# Time budget: the steps run in order of importance (the issue-9 benchmark shapes, the parity
# and graph-capture tests, then the rest) and stop starting new ones after STK_GPU_BUDGET_S
# seconds (default 450, so that the whole run fits one 10-minute `run` call with the
# unpacking); each step's timeout is cut to what is left. Skipped steps are listed at the end.
set -uo pipefail

bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$bundle/.." && pwd)"
export STK_REPO_ROOT="$root"   # the test binaries find tests/golden through it
# On the device machine of the `run` tool, $OUT is the folder that comes back: log there.
log="${1:-$root/benches/results/gpu-$(date -u +%Y%m%d-%H%M%S).log}"
mkdir -p "$(dirname "$log")"
copies=("$log")
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    copy="$(cd "$OUT" && pwd)/$(basename "$log")"
    [ "$copy" -ef "$log" ] || copies+=("$copy")
fi
exec > >(tee "${copies[@]}") 2>&1
budget="${STK_GPU_BUDGET_S:-450}"

section() { printf '\n===== %s\n' "$*"; }
failed=()
skipped=()
step() {  # step NAME TIMEOUT_S COMMAND...: run within the budget, report, remember failures
    local name="$1" limit="$2"
    shift 2
    local left=$((budget - SECONDS))
    if [ "$left" -lt 15 ]; then
        skipped+=("$name")
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    section "$name"
    echo "\$ $*"
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "[$name: exit $rc after $((SECONDS - start)) s, limit $limit s]"
    [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
}

section "machine"
date -u
cat "$bundle/MANIFEST.txt"
uname -a
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv
else
    echo "nvidia-smi not found"
fi
# cudarc opens libcuda.so.1 by name; some images keep it outside the loader's path.
if ! python3 -c 'import ctypes; ctypes.CDLL("libcuda.so.1")' 2>/dev/null && [ -d /usr/local/nvidia/lib64 ]; then
    export LD_LIBRARY_PATH="/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH (libcuda.so.1 was not on the loader path)"
fi

bin="$bundle/bin"
# The binaries travel xz-compressed (cargo xtask gpu-bundle); unpack them beside.
for packed in "$bin"/*.xz; do
    exe="${packed%.xz}"
    if command -v xz >/dev/null; then
        xz -dc "$packed" > "$exe"
    else
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$packed" "$exe"
    fi || { echo "cannot unpack $packed"; exit 1; }
    chmod +x "$exe"
done
export STK_BIN="$bin/stk"      # cuda_facade runs the bundled binary

# Without a usable GPU every GPU test would only report that it skipped: stop here instead.
section "device probe"
if ! "$bin/stk" bench embedding-bag --device cuda --rows 64 --dim 8 --bags 4 --tokens 2 --runs 1; then
    echo "NO USABLE CUDA DEVICE: nothing below would run on a GPU (see the error above)"
    exit 1
fi
# Benchmarks: each prints the device, its driver, and the kernel's share of the copy
# bandwidth measured in the same process. Pooling: each sequence a random length in 1..=T.
bench() { step "stk bench $*" 300 "$bin/stk" bench "$@"; }
# The issue-9 shapes (device-buffer path, small batches split over blocks with a workspace;
# target >= 0.85 of copy bandwidth on an H200), and the embedding bag (target >= 0.75):
bench pool --device cuda --shape 1x32768x1024 --dtype bf16 --mode mean --full-length
bench pool --device cuda --shape 16x2048x1024 --dtype bf16 --mode mean --full-length
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode mean --full-length
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32
# Tests, one thread each, so that they share the device one at a time and read in order.
step "test no_driver" 120 "$bin/no_driver" --test-threads=1 --nocapture
step "test parity (kernels vs CPU: golden module cases, random problems, NaN/inf)" 240 \
    "$bin/parity" --test-threads=1 --nocapture
step "test graph_capture (device-buffer calls captured in a CUDA graph and replayed)" 120 \
    "$bin/graph_capture" --test-threads=1 --nocapture
step "test cuda_facade (golden static cases encoded on the GPU, module commands --device cuda)" 180 \
    "$bin/cuda_facade" --test-threads=1 --nocapture

# More shapes, while the budget lasts.
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode mean
bench pool --device cuda --shape 256x512x1024 --dtype f16 --mode mean
bench pool --device cuda --shape 256x512x1024 --dtype f32 --mode mean
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode cls,max,mean
bench pool --device cuda --shape 256x512x768 --dtype bf16 --mode mean
bench pool --device cuda --shape 32x128x384 --dtype f32 --mode mean
# A table far larger than L2 (random rows come from DRAM), then potion-base-8M's size.
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype f32 --bags 16384 --tokens 32
bench embedding-bag --device cuda --rows 2000000 --dim 256 --dtype i8 --bags 16384 --tokens 32
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32 --normalize model2vec
bench embedding-bag --device cuda --rows 29528 --dim 256 --dtype f16 --bags 16384 --tokens 32
# Whole-model encoding, CPU tokenization + GPU embedding bag, against the CPU path.
printf 'The quick brown fox jumps over the lazy dog.\nRust is fast and memory safe.\n%.0s' $(seq 5000) > "$bundle/texts.txt"
step "stk bench encode --device cuda" 300 "$bin/stk" bench encode --model "$root/models/potion-base-8M-f16" \
    --input "$bundle/texts.txt" --repeat 5 --device cuda
step "stk bench encode --device cpu" 300 "$bin/stk" bench encode --model "$root/models/potion-base-8M-f16" \
    --input "$bundle/texts.txt" --repeat 5 --device cpu

# The same shapes through the reference libraries.
if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    py() { step "python $*" 300 python3 "$root/scripts/gpu/$@"; }
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype f16 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype f32 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode cls,max,mean
    py pool_torch.py --shape 256x512x768 --dtype bf16 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode mean --lengths full
    py embedding_bag_torch.py --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32
    py embedding_bag_torch.py --rows 1000000 --dim 256 --dtype f32 --bags 16384 --tokens 32
    py embedding_bag_torch.py --rows 1000000 --dim 256 --dtype bf16 --bags 16384 --tokens 32
    py embedding_bag_torch.py --rows 29528 --dim 256 --dtype f16 --bags 16384 --tokens 32
else
    section "python comparisons skipped: python3 with a CUDA-enabled torch not found"
fi

section "summary"
if [ "${#skipped[@]}" -gt 0 ]; then
    printf 'SKIPPED (time budget of %s s): %s\n' "$budget" "${skipped[@]}"
fi
if [ "${#failed[@]}" -eq 0 ]; then
    echo "all steps passed; log: $log"
else
    printf 'FAILED: %s\n' "${failed[@]}"
    echo "log: $log"
    exit 1
fi
