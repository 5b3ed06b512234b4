#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a short while each.
#
#   fuzz/run-short.sh [SECONDS] [TARGET...]     # default: 30 s each, all targets
#
# Exits 0 when the targets ran without a crash; non-zero when a target crashed or failed to
# build. When cargo-fuzz cannot be installed it says so loudly and exits 0 on a developer's
# machine, but 3 under CI (CI=true), where a skipped suite must fail the run.
# New corpus entries go to a temporary directory: the checked-in fuzz/corpus/ is read only.
# Crash inputs land in fuzz/artifacts/<target>/ (ignored by git).
set -euo pipefail

seconds="${1:-30}"
shift || true
cd "$(dirname "$0")"
targets=("$@")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-short: cargo-fuzz is not installed; trying 'cargo install cargo-fuzz --locked'"
    if ! cargo install cargo-fuzz --locked; then
        echo "run-short: SKIPPED: cargo-fuzz could not be installed, so nothing was fuzzed"
        if [ "${CI:-}" = true ]; then
            exit 3
        fi
        exit 0
    fi
fi

if [ ${#targets[@]} -eq 0 ]; then
    # Every target fuzz/Cargo.toml declares, so a new one is fuzzed without editing this.
    mapfile -t targets < <(cargo fuzz list)
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "run-short: 'cargo fuzz list' named no targets"
    exit 2
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...); RUSTC_BOOTSTRAP lets the
# stable toolchain accept them. -a keeps debug assertions and overflow checks on.
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
build_log="$(mktemp)"
if ! cargo fuzz build -a >"$build_log" 2>&1; then
    tail -n 40 "$build_log"
    echo "run-short: the fuzz targets failed to build"
    exit 2
fi
rm -f "$build_log"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$tmp/$target"
    log="$tmp/$target.log"
    echo "run-short: fuzzing $target for ${seconds}s"
    dict=()
    if [ -f "$target.dict" ]; then
        dict=(-dict="$target.dict")
    fi
    if cargo fuzz run -a "$target" "$tmp/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
        grep -E "DONE|^Done" "$log" | sed "s/^/run-short: $target: /"
    elif grep -q "failed to build fuzz script" "$log"; then
        tail -n 40 "$log"
        echo "run-short: $target failed to build"
        exit 2
    else
        failed+=("$target")
        echo "run-short: $target FAILED:"
        grep -m 3 -A 2 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" || tail -n 60 "$log"
        grep -A 2 "Failing input:" "$log" || true
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "run-short: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "run-short: no crash in ${targets[*]} (${seconds}s each)"
