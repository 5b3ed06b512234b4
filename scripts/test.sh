#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: installs Debian's Chromium for the
# browser test when it is missing, then runs `cargo test --workspace` with the browser
# test required (it fails instead of skipping).
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

export EVENTUM_BROWSER_TEST=required
exec cargo test --workspace "$@"
