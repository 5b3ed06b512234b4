#!/usr/bin/env bash
# End-to-end load benchmark: eventum-smol's and eventum-std's echo examples beside a
# tungstenite echo server (benches/src/bin/peer_echo_tungstenite.rs), driven by
# benches/src/bin/loadgen.rs over loopback.
#
#   benches/run-load.sh                      # everything, defaults below
#   ROUNDS=1 DURATION=5 benches/run-load.sh  # quicker
#   DEFLATE=1 SIZE=1024 IDLE=" " benches/run-load.sh   # echo with permessage-deflate
#
# DEFLATE=1: the echo runs offer permessage-deflate (no context takeover either way) and send
# --size bytes of JSON compressed; the peer is then Node's ws (benches/peers/ws-echo.mjs, its
# settings matched to eventum's defaults, installed with npm ci) instead of tungstenite, which
# has no permessage-deflate.
#
# Settings (environment): CONNECTIONS (50), INFLIGHT ("1 16"), SIZE (16), DURATION (10 s),
# WARMUP (1 s), ROUNDS (3; the median round is reported), IDLE ("2000 10000"), HOLD (5 s),
# IDLE_DEFLATE (1: each eventum server is measured idle a second time with every connection
# having agreed permessage-deflate and exchanged one compressed 1 KiB message; 0: not),
# SERVER_CPU (0) and CLIENT_CPU (1): each server runs on one core and the load generator on
# the other (taskset), BASE_PORT (random in 20000-28999; ports in use are skipped),
# OUT (target/load-results.md).
#
# Each measurement gets a fresh server process, killed by PID afterwards (and on exit).
# Idle memory is the growth of the server's VmRSS (/proc/PID/status) while N handshaken,
# silent connections are held, divided by the connections actually opened; the kernel's
# socket buffers and per-thread kernel stacks are not in VmRSS.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-50}
INFLIGHT=${INFLIGHT:-"1 16"}
SIZE=${SIZE:-16}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-"2000 10000"}
HOLD=${HOLD:-5}
IDLE_DEFLATE=${IDLE_DEFLATE:-1}
DEFLATE=${DEFLATE:-0}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-$((20000 + RANDOM % 9000))}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/load-results.md}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

# --- file descriptors: the load generator and the server each hold one per connection --
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt "$(ulimit -Sn)" ]; then
    ulimit -n "$hard" 2>/dev/null || true
fi
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576

tmp=$(mktemp -d /tmp/eventum-load.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Command prefixes that pin a process to one core (when taskset exists). taskset execs the
# program, so `$!` after `"${ON_SERVER_CPU[@]}" prog &` is the program's own PID.
ON_SERVER_CPU=()
ON_CLIENT_CPU=()
if command -v taskset >/dev/null; then
    ON_SERVER_CPU=(taskset -c "$SERVER_CPU")
    ON_CLIENT_CPU=(taskset -c "$CLIENT_CPU")
fi

# --- build --------------------------------------------------------------------------------
echo "== building (release)"
# Both adapters' examples are named `echo`: build one package at a time and copy each.
cargo build --release -q -p eventum-smol --example echo
cp "$TARGET_DIR/release/examples/echo" "$tmp/eventum-smol"
cargo build --release -q -p eventum-std --example echo
cp "$TARGET_DIR/release/examples/echo" "$tmp/eventum-std"
cargo build --release -q -p eventum-benches --bin loadgen --bin peer_echo_tungstenite
cp "$TARGET_DIR/release/loadgen" "$tmp/loadgen"
cp "$TARGET_DIR/release/peer_echo_tungstenite" "$tmp/tungstenite"

SERVERS=(eventum-smol eventum-std tungstenite)
PEERS=(tungstenite) # the servers that are not eventum's
if [ "$DEFLATE" = 1 ]; then
    command -v node >/dev/null || { echo "DEFLATE=1 needs Node.js (scripts/test.sh installs it)" >&2; exit 1; }
    [ -d benches/peers/node_modules/ws ] || npm ci --prefix benches/peers --no-audit --no-fund >/dev/null
    printf '#!/bin/sh\nexec node %s "$@"\n' "$PWD/benches/peers/ws-echo.mjs" >"$tmp/ws-deflate"
    chmod +x "$tmp/ws-deflate"
    SERVERS=(eventum-smol eventum-std ws-deflate)
    PEERS=(ws-deflate)
fi

# Every server process gets a port of its own: the previous one's port may still have
# connections in TIME_WAIT (the server closes first).
NEXT_PORT=$BASE_PORT
SERVER_PID=
SERVER_PORT=
port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

start_server() { # start_server NAME: fresh process on a fresh free port, pinned to SERVER_CPU
    local name=$1 log="$tmp/$1.log"
    for _ in $(seq 20); do
        while port_busy "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
        SERVER_PORT=$NEXT_PORT
        NEXT_PORT=$((NEXT_PORT + 1))
        "${ON_SERVER_CPU[@]}" "$tmp/$name" "127.0.0.1:$SERVER_PORT" >"$log" 2>&1 &
        SERVER_PID=$!
        pids+=("$SERVER_PID")
        for _ in $(seq 100); do
            grep -q "echo server on" "$log" 2>/dev/null && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        # Someone else took the port between the check and the bind: try the next one.
        grep -q "AddrInUse\|Address already in use" "$log" 2>/dev/null || break
        stop_server
    done
    echo "server $name did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    local keep=()
    for pid in "${pids[@]}"; do [ "$pid" = "$SERVER_PID" ] || keep+=("$pid"); done
    pids=("${keep[@]}")
    SERVER_PID=
}

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system time of a process
status_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), open files $NOFILE"
echo "   servers on CPU $SERVER_CPU, load generator on CPU $CLIENT_CPU"

