#!/usr/bin/env bash
# The minimum supported Rust version (the workspace's `rust-version`), checked with the one
# toolchain this machine has (no other can be fetched here):
#
# 1. every package our libraries (LIBRARIES below) build (ours and their locked normal and build
#    dependencies on this platform; dev-dependencies serve only our own tests) declares a
#    rust-version no newer than ours;
# 2. clippy's `incompatible_msrv` lint, denied in CI's clippy run, rejects std APIs
#    stabilised after it (clippy reads `rust-version` from Cargo.toml).
#
# What neither catches: language features stabilised after the MSRV. Building with that
# toolchain (`cargo +MSRV check --workspace`) is the full check; this script runs it when
# the toolchain is installed and says loudly when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
LIBRARIES="eventum-core eventum-smol eventum-std eventum-tls eventum-redis"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if [ -z "$msrv" ]; then
    echo "msrv: Cargo.toml declares no rust-version" >&2
    exit 2
fi
echo "msrv: the workspace declares rust-version $msrv"
cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" | python3 -c '
import json, sys
def version(text):
    return tuple(([int(part) for part in text.split(".")] + [0, 0])[:3])
msrv = version(sys.argv[1])
data = json.load(sys.stdin)
packages = {package["id"]: package for package in data["packages"]}
nodes = {node["id"]: node for node in data["resolve"]["nodes"]}
# What a user of our libraries builds: the libraries, and what they need to build (normal
# and build dependencies; not dev-dependencies, which only our tests, examples and
# benches use). eventum-e2e, eventum-demo and the benches serve this repository only.
libraries = sys.argv[2].split()
todo = [member for member in data["workspace_members"] if packages[member]["name"] in libraries]
if len(todo) != len(libraries):
    sys.exit("msrv: not every library is a workspace member: %s" % libraries)
seen = set(todo)
while todo:
    for dep in nodes[todo.pop()]["deps"]:
        if any(kind["kind"] != "dev" for kind in dep["dep_kinds"]) and dep["pkg"] not in seen:
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])
newer = []
for package_id in seen:
    package = packages[package_id]
    declared = package.get("rust_version")
    if declared and version(declared) > msrv:
        newer.append("%s %s needs Rust %s" % (package["name"], package["version"], declared))
print("msrv: %d packages our libraries build checked against %s" % (len(seen), sys.argv[1]))
if newer:
    print("msrv: packages newer than the declared MSRV:\n  " + "\n  ".join(sorted(newer)))
    sys.exit(1)
' "$msrv" "$LIBRARIES"
if rustup toolchain list 2>/dev/null | grep -q "^$msrv"; then
    echo "msrv: building with Rust $msrv"
    cargo "+$msrv" check --workspace --all-targets --locked
else
    echo "msrv: WARNING: Rust $msrv is not installed here, so language features newer than it"
    echo "msrv: WARNING: are not checked; dependency rust-versions and clippy's incompatible_msrv are."
fi
