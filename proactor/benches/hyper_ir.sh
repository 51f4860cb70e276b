#!/usr/bin/env bash
# User-side instructions per HTTP response of `proactor bench hyper`'s servers, counted by
# callgrind in steady state: the server runs under callgrind and one wrk run loads it; the
# counters are zeroed WARM seconds in, and the profile is dumped SECS seconds later, so start-up,
# connection set-up and the first requests of each connection are left out. Responses are
# counted from the profile itself (calls of hyper's `Conn::write_head`, one per response). A
# count, not a timing: it hardly moves with the machine's load, so two builds compare while
# others build.
#
#   proactor/benches/hyper_ir.sh [BINARY] [KINDS]
#   BINARY: a built proactor CLI (default target/release/proactor)
#   KINDS:  any of hyper-proactor hyper-tokio axum-proactor axum-tokio (default all four)
#   SECS (env): the counted window (default 5); CONNS: wrk's connections (default 100);
#   WARM: seconds before the window (default 10). hyper's read buffer reaches its steady state
#   (one reallocation per request, ~490 instructions) only after ~200 requests on a connection,
#   which at -c100 under callgrind takes seconds: a window that starts earlier flatters the
#   slower server. Each line says whether its window was steady (counted from the profile).
#   DRIVER: uring | epoll for the proactor servers (default uring);
#   KEEP=DIR (env): keep each profile as DIR/KIND.callgrind for callgrind_annotate;
#   VGARGS: more callgrind options (--dump-instr=yes for an instruction-level profile).
# Under valgrind a thread blocked in io_uring_enter holds valgrind's lock, and SIGTERM may wait
# on it, so the server is killed with SIGKILL after the dump. The servers are one thread.
set -euo pipefail
bin=${1:-target/release/proactor}
kinds=${2:-hyper-proactor hyper-tokio axum-proactor axum-tokio}
secs=${SECS:-5}
warm=${WARM:-10}
conns=${CONNS:-100}
driver=${DRIVER:-uring}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# calls FUNCTION-REGEX: the calls of every function of that name in the profile $prof.
calls() {
    local total=0 id c
    for id in $(grep -E "^c?fn=\([0-9]+\) .*$1\$" "$prof" | sed -E 's/^c?fn=\(([0-9]+)\).*/\1/' | sort -u); do
        c=$(awk -v id="cfn=($id)" 'index($0, id) == 1 { getline; if ($1 ~ /^calls=/) { split($1, a, "="); s += a[2] } } END { print s + 0 }' "$prof")
        total=$((total + c))
    done
    echo "$total"
}
for kind in $kinds; do
    case $kind in axum-*) path=/json ;; *) path=/ ;; esac
    port=$((20000 + RANDOM % 20000))
    valgrind --tool=callgrind ${VGARGS:-} --callgrind-out-file="$dir/$kind.%p" \
        "$bin" bench serve-hyper --kind "$kind" --listen "127.0.0.1:$port" --driver "$driver" \
        >"$dir/$kind.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$dir/$kind.log" && break
        sleep 0.2
    done
    grep -q 'listening on' "$dir/$kind.log" || { echo "$kind did not start" >&2; cat "$dir/$kind.log" >&2; exit 1; }
    url="http://127.0.0.1:$port$path"
    wrk -t1 -c"$conns" -d"$((warm + secs + 2))s" "$url" >/dev/null &
    load=$!
    sleep "$warm"
    callgrind_control -z "$server" >/dev/null
    sleep "$secs"
    callgrind_control -d "$server" >/dev/null
    wait "$load"
    kill -9 "$server"
    wait "$server" 2>/dev/null || true
    prof=$(ls "$dir/$kind".*.1 2>/dev/null | head -1)
    [ -n "$prof" ] || { echo "$kind: no dump" >&2; exit 1; }
    total=$(awk '/^summary:/ {print $2; exit}' "$prof")
    # Responses: the calls of hyper's Conn::write_head, one per response.
    n=$(calls 'h1::conn::Conn<I,B,T>::write_head')
    [ "$n" -gt 0 ] || { echo "$kind: no response in the window" >&2; exit 1; }
    # Steady state: hyper reallocates its read buffer once per request (BytesMut::reserve_inner).
    r=$(calls 'BytesMut::reserve_inner')
    steady=$(awk -v r="$r" -v n="$n" 'BEGIN { if (r >= 0.95 * n) print "steady"; else printf "NOT steady: read buffer reallocated at %.0f%% of responses, lengthen WARM", 100 * r / n }')
    awk -v k="$kind" -v t="$total" -v n="$n" -v s="$steady" \
        'BEGIN { printf "%-15s %8.0f instructions per response (%d responses, %s)\n", k, t / n, n, s }'
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$prof" "$KEEP/$kind.callgrind"; fi
done