# --- echo -------------------------------------------------------------------------------
results="$tmp/echo.txt"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for w in $INFLIGHT; do
        for name in "${SERVERS[@]}"; do
            start_server "$name"
            cpu_before=$(cpu_ticks "$SERVER_PID")
            line=$("${ON_CLIENT_CPU[@]}" "$tmp/loadgen" echo --url "ws://127.0.0.1:$SERVER_PORT/" \
                --connections "$CONNECTIONS" --inflight "$w" --size "$SIZE" --duration "$DURATION" \
                --warmup "$WARMUP" --deflate "$DEFLATE" 2>"$tmp/loadgen.err" | grep '^RESULT' || true)
            cpu_after=$(cpu_ticks "$SERVER_PID")
            stop_server
            if [ -z "$line" ]; then
                echo "   round $round W=$w $name: FAILED: $(head -3 "$tmp/loadgen.err")"
                continue
            fi
            rate=$(field "$line" msgs_per_sec)
            # Server CPU time per echoed message: robust to the scheduling noise of a shared machine.
            cpu=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$CLK_TCK" -v n="$(field "$line" total)" \
                'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }')
            echo "   round $round W=$w $name: $rate msgs/s, p50 $(field "$line" p50_us) us," \
                "p99 $(field "$line" p99_us) us, server CPU $cpu us/msg, errors $(field "$line" errors)"
            echo "$name $w $round $rate $(field "$line" p50_us) $(field "$line" p99_us) $(field "$line" errors) $cpu" >>"$results"
        done
    done
done

# Each figure is the median over rounds. Ratios are taken within a round (the servers of one
# round run back to back, seconds apart) and then the median over rounds is shown with its range.
value() { # value NAME W ROUND COLUMN
    awk -v n="$1" -v w="$2" -v r="$3" -v c="$4" '$1 == n && $2 == w && $3 == r { print $c }' "$results"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f–%.2f", lo, hi }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.3f\n", a / b }'; }

{
    compressed=""
    [ "$DEFLATE" = 1 ] && compressed=" of JSON, compressed (permessage-deflate, no context takeover)"
    echo "### End-to-end echo: $CONNECTIONS connections, $SIZE-byte text$compressed, ${DURATION} s per run, $ROUNDS rounds"
    echo
    echo "Server on 1 core (CPU $SERVER_CPU), load generator on the other; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Figures are medians over rounds. Ratios are taken within each round against the fastest peer"
    echo "of that round, then the median (and range) over rounds. Server CPU µs/msg = the server's"
    echo "user+system time over the run / echoes sent back (${CLK_TCK} Hz ticks); its ratio is the peer's"
    echo "CPU per message / this server's (above 1 = less CPU per message than the peer)."
    echo
    echo "| server | in flight | msgs/s | p50 µs | p99 µs | msgs/s vs fastest peer | range | server CPU µs/msg | CPU/msg vs peer | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for w in $INFLIGHT; do
        for name in "${SERVERS[@]}"; do
            rates="" p50s="" p99s="" cpus="" ratios="" cpu_ratios="" errors=0
            for round in $(seq "$ROUNDS"); do
                rate=$(value "$name" "$w" "$round" 4)
                [ -n "$rate" ] || continue
                best=0 best_cpu=""
                for peer in "${PEERS[@]}"; do
                    r=$(value "$peer" "$w" "$round" 4)
                    if [ -n "$r" ] && awk -v a="$r" -v b="$best" 'BEGIN { exit !(a > b) }'; then
                        best=$r
                        best_cpu=$(value "$peer" "$w" "$round" 8)
                    fi
                done
                cpu=$(value "$name" "$w" "$round" 8)
                rates+="$rate"$'\n'
                p50s+="$(value "$name" "$w" "$round" 5)"$'\n'
                p99s+="$(value "$name" "$w" "$round" 6)"$'\n'
                cpus+="$cpu"$'\n'
                ratios+="$(ratio "$rate" "$best")"$'\n'
                cpu_ratios+="$(ratio "$best_cpu" "$cpu")"$'\n'
                errors=$((errors + $(value "$name" "$w" "$round" 7)))
            done
            if [ -z "$rates" ]; then
                echo "| $name | $w | failed | | | | | | | |"
                continue
            fi
            nonempty() { grep -v '^$' || true; }
            r_med=$(nonempty <<<"$ratios" | median)
            c_med=$(nonempty <<<"$cpu_ratios" | median)
            printf '| %s | %s | %s | %s | %s | **%s×** | %s | %s | **%s×** | %s |\n' "$name" "$w" \
                "$(nonempty <<<"$rates" | median)" "$(nonempty <<<"$p50s" | median)" "$(nonempty <<<"$p99s" | median)" \
                "$(awk -v x="$r_med" 'BEGIN { printf "%.2f", x }')" "$(nonempty <<<"$ratios" | range)" \
                "$(nonempty <<<"$cpus" | median)" "$(awk -v x="$c_med" 'BEGIN { printf "%.2f", x }')" "$errors"
        done
    done
    echo
} >"$tmp/echo.md"

