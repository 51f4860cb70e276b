#!/usr/bin/env bash
# Soak run (not a CI test): the echo, proxy, HTTP and copy fault tests of cli/tests/faults.rs
# against the real binaries, over and over under a rotating seed (FAULT_SEED=1, 2, 3, ...) on both
# drivers, for MINUTES minutes (default 10). Each round's clients check every byte they get back.
# Prints the faults injected per kind, the bytes moved, and the mismatches (failed rounds, each
# with the seed that repeats it: FAULT_SEED=N cargo test --release -p proactor-cli --test faults).
#
#   cli/soak.sh            # 10 minutes
#   cli/soak.sh 2          # 2 minutes
set -uo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
cargo test --release -p proactor-cli --test faults --no-run >/dev/null 2>&1 || {
  echo "soak: build failed"; exit 1; }
end=$(( $(date +%s) + minutes * 60 ))
seed=${SOAK_FIRST_SEED:-1}
rounds=0; mismatches=0; failed_seeds=""
log=$(mktemp)
while [ "$(date +%s)" -lt "$end" ]; do
  if ! FAULT_SEED=$seed cargo test --release -p proactor-cli --test faults -- --nocapture \
       >>"$log" 2>&1; then
    mismatches=$((mismatches + 1)); failed_seeds="$failed_seeds $seed"
  fi
  rounds=$((rounds + 1)); seed=$((seed + 1))
done
echo "soak: $rounds seeds in $minutes min (both drivers, echo/proxy/http/copy)"
# Sum `kind=N` counts over every "injected" summary, and the bytes moved.
grep -o 'injected [^,]*' "$log" | tr ' ' '\n' | grep '=' | \
  awk -F= '{s[$1]+=$2} END {printf "faults:"; for (k in s) printf " %s=%d", k, s[k]; print ""}'
grep -o 'moved [0-9]* bytes' "$log" | awk '{b+=$2} END {printf "bytes moved: %.0f\n", b}'
echo "mismatches: $mismatches${failed_seeds:+ (seeds:$failed_seeds)}"
rm -f "$log"
[ "$mismatches" -eq 0 ]
