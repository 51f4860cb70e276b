#!/usr/bin/env bash
# Soak run (not a CI test): every app (echo on both front ends, proxy, http, copy) under injected
# faults, driven by the bench's load generator, round after round under a rotating seed
# (1, 2, 3, ...) on both drivers, for MINUTES minutes (default 10). Each round runs every app
# under the lossless kinds and enobufs (no connection may fail) and under every kind (resets
# may cut connections, a copy may fail with a clear error and no DST). Prints the faults
# injected per kind, the bytes moved and the mismatches (must be 0), and for any failure the
# command that repeats it (`proactor bench soak --first-seed N --rounds 1 --drivers D`).
#
#   cli/soak.sh            # 10 minutes
#   cli/soak.sh 2          # 2 minutes
#   cli/soak.sh 10 --first-seed 100 --rate 0.05     # more options: proactor bench soak --help
set -uo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
shift || true
cargo build --release -p proactor-cli --bin proactor >/dev/null 2>&1 || {
  echo "soak: build failed"; exit 1; }
exec target/release/proactor bench soak --minutes "$minutes" "$@"