# --- idle -------------------------------------------------------------------------------
{
    echo "### Idle connections: server memory (VmRSS growth while held / connections opened)"
    echo
    echo "| server | requested | opened | refused | RSS before KiB | RSS held KiB | **KiB / connection** | threads held |"
    echo "|---|---|---|---|---|---|---|---|"
} >"$tmp/idle.md"
for n in $IDLE; do
    if [ $((n + 64)) -gt "$NOFILE" ]; then
        echo "   idle $n: skipped (open files limited to $NOFILE)"
        echo "| (all) | $n | skipped: \`ulimit -n\` is $NOFILE | | | | | |" >>"$tmp/idle.md"
        continue
    fi
    runs=("${SERVERS[@]}")
    if [ "$IDLE_DEFLATE" = 1 ]; then
        for name in "${SERVERS[@]}"; do
            case " ${PEERS[*]} " in *" $name "*) ;; *) runs+=("$name+deflate") ;; esac
        done
    fi
    for run in "${runs[@]}"; do
        name=${run%+deflate}
        deflate=0
        [ "$run" != "$name" ] && deflate=1
        start_server "$name"
        sleep 0.5
        before=$(status_field "$SERVER_PID" VmRSS)
        out="$tmp/idle-$run-$n.txt"
        "${ON_CLIENT_CPU[@]}" "$tmp/loadgen" idle --url "ws://127.0.0.1:$SERVER_PORT/" \
            --connections "$n" --hold-seconds "$HOLD" --deflate "$deflate" >"$out" 2>"$tmp/loadgen.err" &
        lg=$!
        pids+=("$lg")
        for _ in $(seq 1200); do
            grep -q '^HOLDING' "$out" && break
            kill -0 "$lg" 2>/dev/null || break
            sleep 0.1
        done
        sleep 1 # let the server finish setting up the last connections
        held=$(status_field "$SERVER_PID" VmRSS)
        threads=$(status_field "$SERVER_PID" Threads)
        wait "$lg" || true
        keep=()
        for pid in "${pids[@]}"; do [ "$pid" = "$lg" ] || keep+=("$pid"); done
        pids=("${keep[@]}")
        stop_server
        line=$(grep '^HOLDING' "$out" || true)
        opened=$(field "$line" opened)
        refused=$(field "$line" refused)
        if [ -z "$opened" ] || [ "$opened" = 0 ]; then
            echo "   idle $n $run: FAILED: $(head -3 "$tmp/loadgen.err")"
            echo "| $run | $n | failed | | | | | |" >>"$tmp/idle.md"
            continue
        fi
        if [ "$deflate" = 1 ] && [ "$(field "$line" exchanged)" != "$opened" ]; then
            echo "   idle $n $run: FAILED: only $(field "$line" exchanged) of $opened connections exchanged a compressed message"
            echo "| $run | $n | failed: compression not used on every connection | | | | | |" >>"$tmp/idle.md"
            continue
        fi
        per=$(awk -v a="$before" -v b="$held" -v n="$opened" 'BEGIN { printf "%.1f", (b - a) / n }')
        echo "   idle $n $run: opened $opened (refused $refused), RSS $before -> $held KiB: $per KiB/connection, $threads threads"
        echo "| $run | $n | $opened | $refused | $before | $held | **$per** | $threads |" >>"$tmp/idle.md"
    done
done

mkdir -p "$(dirname "$OUT")"
cat "$tmp/echo.md" "$tmp/idle.md" >"$OUT"
echo
cat "$OUT"
echo "(saved to $OUT)"
