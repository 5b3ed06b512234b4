#!/usr/bin/env bash
# Cross-node broadcast over Redis beside one node (see src/bin/cluster.rs): starts a
# redis-server on a free loopback port with persistence off, runs the benchmark against
# it, and stops it by PID. `benches/run-cluster.sh [MEMBERS] [MESSAGES] [WINDOW]`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "error: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
cargo build --release -p eventum-benches --bin cluster
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --loglevel warning &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
target/release/cluster "redis://127.0.0.1:$port" "$@"
