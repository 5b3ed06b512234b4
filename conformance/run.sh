#!/usr/bin/env bash
# Autobahn|Testsuite (`wstest -m fuzzingclient`) against both echo servers:
# eventum-smol on 127.0.0.1:9001 and eventum-std on 127.0.0.1:9002.
#
#   conformance/run.sh                  every case, 12.* and 13.* (permessage-deflate) included
#   conformance/run.sh 5.* 7.13.1       just these cases
#
# It installs the suite into a Python 2.7 virtualenv in /tmp when it is missing, builds
# both echo examples, starts them, runs the suite, kills the two servers it started (by
# PID, on any exit), prints a per-agent, per-group summary plus the details of every
# case that did not pass, and exits 1 if any case FAILED (or a server died). It exits 0
# with a message when Python 2 or the suite cannot be installed on this machine.
#
# Environment (all optional):
#   PYTHON2     a Python 2.7 interpreter (default: pyenv's 2.7.x, then python2.7/python2)
#   AB_VENV     the suite's virtualenv              (default /tmp/ab27)
#   AB_REPORTS  where the reports go                (default /tmp/autobahn-reports)
#   AB_WORK     binaries, spec and logs of this run (default /tmp/eventum-conformance)
#   SMOL_ADDR / STD_ADDR   listen addresses (default 127.0.0.1:9001 / 127.0.0.1:9002)
#   AB_TIMEOUT  seconds before the whole wstest run is abandoned (default 3600)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
AB_VENV="${AB_VENV:-/tmp/ab27}"
AB_REPORTS="${AB_REPORTS:-/tmp/autobahn-reports}"
AB_WORK="${AB_WORK:-/tmp/eventum-conformance}"
SMOL_ADDR="${SMOL_ADDR:-127.0.0.1:9001}"
STD_ADDR="${STD_ADDR:-127.0.0.1:9002}"
AB_TIMEOUT="${AB_TIMEOUT:-3600}"

# The set that installs and runs on Python 2.7.18 (pip 20.3.4); pinned so a later
# release on the registry cannot break the install.
PINS="
autobahntestsuite==25.10.1
autobahn==0.10.9
Twisted==19.10.0
txaio==2.1.0
attrs==21.4.0
Automat==22.10.0
cffi==1.15.1
constantly==15.1.0
cryptography==3.3.2
enum34==1.1.10
hyperlink==21.0.0
idna==2.10
incremental==16.10.1
ipaddress==1.0.23
Jinja2==2.11.3
klein==17.10.0
linecache2==1.0.0
MarkupSafe==1.1.1
pyasn1==0.5.1
pyasn1-modules==0.3.0
pycparser==2.21
PyHamcrest==1.10.1
pyOpenSSL==19.1.0
service-identity==18.1.0
six==1.16.0
traceback2==1.4.0
typing==3.10.0.0
ujson==2.0.3
unittest2==1.1.0
Werkzeug==1.0.1
wsaccel==0.6.6
zope.interface==4.6.0
"

cannot_install() {
    echo "conformance: SKIPPED, the Autobahn|Testsuite cannot be installed here: $*" >&2
    if [ "${CI:-}" = true ]; then
        echo "conformance: under CI a skipped suite fails the run (exit 3)." >&2
        exit 3
    fi
    echo "conformance: nothing was run (exit 0). See conformance/README.md." >&2
    exit 0
}

find_python2() {
    local c
    for c in "${PYTHON2:-}" \
             "$HOME/.pyenv/versions/2.7.18/bin/python" \
             $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python 2>/dev/null) \
             "$(command -v python2.7 2>/dev/null || true)" \
             "$(command -v python2 2>/dev/null || true)"; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        if "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' 2>/dev/null; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

install_suite() {
    if [ -x "$AB_VENV/bin/wstest" ] && "$AB_VENV/bin/wstest" -a >/dev/null 2>&1; then
        return 0
    fi
    local py2 boot log
    py2="$(find_python2)" || cannot_install "no Python 2.7 interpreter found (set PYTHON2, or install 2.7.18 with pyenv)"
    "$py2" -m pip --version >/dev/null 2>&1 || cannot_install "$py2 has no pip"
    echo "conformance: installing the Autobahn|Testsuite into $AB_VENV (Python: $py2; takes ~3 min)"
    mkdir -p "$AB_WORK"
    log="$AB_WORK/install.log"
    : >"$log"
    # virtualenv goes into /tmp too (--target), leaving the interpreter's own site-packages alone.
    boot="$AB_WORK/virtualenv-py2"
    rm -rf "$AB_VENV"
    if ! [ -f "$boot/virtualenv/__init__.py" ]; then
        "$py2" -m pip install --disable-pip-version-check --target "$boot" "virtualenv==20.15.1" >>"$log" 2>&1 \
            || { tail -20 "$log" >&2; cannot_install "pip could not install virtualenv for Python 2.7 (log: $log)"; }
    fi
    PYTHONPATH="$boot" "$py2" -m virtualenv "$AB_VENV" >>"$log" 2>&1 \
        || { tail -20 "$log" >&2; cannot_install "could not create the virtualenv $AB_VENV (log: $log)"; }
    echo "$PINS" | grep . >"$AB_WORK/requirements-py2.txt"
    "$AB_VENV/bin/pip" install --disable-pip-version-check -r "$AB_WORK/requirements-py2.txt" >>"$log" 2>&1 \
        || { tail -20 "$log" >&2; cannot_install "pip could not install autobahntestsuite and its pins (log: $log)"; }
    "$AB_VENV/bin/wstest" -a >/dev/null 2>&1 \
        || { "$AB_VENV/bin/wstest" -a 2>&1 | tail -20 >&2; cannot_install "wstest was installed but does not start"; }
}

