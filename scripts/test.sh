#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: installs Debian's Chromium for the
# browser tests and Debian's prometheus (for promtool, which checks /metrics) when they
# are missing, Node.js 20+ and the pinned npm packages of eventum-e2e/js (the AsyncAPI
# parser, TypeScript) for the JavaScript tests, then runs
# `cargo test --workspace` with the browser tests and promtool required (they fail instead
# of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "Chromium is missing; installing Debian's chromium package for the browser test."
    if [ "$(id -u)" = 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: run as root or install chromium (apt-get install chromium) first" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool is missing; installing Debian's prometheus package to check the /metrics output."
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "error: run as root or install promtool (apt-get install prometheus) first" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    # Only the package's files are wanted: its service is not started here.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "Node.js or npm is missing; installing Debian's nodejs and npm for the JavaScript tests."
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "error: run as root or install Node.js 20+ and npm first" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    cat >&2 <<EOF
error: the JavaScript tests need Node.js 20 or later; found $(node --version) at $(command -v node).
  Why: eventum.js is tested in Node against a real server with Node's built-in WebSocket
  (global from Node 22, behind --experimental-websocket on Node 20 and 21); Node 18 has none.
  What to install: Node.js 20 or later with its npm, first on PATH as \`node\` and \`npm\`.
  This project's machines ship Node 20. Debian 12's nodejs package is Node 18, too old, so
  apt-get cannot fix this on Debian 12 (Debian 13's nodejs is 20). This script downloads
  nothing from other hosts (CI reaches only crates.io, npm, Debian and PyPI), so install
  Node 20+ by your platform's means and re-run scripts/test.sh.
EOF
    exit 1
fi
if [ ! -f eventum-e2e/js/node_modules/@asyncapi/parser/package.json ] \
    || [ ! -f eventum-e2e/js/node_modules/typescript/bin/tsc ]; then
    echo "Installing the JavaScript tests' npm packages (npm ci in eventum-e2e/js)."
    (cd eventum-e2e/js && npm ci --no-audit --no-fund)
fi

export EVENTUM_BROWSER_TEST=required
export EVENTUM_PROMTOOL=required
exec cargo test --workspace "$@"
