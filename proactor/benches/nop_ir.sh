#!/usr/bin/env bash
# User-side instructions per NOP round trip, counted by callgrind: the figure `perf stat -e
# instructions:u` gives where the machine has hardware counters (this VM has none). Unlike a
# timing it does not move with the machine's load, so it compares two builds while others build.
#
#   proactor/benches/nop_ir.sh [BINARY] [MODES]
#   BINARY: a built nop_ratio example (default target/release/examples/nop_ratio)
#   MODES:  any of raw h f (default "raw h f")
#
# Each mode runs its loop for 3 s under callgrind at batch 256; operations are counted from the
# calls of the loop's per-batch function (256 operations each), so setup is the only
# instructions not divided out (under 1%).
set -euo pipefail
bin=${1:-target/release/examples/nop_ratio}
modes=${2:-raw h f}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for mode in $modes; do
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" 256 1 "$mode" >/dev/null 2>&1
    total=$(awk '/^summary:/ {print $2; exit}' "$out")
    # One call per batch: the raw loop's batch function, or the run loop's turn.
    case $mode in raw) per_batch='raw_batch$' ;; *) per_batch='core::Core::turn$' ;; esac
    ids=$(grep -E "^c?fn=\([0-9]+\) .*$per_batch" "$out" | sed -E 's/^c?fn=\(([0-9]+)\).*/\1/' | sort -u)
    batches=0
    for id in $ids; do
        n=$(awk -v id="cfn=($id)" 'index($0, id) == 1 { getline; if ($1 ~ /^calls=/) { split($1, a, "="); s += a[2] } } END { print s + 0 }' "$out")
        batches=$((batches + n))
    done
    [ "$batches" -gt 0 ] || { echo "$mode: no batches found in the profile" >&2; exit 1; }
    awk -v m="$mode" -v t="$total" -v b="$batches" 'BEGIN { printf "%-3s %6.1f instructions per operation (%d operations)\n", m, t / (b * 256), b * 256 }'
done
