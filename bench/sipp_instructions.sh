#!/usr/bin/env bash
# Instructions per call (not a test): SIPp uac -> proxy -> SIPp uas on
# loopback, each proxy run under valgrind's callgrind, for a sipcluster node
# and Kamailio doing the same job in the same run.
#
#   [PROFILE=DIR] bench/sipp_instructions.sh [stateless|stateful|both] [--calls N]
#       [--rate R] [--root DIR] [--no-kamailio]
#
# CPU time per call (bench/sipp_calls.sh) moves with the host: on a shared
# machine the same Kamailio run costs twice as much from one hour to the
# next.  Instructions do not.  Each proxy starts under callgrind, takes 50
# calls, has its counters zeroed (callgrind_control -z), takes N calls
# (default 1,000) at R a second (default 10: valgrind runs a node some 50
# times slower), and its instructions are read (callgrind_control -e Ir,
# summed over Kamailio's processes).  Everything the process runs in the
# meantime counts: parsing, the reactor, the system call wrappers, the
# timers; not the kernel's side of the system calls.
#
# --root runs the sipcluster tree at DIR (an older commit checked out with
# git worktree) with this tree's .venv.  Kamailio: one worker, fm allocator
# (-x fm -X fm), the configurations of bench/kamailio/.
set -uo pipefail
cd "$(dirname "$0")/.."
MODES=${1:-both}; shift || true
CALLS=1000
RATE=10
ROOT=$PWD
KAMAILIO=1
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) CALLS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --root) ROOT=$(cd "$2" && pwd); shift 2 ;;
        --no-kamailio) KAMAILIO=0; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
HOST=127.0.3.2
# shellcheck source=bench/sipp_lib.sh
. bench/sipp_lib.sh

calls() {  # count: place COUNT calls at RATE; prints "ok failed"
    sipp -sn uac "$HOST:$UAS_PORT" -rsa "$HOST:$PROXY_PORT" -i "$HOST" -p $UAC_PORT \
        -r "$RATE" -m "$1" -l $((RATE * 4)) -nostdin -timeout $(($1 / RATE * 3 + 60)) \
        -trace_stat -stf "$TMP/stat.csv" -fd 1000 >/dev/null 2>&1
    tail -1 "$TMP/stat.csv" | awk -F';' '{print $16, $18}'
    rm -f "$TMP/stat.csv"
}

instructions() {  # pid: Ir counted since the last zeroing, summed over its processes
    # shellcheck disable=SC2046
    callgrind_control -e Ir $(pids_of "$1") 2>/dev/null | awk '/^ *Th [0-9]+ / {gsub(",", "", $3); s += $3} END {printf "%.0f\n", s}'
}

zero() {  # pid and its processes
    # shellcheck disable=SC2046
    callgrind_control -z $(pids_of "$1") >/dev/null 2>&1
}

wait_ready() {  # pid: until the proxy's UDP port is bound, and 2 s more (120 s at most)
    for _ in $(seq 240); do
        if ss -lun | grep -q "$HOST:$PROXY_PORT "; then sleep 2; return 0; fi
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

measure() {  # name pid
    local name=$1 pid=$2 result ir
    wait_ready "$pid" || { echo "$name: did not start" >&2; return 1; }
    calls 50 >/dev/null
    zero "$pid"
    result=$(calls "$CALLS")
    ir=$(instructions "$pid")
    # shellcheck disable=SC2086
    set -- $result
    awk -v n="$name" -v ok="$1" -v f="$2" -v ir="$ir" \
        'BEGIN { printf "%-38s %6d ok  %4d failed  %12.0f instructions/call\n", n, ok, f, (ok > 0 ? ir / ok : 0) }'
}

# PROFILE=DIR keeps each process's profile of what it ran after the
# zeroing (DIR/callgrind.PID, for callgrind_annotate).
if [ -n "${PROFILE:-}" ]; then mkdir -p "$PROFILE"; OUT="$(cd "$PROFILE" && pwd)/callgrind.%p"; else OUT=/dev/null; fi
VALGRIND=(valgrind --tool=callgrind "--callgrind-out-file=$OUT" --trace-children=yes)

bench_sipcluster() {  # mode
    local reactor=()
    [ -e "$ROOT/sipcluster/reactor.py" ] && reactor=(--reactor=sipepoll)
    (cd "$ROOT" && PYTHONPATH="$ROOT" exec "${VALGRIND[@]}" "$OLDPWD/.venv/bin/python" \
        "$OLDPWD/.venv/bin/twistd" -n --pidfile= "${reactor[@]}" --logfile="$TMP/node.log" \
        sipcluster --mode "$1" --listen "udp:$HOST:$PROXY_PORT" --workers 1 --node-id bench) \
        >"$TMP/valgrind.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    measure "sipcluster $1 $(git -C "$ROOT" rev-parse --short HEAD)" "$pid"
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

bench_kamailio() {  # mode
    "${VALGRIND[@]}" kamailio -f "bench/kamailio/$1.cfg" -DD -E -x fm -X fm \
        -l "udp:$HOST:$PROXY_PORT" -m 256 -M 16 -w "$TMP" > "$TMP/kamailio.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    measure "kamailio $1" "$pid"
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

start_uas
for mode in stateless stateful; do
    if [ "$MODES" = both ] || [ "$MODES" = "$mode" ]; then
        bench_sipcluster "$mode"
        [ $KAMAILIO = 0 ] || bench_kamailio "$mode"
    fi
done