SMOL_PID=""
STD_PID=""
WSTEST_PID=""
cleanup() {
    local pid n
    for pid in $WSTEST_PID $SMOL_PID $STD_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    WSTEST_PID=""
    SMOL_PID=""
    STD_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { # host:port -> true when something accepts connections there
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

start_server() { # name binary address; sets SMOL_PID / STD_PID
    local name="$1" bin="$2" addr="$3"
    if port_open "$addr"; then
        echo "conformance: $addr is already in use; stop what listens there or set ${name^^}_ADDR" >&2
        exit 1
    fi
    "$bin" "$addr" >"$AB_WORK/$name.log" 2>&1 &
    printf -v "${name^^}_PID" '%s' "$!"
}

wait_ready() { # name pid address
    local n
    for n in $(seq 100); do
        kill -0 "$2" 2>/dev/null || { echo "conformance: the $1 server exited at start:" >&2; cat "$AB_WORK/$1.log" >&2; return 1; }
        port_open "$3" && return 0
        sleep 0.1
    done
    echo "conformance: the $1 server did not listen on $3 within 10 s" >&2
    return 1
}

# ---------------------------------------------------------------------------------------
install_suite
PY="$AB_VENV/bin/python"
mkdir -p "$AB_WORK" "$AB_REPORTS"

echo "conformance: building the echo examples"
cd "$ROOT"
cargo build --release -j2 -p eventum-smol --example echo
cp target/release/examples/echo "$AB_WORK/echo-smol"
cargo build --release -j2 -p eventum-std --example echo
cp target/release/examples/echo "$AB_WORK/echo-std"

# The spec: conformance/fuzzingclient.json, with the addresses, the report folder and,
# when cases are given on the command line, those cases and no exclusions.
"$PY" - "$HERE/fuzzingclient.json" "$AB_WORK/spec.json" "$AB_REPORTS" "$SMOL_ADDR" "$STD_ADDR" "$@" <<'EOF'
import json, sys
src, dst, outdir, smol, std = sys.argv[1:6]
cases = sys.argv[6:]
spec = json.load(open(src))
spec["outdir"] = outdir
urls = {"eventum-smol": "ws://" + smol, "eventum-std": "ws://" + std}
for s in spec["servers"]:
    s["url"] = urls.get(s["agent"], s["url"])
if cases:
    spec["cases"] = cases
    spec["exclude-cases"] = []
json.dump(spec, open(dst, "w"), indent=2)
EOF
echo "conformance: spec $AB_WORK/spec.json:"
cat "$AB_WORK/spec.json"; echo

# Old reports would mix with the new ones in the per-case listing.
rm -f "$AB_REPORTS"/index.json "$AB_REPORTS"/index.html "$AB_REPORTS"/*_case_*.json "$AB_REPORTS"/*_case_*.html

start_server smol "$AB_WORK/echo-smol" "$SMOL_ADDR"
start_server std "$AB_WORK/echo-std" "$STD_ADDR"
echo "conformance: eventum-smol PID $SMOL_PID on $SMOL_ADDR, eventum-std PID $STD_PID on $STD_ADDR"
wait_ready smol "$SMOL_PID" "$SMOL_ADDR"
wait_ready std "$STD_PID" "$STD_ADDR"

echo "conformance: running wstest -m fuzzingclient (log: $AB_WORK/wstest.log)"
start=$(date +%s)
status=0
# In the background so that a signal's trap runs at once (bash defers traps while a
# foreground command runs); the trap ends it too.
(cd "$AB_WORK" && exec timeout "$AB_TIMEOUT" "$AB_VENV/bin/wstest" -m fuzzingclient -s "$AB_WORK/spec.json") \
    >"$AB_WORK/wstest.log" 2>&1 &
WSTEST_PID=$!
wait "$WSTEST_PID" || status=$?
WSTEST_PID=""
elapsed=$(( $(date +%s) - start ))
echo "conformance: wstest finished in ${elapsed} s (exit $status)"

failed=0
if [ "$status" -ne 0 ]; then
    echo "conformance: wstest exited with $status; its last lines:" >&2
    tail -30 "$AB_WORK/wstest.log" >&2
    failed=1
fi
for s in "smol:$SMOL_PID" "std:$STD_PID"; do
    if ! kill -0 "${s#*:}" 2>/dev/null; then
        echo "conformance: the ${s%%:*} server (PID ${s#*:}) died during the run; its log:" >&2
        tail -30 "$AB_WORK/${s%%:*}.log" >&2
        failed=1
    fi
done
cleanup

# The summary, from the index and the per-case reports. The default case set (every
# group) is 517 cases; every run must report both agents with exactly the cases asked for.
if [ $# -eq 0 ]; then EXPECT_CASES=${AB_EXPECT_CASES:-517}; else EXPECT_CASES=${AB_EXPECT_CASES:-}; fi
"$PY" - "$AB_REPORTS" "$EXPECT_CASES" <<'EOF' || failed=1
from __future__ import print_function
import json, os, sys
from collections import defaultdict

reports = sys.argv[1]
expect = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
index_path = os.path.join(reports, "index.json")
if not os.path.exists(index_path):
    print("conformance: no %s: the suite produced no results" % index_path)
    sys.exit(1)
index = json.load(open(index_path))

COLS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# How Autobahn's own index.html colours the two columns: anything not listed here fails.
NOT_FAILED = {"OK", "NON-STRICT", "NO_CLOSE", "INFORMATIONAL", "UNIMPLEMENTED"}
CLOSE_FINE = {"OK", "INFORMATIONAL"}
CLOSE_NON_STRICT = {"WRONG CODE", "FAILED BY CLIENT"}

def key(case_id):
    return [int(p) for p in case_id.split(".")]

def verdict(c):
    """FAILED, NON-STRICT, or the case's own behavior."""
    b, bc = c["behavior"], c["behaviorClose"]
    if b == "UNIMPLEMENTED":
        return b  # counted as a failure below: permessage-deflate is implemented
    if b not in NOT_FAILED or (bc not in CLOSE_FINE and bc not in CLOSE_NON_STRICT):
        return "FAILED"
    if b in ("NON-STRICT", "NO_CLOSE") or bc in CLOSE_NON_STRICT:
        return "NON-STRICT"
    return b

def short(v, n=300):
    s = json.dumps(v)
    return s if len(s) <= n else s[:n] + "... (%d chars)" % len(s)

any_failed = False
for agent in ("eventum-smol", "eventum-std"):
    if agent not in index:
        print("conformance: agent %s reported no cases" % agent)
        any_failed = True
    elif expect is not None and len(index[agent]) != expect:
        print("conformance: agent %s reported %d cases, expected %d" % (agent, len(index[agent]), expect))
        any_failed = True
for agent in sorted(index):
    cases = index[agent]
    groups = defaultdict(lambda: dict((c, 0) for c in COLS))
    problems, infos = [], []
    dur = 0
    for cid in sorted(cases, key=key):
        c = cases[cid]
        v = verdict(c)
        groups[cid.split(".")[0]][v] += 1
        dur += c.get("duration") or 0
        if v in ("FAILED", "NON-STRICT"):
            problems.append((cid, v))
        elif v == "INFORMATIONAL":
            infos.append("%s (close %s)" % (cid, c.get("remoteCloseCode")))
    print()
    print("== %s: %d cases, %.1f s in cases" % (agent, len(cases), dur / 1000.0))
    print("%-6s %6s %6s %11s %14s %14s %7s" % ("group", "cases", "OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"))
    total = dict((c, 0) for c in COLS)
    for g in sorted(groups, key=int):
        row = groups[g]
        for c in COLS:
            total[c] += row[c]
        print("%-6s %6d %6d %11d %14d %14d %7d" % ((g, sum(row.values())) + tuple(row[c] for c in COLS)))
    print("%-6s %6d %6d %11d %14d %14d %7d" % (("total", sum(total.values())) + tuple(total[c] for c in COLS)))
    if infos:
        print("informational: " + ", ".join(infos))
    if total["UNIMPLEMENTED"]:
        print("conformance: %s left %d cases UNIMPLEMENTED (permessage-deflate not negotiated?)"
              % (agent, total["UNIMPLEMENTED"]))
        any_failed = True
    for cid, v in problems:
        if v == "FAILED":
            any_failed = True
        c = cases[cid]
        path = os.path.join(reports, c["reportfile"])
        r = json.load(open(path)) if os.path.exists(path) else {}
        print()
        print("-- %s %s %s (behavior %s, close %s)  %s" % (agent, cid, v, c["behavior"], c["behaviorClose"], path))
        print("   description: %s" % r.get("description"))
        print("   expectation: %s" % r.get("expectation"))
        print("   result:      %s" % r.get("result"))
        print("   close:       %s" % r.get("resultClose"))
        print("   expected:    %s" % short(r.get("expected")))
        print("   received:    %s" % short(r.get("received")))
        print("   server close code %s reason %s, clean %s%s" % (
            r.get("remoteCloseCode"), short(r.get("remoteCloseReason")), r.get("wasClean"),
            ", not clean because: %s" % r.get("wasNotCleanReason") if r.get("wasNotCleanReason") else ""))

print()
if any_failed:
    print("conformance: FAILED cases above (reports: %s/index.html)" % reports)
    sys.exit(1)
print("conformance: no case FAILED (reports: %s/index.html)" % reports)
EOF

if [ "$failed" -ne 0 ]; then
    echo "conformance: FAILED"
    exit 1
fi
echo "conformance: passed"
