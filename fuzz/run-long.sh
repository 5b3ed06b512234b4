#!/usr/bin/env bash
# Long fuzzing runs with the corpus merged back: every target (or the ones named) for
# SECONDS each, one after the other, then the new inputs that add coverage are merged
# into the checked-in fuzz/corpus/<target>/ (libFuzzer's -merge=1), ready to review and
# commit. Prints, per target, the executions, coverage and crashes for the closing note.
#
#   fuzz/run-long.sh 3600                 # one hour per target
#   fuzz/run-long.sh 600 reference session
#
# Crashes stop nothing: a crashing target is reported (its input in fuzz/artifacts/) and
# the next one runs; the script exits 1 if any target crashed. JOBS (default 1) runs that
# many fuzzing processes per target in parallel (libFuzzer -fork).
#
# CPU=1 makes SECONDS a budget of CPU time instead of wall time: on a machine shared with
# other work each target fuzzes, in rounds of at most 10 minutes continuing from the same
# corpus, until it has had that much CPU time.
#
#   CPU=1 fuzz/run-long.sh 3600 session   # one CPU-hour, however long that takes
set -euo pipefail

seconds="${1:-3600}"
shift || true
cd "$(dirname "$0")"
targets=("$@")
jobs="${JOBS:-1}"
cpu_budget="${CPU:-0}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-long: cargo-fuzz is not installed; installing it with 'cargo install cargo-fuzz --locked'"
    cargo install cargo-fuzz --locked
fi
if [ ${#targets[@]} -eq 0 ]; then
    # Every target fuzz/Cargo.toml declares, so a new one is fuzzed without editing this.
    mapfile -t targets < <(cargo fuzz list)
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "run-long: 'cargo fuzz list' named no targets"
    exit 2
fi
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo fuzz build -a

# User + system time of this shell's finished children (fields 16 and 17 of
# /proc/PID/stat, in clock ticks): the fuzzer's CPU time, whatever else shares the cores.
children_cpu_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
crashed=()
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    dict=()
    if [ -f "$target.dict" ]; then
        dict=(-dict="$target.dict")
    fi
    fork=()
    if [ "$jobs" -gt 1 ]; then
        fork=(-fork="$jobs" -ignore_crashes=1)
    fi
    echo "run-long: fuzzing $target for ${seconds}s (jobs: $jobs)"
    # Crash inputs already there (kept from earlier runs) are not this run's findings; on a
    # fresh clone there is no artifacts/ yet, which must not stop the run (pipefail).
    known=$({ find "artifacts/$target" -name 'crash-*' 2>/dev/null || true; } | wc -l)
    status=0
    ticks_per_second=$(getconf CLK_TCK)
    cpu_before=$(children_cpu_ticks)
    cpu_used=0
    rounds=0
    execs=0
    started=$SECONDS
    while :; do
        round="$seconds"
        if [ "$cpu_budget" = 1 ]; then
            # What is left of the budget, at least a minute, at most ten.
            round=$(( seconds - cpu_used ))
            if [ "$round" -lt 60 ]; then round=60; fi
            if [ "$round" -gt 600 ]; then round=600; fi
        fi
        rounds=$(( rounds + 1 ))
        cargo fuzz run -a "$target" "$work/$target" "corpus/$target" -- \
            -max_total_time="$round" -print_final_stats=1 "${dict[@]}" "${fork[@]}" >"$log.$rounds" 2>&1 || status=$?
        # A round's last status line counts the executions of that round alone.
        execs=$(( execs + $(grep -oE '^#[0-9]+' "$log.$rounds" | tail -1 | tr -d '#' || true) + 0 ))
        cat "$log.$rounds" >>"$log"
        cpu_used=$(( ($(children_cpu_ticks) - cpu_before) / ticks_per_second ))
        if [ "$status" -ne 0 ] || [ "$cpu_budget" != 1 ] || [ "$cpu_used" -ge "$seconds" ]; then
            break
        fi
    done
    grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$log" | tail -3 | sed "s/^/run-long: $target: /"
    # Wall time is not CPU time on a shared machine: report what the fuzzer really got.
    echo "run-long: $target: ${cpu_used} CPU seconds in $(( SECONDS - started ))s of wall time, ${rounds} round(s), ${execs} executions"
    found=$({ find "artifacts/$target" -name 'crash-*' 2>/dev/null || true; } | wc -l)
    if [ "$status" -ne 0 ] || [ "$found" -gt "$known" ]; then
        crashed+=("$target")
        echo "run-long: $target CRASHED (inputs in fuzz/artifacts/$target/):"
        grep -m 3 -A 3 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" || tail -n 30 "$log"
    fi
    # Keep what added coverage: merge the new inputs into the checked-in corpus.
    before=$(find "corpus/$target" -type f | wc -l)
    cargo fuzz run -a "$target" "corpus/$target" "$work/$target" -- -merge=1 >"$work/$target.merge.log" 2>&1 || true
    after=$(find "corpus/$target" -type f | wc -l)
    echo "run-long: $target: corpus $before -> $after files"
done

if [ ${#crashed[@]} -ne 0 ]; then
    echo "run-long: crashes in: ${crashed[*]}"
    exit 1
fi
echo "run-long: no crash in ${targets[*]} (${seconds}s each$([ "$cpu_budget" = 1 ] && echo " of CPU time"))"
