#!/usr/bin/env bash
# What the kernel is asked per HTTP response by `proactor bench hyper`'s servers: system calls,
# io_uring submissions, completions, poll arms, punts to io-wq and context switches, counted by
# perf's tracepoints on the server's pid over one whole wrk run (responses: wrk's own count).
# Counts, not timings: they hardly move with the machine's load, so they compare while others
# build. The server runs pinned to CPU 1 and wrk to CPU 0, as in the bench.
#
#   proactor/benches/hyper_counts.sh [BINARY] [KINDS]
#   BINARY: a built proactor CLI (default target/release/proactor)
#   KINDS:  any of hyper-proactor hyper-tokio axum-proactor axum-tokio (default all four)
#   SECS (env): the wrk run (default 5); CONNS: wrk's connections (default 100);
#   DRIVER: uring | epoll for the proactor servers (default uring).
#
# Measured 2026-12-03 (hyper, -c100, 5 s, shared machine): hyper-proactor 2.00 submissions
# (a receive, a send), 2.00 completions, 1.00 poll arm (the receive that waits for data; the
# send completes inline, no punt to io-wq), 0.035 io_uring_enter; hyper-tokio 1.00 recvfrom,
# 1.00 writev, 0.022 epoll_wait — per response.
set -euo pipefail
bin=${1:-target/release/proactor}
kinds=${2:-hyper-proactor hyper-tokio axum-proactor axum-tokio}
secs=${SECS:-5}
conns=${CONNS:-100}
driver=${DRIVER:-uring}
command -v perf >/dev/null || { echo "needs perf" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
events=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait
events=$events,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_sendto
events=$events,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_poll_arm
events=$events,io_uring:io_uring_queue_async_work,io_uring:io_uring_local_work_run
events=$events,context-switches
for kind in $kinds; do
    case $kind in axum-*) path=/json ;; *) path=/ ;; esac
    port=$((20000 + RANDOM % 20000))
    taskset -c 1 "$bin" bench serve-hyper --kind "$kind" --listen "127.0.0.1:$port" \
        --driver "$driver" >"$dir/$kind.log" 2>&1 &
    server=$!
    for _ in $(seq 50); do
        grep -q 'listening on' "$dir/$kind.log" && break
        sleep 0.1
    done
    grep -q 'listening on' "$dir/$kind.log" || { echo "$kind did not start" >&2; exit 1; }
    perf stat -x, -e "$events" -p "$server" -o "$dir/$kind.perf" &
    counter=$!
    sleep 0.2
    taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port$path" >"$dir/$kind.wrk"
    kill -INT "$counter"
    wait "$counter" 2>/dev/null || true
    kill "$server"
    wait "$server" 2>/dev/null || true
    n=$(awk '/requests in/ {print $1}' "$dir/$kind.wrk")
    rps=$(awk '/Requests\/sec/ {print $2}' "$dir/$kind.wrk")
    echo "$kind: $n responses ($rps req/s); per response:"
    awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && $1 > 0 {printf "  %-40s %8.3f\n", $3, $1 / n}' "$dir/$kind.perf"
done
