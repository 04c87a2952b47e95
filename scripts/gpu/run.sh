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
# Everything is printed and also written to LOG (default benches/results/gpu-<date>.log), the
# file to commit. The exit status is non-zero when a test step failed.
set -uo pipefail

bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$bundle/.." && pwd)"
export STK_REPO_ROOT="$root"   # the test binaries find tests/golden through it
log="${1:-$root/benches/results/gpu-$(date -u +%Y%m%d-%H%M%S).log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1

section() { printf '\n===== %s\n' "$*"; }
failed=()
step() {  # step NAME TIMEOUT_S COMMAND...: run, report, remember failures
    local name="$1" limit="$2"
    shift 2
    section "$name"
    echo "\$ $*"
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "[$name: exit $rc after $((SECONDS - start)) s]"
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
# Tests: one thread, so the parity tests share the device one at a time and their output reads in order.
for t in no_driver ptx_contract plans parity; do
    [ -x "$bin/$t" ] && step "test $t" 600 "$bin/$t" --test-threads=1 --nocapture
done

# Benchmarks: each prints the device, its driver, and the kernel's share of the copy bandwidth.
bench() { step "stk bench $*" 300 "$bin/stk" bench "$@"; }
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode mean
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode mean --lengths random
bench pool --device cuda --shape 256x512x1024 --dtype f16 --mode mean
bench pool --device cuda --shape 256x512x1024 --dtype f32 --mode mean
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode cls,max,mean
bench pool --device cuda --shape 256x512x1024 --dtype bf16 --mode mean --normalize
bench pool --device cuda --shape 256x512x768 --dtype bf16 --mode mean
bench pool --device cuda --shape 32x128x384 --dtype f32 --mode mean
# A table far larger than L2 (random rows come from DRAM), then potion-base-8M's size.
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype f32 --bags 16384 --tokens 32
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype bf16 --bags 16384 --tokens 32
bench embedding-bag --device cuda --rows 2000000 --dim 256 --dtype i8 --bags 16384 --tokens 32
bench embedding-bag --device cuda --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32 --normalize model2vec
bench embedding-bag --device cuda --rows 29528 --dim 256 --dtype f16 --bags 16384 --tokens 32

# The same shapes through the reference libraries.
if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    py() { step "python $*" 300 python3 "$root/scripts/gpu/$@"; }
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode mean --lengths random
    py pool_torch.py --shape 256x512x1024 --dtype f16 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype f32 --mode mean
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode cls,max,mean
    py pool_torch.py --shape 256x512x1024 --dtype bf16 --mode mean --normalize
    py embedding_bag_torch.py --rows 1000000 --dim 256 --dtype f16 --bags 16384 --tokens 32
    py embedding_bag_torch.py --rows 1000000 --dim 256 --dtype f32 --bags 16384 --tokens 32
    py embedding_bag_torch.py --rows 1000000 --dim 256 --dtype bf16 --bags 16384 --tokens 32
    py embedding_bag_torch.py --rows 29528 --dim 256 --dtype f16 --bags 16384 --tokens 32
else
    section "python comparisons skipped: python3 with a CUDA-enabled torch not found"
fi

section "summary"
if [ "${#failed[@]}" -eq 0 ]; then
    echo "all steps passed; log: $log"
else
    printf 'FAILED: %s\n' "${failed[@]}"
    echo "log: $log"
    exit 1
fi
