#!/usr/bin/env bash
# Same-run comparison of eventum-smol, eventum-std and an optional peer server on every
# load workload, with the server's CPU time per message beside its throughput and the
# load generator's CPU share (a figure where the client was above 90% of its core is
# flagged: the client, not the server, may have been the limit).
#
#   benches/compare.sh
#   PEER='/tmp/uws-native/uws-echo {port}' PEER_BROADCAST='/tmp/uws-native/uws-echo {port} --broadcast' \
#       PEER_NAME=uWebSockets benches/compare.sh
#
#   DEFLATE=1 PEER='node benches/peers/ws-echo.mjs 127.0.0.1:{port}' PEER_NAME=ws benches/compare.sh
#
# DEFLATE=1 runs the permessage-deflate workloads instead (JSON messages compressed both ways,
# no context takeover): echo 1 KiB and 16 KiB, and broadcast 1 KiB to the room; Node's ws
# (benches/peers, `npm ci --prefix benches/peers` installs it) is a peer that supports it.
# The peer column is skipped when PEER is not set (e.g. the uWebSockets server that
# ../shared/bench-peers/uws-native/build.sh builds). Settings: ROUNDS (3; the median is
# reported, and the ratios to the peer or to eventum-smol, of the rate and of the CPU per
# unit, are taken within a round), DURATION (4 s), WARMUP (1 s), CONNECTIONS (64), IDLE
# (10000), SERVER_CPU (0), CLIENT_CPU (1), OUT
# (target/compare-results.md). Servers run pinned to one core, the load generator to the
# other; every server is a fresh process on a fresh port, killed by PID afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-64}
IDLE=${IDLE:-10000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/compare-results.md}
PEER_NAME=${PEER_NAME:-peer}
DEFLATE=${DEFLATE:-0}
export DEFLATE
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d /tmp/eventum-compare.XXXXXX)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release -q -p eventum-smol --example echo
cp "$TARGET_DIR/release/examples/echo" "$tmp/eventum-smol"
cargo build --release -q -p eventum-std --example echo
cp "$TARGET_DIR/release/examples/echo" "$tmp/eventum-std"
cargo build --release -q -p eventum-benches --bin loadgen
cp "$TARGET_DIR/release/loadgen" "$tmp/loadgen"

SERVERS=(eventum-smol eventum-std)
[ -n "${PEER:-}" ] && SERVERS+=("$PEER_NAME")
# Listening ports below the ephemeral range, so the load generator's own sockets never hold them.
low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
port=$((10000 + RANDOM % (low - 12000)))
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

