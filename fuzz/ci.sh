#!/usr/bin/env bash
# Bounded fuzzing for CI (called from .ci/run): installs cargo-fuzz when missing, seeds the
# corpora from the golden folders, runs each target for $1 seconds (default 20) and fails on the
# first crash, printing libFuzzer's report. Stable toolchain only: RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its -Z flags, and --sanitizer none needs no nightly runtime.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
./seed.sh
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none
for target in safetensors_open model_folder text_input; do
  log=$(mktemp)
  if cargo fuzz run --sanitizer none "$target" -- \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" | sed "s/^/$target /"
    rm -f "$log"
  else
    tail -n 80 "$log"
    echo "fuzz target $target failed: the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
