#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: installs Debian's Chromium for the
# browser tests, Debian's prometheus (for promtool, which checks /metrics) and
# redis-server (for the scale-out tests) when they are missing, Node.js 20+ and the
# pinned npm packages of eventum-e2e/js (the AsyncAPI parser, TypeScript) for the
# JavaScript tests, then runs `cargo test --workspace` with the browser tests, promtool and
# redis-server required (they fail instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian package $2 when command $1 is missing; $3 says what for; $4, if given,
# is an extra apt-get option.
install_missing() {
    local command="$1" package="$2" why="$3" option="${4:-}" sudo=""
    if command -v "$command" >/dev/null 2>&1; then
        return
    fi
    echo "$command is missing; installing Debian's $package package $why."
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "error: run as root or install $package (apt-get install $package) first" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    # No service is started here: tests start their own redis-server on a free port and
    # stop it by PID.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $option "$package" >/dev/null
}

install_missing chromium chromium "for the browser tests"
install_missing promtool prometheus "to check the /metrics output with promtool" --no-install-recommends
install_missing redis-server redis-server "for the scale-out tests"
install_missing node nodejs "for the JavaScript tests"
install_missing npm npm "for the JavaScript tests"
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
export EVENTUM_REDIS=required
exec cargo test --workspace "$@"