start() { # start NAME BROADCAST(0/1): sets server_pid and port (a fresh one, retried if taken)
    local cmd attempt
    for attempt in $(seq 20); do
        port=$((port + 1))
        while ss -Htan "sport = :$port" | grep -q .; do port=$((port + 1)); done
        case "$1" in
            eventum-smol | eventum-std) cmd="$tmp/$1 127.0.0.1:$port" ;;
            *) if [ "$2" = 1 ]; then cmd=${PEER_BROADCAST:-$PEER}; else cmd=$PEER; fi
               cmd=${cmd//\{port\}/$port} ;;
        esac
        taskset -c "$SERVER_CPU" $cmd >"$tmp/server.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 50); do
            ss -Htln "sport = :$port" | grep -q . && return 0
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        stop
    done
    echo "server $1 did not start: $(cat "$tmp/server.log")" >&2
    exit 1
}
stop() { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# measure NAME WORKLOAD BROADCAST LOADGEN-ARGS...: one line of results
measure() {
    local name=$1 workload=$2 broadcast=$3
    shift 3
    start "$name" "$broadcast"
    local path=/
    [ "$broadcast" = 1 ] && path=/broadcast
    local s0 s1 t0 t1
    s0=$(ticks "$server_pid")
    t0=$(date +%s.%N)
    taskset -c "$CLIENT_CPU" "$tmp/loadgen" "$@" --url "ws://127.0.0.1:$port$path" >"$tmp/out" 2>"$tmp/err" || true
    s1=$(ticks "$server_pid")
    t1=$(date +%s.%N)
    stop
    echo "$name $workload $((s1 - s0)) $t0 $t1 $(grep '^RESULT' "$tmp/out" || echo 'RESULT failed=1')"
}

run_round() {
    for name in "${SERVERS[@]}"; do
        if [ "$DEFLATE" = 1 ]; then
            measure "$name" echo1k 0 echo --connections "$CONNECTIONS" --inflight 16 --size 1024 --deflate 1 --duration "$DURATION" --warmup "$WARMUP"
            measure "$name" echo16k 0 echo --connections 16 --inflight 4 --size 16384 --deflate 1 --duration "$DURATION" --warmup "$WARMUP"
            measure "$name" broadcast 1 broadcast --connections "$CONNECTIONS" --inflight 1 --size 1024 --deflate 1 --duration "$DURATION" --warmup "$WARMUP"
            continue
        fi
        measure "$name" echo16 0 echo --connections "$CONNECTIONS" --inflight 16 --size 16 --duration "$DURATION" --warmup "$WARMUP"
        measure "$name" echo1k 0 echo --connections "$CONNECTIONS" --inflight 16 --size 1024 --duration "$DURATION" --warmup "$WARMUP"
        measure "$name" echo64k 0 echo --connections 16 --inflight 4 --size 65536 --duration "$DURATION" --warmup "$WARMUP"
        measure "$name" inflight1 0 echo --connections "$CONNECTIONS" --inflight 1 --size 16 --duration "$DURATION" --warmup "$WARMUP"
        measure "$name" broadcast 1 broadcast --connections "$CONNECTIONS" --inflight 1 --size 16 --duration "$DURATION" --warmup "$WARMUP"
        measure "$name" handshake 0 handshake --threads 4 --duration "$DURATION" --warmup "$WARMUP"
    done
}

echo "== $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); servers on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU"
: >"$tmp/all"
for round in $(seq "$ROUNDS"); do
    run_round | sed "s/^/$round /" | tee -a "$tmp/all"
done

# Idle memory: VmRSS growth per connection while IDLE handshaken connections are held.
[ "$DEFLATE" = 1 ] && IDLE=0 # measured by run-load.sh (IDLE_DEFLATE) instead
for name in "${SERVERS[@]}"; do
    [ "$IDLE" -gt 0 ] || break
    start "$name" 0
    before=$(awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status")
    taskset -c "$CLIENT_CPU" "$tmp/loadgen" idle --url "ws://127.0.0.1:$port/" --connections "$IDLE" --hold-seconds 4 >"$tmp/idle" 2>&1 &
    lg=$!
    for _ in $(seq 600); do grep -q HOLDING "$tmp/idle" && break; sleep 0.2; done
    sleep 1
    after=$(awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status")
    wait "$lg" || true
    stop
    opened=$(sed -n 's/.*HOLDING opened=\([0-9]*\).*/\1/p' "$tmp/idle")
    echo "idle $name opened=${opened:-0} kib_per_conn=$(awk -v a="$after" -v b="$before" -v o="${opened:-0}" 'BEGIN { if (o > 0) printf "%.2f", (a - b) / o; else print "-" }')" | tee -a "$tmp/all"
done

python3 - "$tmp/all" "$HZ" "$PEER_NAME" "${SERVERS[@]}" >"$OUT" <<'EOF'
import os, re, statistics, sys
path, hz, peer, servers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
deflate = os.environ.get("DEFLATE") == "1"
rows, idle = {}, {}
for line in open(path):
    f = line.split()
    if f[0] == "idle":
        idle[f[1]] = dict(kv.split("=") for kv in f[2:])
        continue
    rnd, name, work, ticks, t0, t1 = f[0], f[1], f[2], int(f[3]), float(f[4]), float(f[5])
    kv = dict(x.split("=", 1) for x in f[7:] if "=" in x)
    rate = float(kv.get("deliveries_per_sec") if work == "broadcast" else kv.get("handshakes_per_sec") or kv.get("msgs_per_sec") or 0)
    units = float(kv.get("total") or 0)
    cpu_us = ticks / hz * 1e6 / units if units else float("nan")
    client = float(kv.get("client_cpu_share") or 0)
    rows.setdefault((work, name), []).append((int(rnd), rate, cpu_us, kv.get("p50_us", "-"), kv.get("p99_us", "-"), (ticks / hz) / max(t1 - t0, 1e-9), client))
ref = peer if peer in servers else "eventum-smol"
works = ["echo16", "echo1k", "echo16k", "echo64k", "inflight1", "broadcast", "handshake"]
label = {"echo16": "echo 16 B (64 x 16 in flight)", "echo1k": "echo 1 KiB (64 x 16)", "echo64k": "echo 64 KiB (16 x 4)",
         "inflight1": "echo 16 B, 1 in flight (p50/p99 us)", "broadcast": "broadcast 16 B to 64 members (deliveries/s)", "handshake": "handshakes/s (4 client threads)"}
if deflate:
    label = {"echo1k": "compressed echo, 1 KiB JSON (64 x 16)", "echo16k": "compressed echo, 16 KiB JSON (16 x 4)",
             "broadcast": "compressed broadcast, 1 KiB JSON to 64 members (deliveries/s)"}
works = [w for w in works if w in label]
def same_round(r, w, i):
    """Each round's figure `i` over the reference's in the same round: the host's drift
    between rounds cancels out."""
    ratios = []
    for x in r:
        base = [b for b in rows.get((w, ref), []) if b[0] == x[0]]
        if base and base[0][i]:
            ratios.append(x[i] / base[0][i])
    return "%.2fx (%.2f-%.2f)" % (statistics.median(ratios), min(ratios), max(ratios)) if ratios else "-"
print("| workload | server | rate (median) | vs %s (median, range) | server CPU us/unit | CPU/unit vs %s (median, range) | server core busy | client CPU share | p50 / p99 us |" % (ref, ref))
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for w in works:
    for s in servers:
        r = rows.get((w, s), [])
        if not r:
            continue
        med = statistics.median(x[1] for x in r)
        cpu = statistics.median(x[2] for x in r)
        busy = statistics.median(x[5] for x in r)
        lat = "%s / %s" % (r[len(r) // 2][3], r[len(r) // 2][4]) if w == "inflight1" else ""
        client = max(x[6] for x in r)
        flag = " **client-bound**" if client > 0.9 else ""
        print("| %s | %s | %s | %s | %.2f | %s | %.0f%% | %.0f%%%s | %s |" % (label[w], s, "{:,.0f}".format(med), same_round(r, w, 1), cpu,
              same_round(r, w, 2), busy * 100, client * 100, flag, lat))
print()
print("| idle connections | opened | KiB per connection |")
print("|---|---:|---:|")
for s in servers:
    if s in idle:
        print("| %s | %s | %s |" % (s, idle[s].get("opened"), idle[s].get("kib_per_conn")))
EOF
echo "== saved to $OUT"
cat "$OUT"
