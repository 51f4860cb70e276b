#!/usr/bin/env bash
# Per-connection cost of threads::serve's accept path: system calls by kind (perf's tracepoints)
# and user-side instructions (callgrind), counted on the server process only at two connection
# counts and differenced, so start-up and shut-down cancel out. Counts, not timings: they hardly
# move with the machine's load, so two builds compare while others build.
#
#   proactor/benches/accept_cost.sh [BINARY] [DIST] [DRIVER]
#   BINARY: a built accept_cost example (default target/release/examples/accept_cost)
#   DIST:   acceptor | reuseport (default acceptor)
#   DRIVER: uring | epoll (PROACTOR_DRIVER; default uring)
#   LOW/HIGH (env): the two connection counts (default 1000 / 5000); PARALLEL: client threads (8);
#   THREADS: server threads (2)
#   IR=0 (env) skips the callgrind runs (slow). Under valgrind a thread blocked in io_uring_enter
#   holds valgrind's lock, so on io_uring only a lone thread can be counted: DIST=reuseport with
#   THREADS=1 (its accept loop runs on the serving thread itself).
set -euo pipefail
bin=${1:-target/release/examples/accept_cost}
dist=${2:-acceptor}
export PROACTOR_DRIVER=${3:-uring}
low=${LOW:-1000}
high=${HIGH:-5000}
par=${PARALLEL:-8}
threads=${THREADS:-2}
port=$((20000 + RANDOM % 20000))
calls="io_uring_enter write read accept4 getpeername setsockopt getsockopt fcntl close epoll_wait epoll_ctl futex sendto"
events="raw_syscalls:sys_enter"
for c in $calls; do events="$events,syscalls:sys_enter_$c"; done
out=$(mktemp)
trap 'rm -f "$out" "$out".*' EXIT

# run N COUNTER...: the server under the counter, the client beside it (not counted).
run() {
    local n=$1
    shift
    "$@" "$bin" serve --port "$port" --conns "$n" --dist "$dist" --threads "$threads" 2>/dev/null &
    local server=$!
    "$bin" connect --port "$port" --conns "$n" --parallel "$par" 2>/dev/null
    wait "$server"
    port=$((port + 1))
}

declare -A lo hi
run "$low" perf stat -x, -o "$out.lo" -e "$events"
run "$high" perf stat -x, -o "$out.hi" -e "$events"
while IFS=, read -r v _ ev _; do lo[$ev]=$v; done < <(grep -v '^#' "$out.lo" | grep ,)
while IFS=, read -r v _ ev _; do hi[$ev]=$v; done < <(grep -v '^#' "$out.hi" | grep ,)
d=$((high - low))
printf '%s %s: per connection (%d - %d connections):\n' "$PROACTOR_DRIVER" "$dist" "$high" "$low"
for ev in raw_syscalls:sys_enter $(for c in $calls; do echo "syscalls:sys_enter_$c"; done); do
    awk -v a="${hi[$ev]:-0}" -v b="${lo[$ev]:-0}" -v d="$d" -v e="${ev#*:}" \
        'BEGIN { x = (a - b) / d; if (x > 0.005 || x < -0.005) printf "  %-26s %6.2f\n", e, x }'
done
if [ "${IR:-1}" != 0 ]; then
    command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
    run "$low" valgrind --tool=callgrind --callgrind-out-file="$out.cl"
    a=$(awk '/^summary:/ {print $2; exit}' "$out.cl")
    run "$high" valgrind --tool=callgrind --callgrind-out-file="$out.ch"
    b=$(awk '/^summary:/ {print $2; exit}' "$out.ch")
    awk -v a="$a" -v b="$b" -v d="$d" 'BEGIN { printf "  user instructions          %6.0f\n", (b - a) / d }'
fi
