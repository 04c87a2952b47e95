#!/usr/bin/env bash
# `stk encode` file to file against `stk bench encode`, issue 13's measure: in the same run,
# alternating, for an old and a new binary: `stk bench encode --json` 'seconds' (encoding
# only) and the wall clock and peak RSS (/usr/bin/time) of `stk encode --input X --output
# out.EXT` (the whole command) for .npy, .safetensors and .jsonl, with its CPU seconds (user +
# system: what a shared machine's noise inflates least), and the floor: the time to write the
# same number of bytes as stk does, with nothing to compute. Prints raw lines (`WHICH bench
# SECONDS`, `WHICH EXT WALL RSS_KB USER SYS`, `floor EXT WALL 0 USER SYS`), then the best of each.
#
# usage: benches/file_to_file.sh OLD_STK NEW_STK MODEL INPUT REPS OUT_DIR
set -euo pipefail
old=$1 new=$2 model=$3 input=$4 reps=$5 out=$6
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-all}"
echo "# input $input: $(wc -l < "$input") lines, $(stat -c %s "$input") bytes; model $model"
for rep in $(seq "$reps"); do
    echo "# rep $rep, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    for which in old new; do
        bin=$old
        [ "$which" = new ] && bin=$new
        seconds=$("$bin" bench encode --model "$model" --input "$input" --json |
            sed 's/.*"seconds":\([0-9.e-]*\).*/\1/')
        echo "$which bench $seconds"
        for ext in npy safetensors jsonl; do
            # Not timed: deleting the previous run's output (freeing its page cache) and
            # flushing what is dirty, so that no run pays for another's writeback.
            rm -f "$out/out.$ext"
            sync
            /usr/bin/time -f "$which $ext %e %M %U %S" -o "$out/time.txt" \
                "$bin" encode --model "$model" --input "$input" --output "$out/out.$ext" --quiet
            cat "$out/time.txt"
        done
    done
    # The floor: only writing as many bytes (whole MiB) the way stk does (a new file in the
    # output folder, fsync, renamed into place), no reading, encoding or formatting.
    for ext in npy safetensors jsonl; do
        mib=$(( $(stat -c %s "$out/out.$ext") >> 20 ))
        rm -f "$out/floor.$ext"
        sync
        /usr/bin/time -f "floor $ext %e 0 %U %S" -o "$out/time.txt" sh -c \
            "dd if=/dev/zero of='$out/.floor.tmp' bs=1M count=$mib conv=fsync status=none && mv '$out/.floor.tmp' '$out/floor.$ext'"
        cat "$out/time.txt"
    done
done | tee "$out/raw.txt"
echo "# best of $reps: seconds (ratio = best bench / best wall), CPU seconds (best), peak RSS KB (max)"
for which in old new; do
    bench=$(awk -v w="$which" '$1==w && $2=="bench" {print $3}' "$out/raw.txt" | sort -g | head -1)
    for ext in npy safetensors jsonl; do
        awk -v w="$which" -v e="$ext" -v b="$bench" '$1==w && $2==e {
                if (best == "" || $3 < best) best = $3; if ($4 > rss) rss = $4
                if (cpu == "" || $5 + $6 < cpu) cpu = $5 + $6 }
            END { printf "%s bench %.3f s, %-11s %.2f s, ratio %.2f, CPU %.2f s, peak RSS %d KB\n",
                w, b, e, best, b / best, cpu, rss }' \
            "$out/raw.txt"
    done
done
for ext in npy safetensors jsonl; do
    awk -v e="$ext" '$1=="floor" && $2==e { if (best == "" || $3 < best) best = $3 }
        END { printf "floor (only writing as many bytes, fsync, rename) %-11s %.2f s\n", e, best }' \
        "$out/raw.txt"
done
