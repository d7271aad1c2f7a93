#!/usr/bin/env bash
# Call-load benchmark (not a test): SIPp uac -> proxy -> SIPp uas on loopback,
# for a sipcluster node and Kamailio doing the same job in the same run.
#
#   bench/sipp_calls.sh [stateless|stateful|both|floor] [RATES...] [--workers N]
#       [--root DIR] [--no-kamailio]
#
# --root runs the sipcluster tree at DIR (an older commit checked out with
# git worktree) with this tree's .venv, so two commits are compared in one
# run; SIPCLUSTER_NO_EXTENSIONS=1 in the environment runs pure Python.  The
# build that ran is in each line's name.
#
# "floor" runs bench/twisted_floor.py, a Twisted relay that parses nothing,
# under the same load: the reactor and kernel part of the cost.
#
# For each proxy and rate it places a bounded number of calls
# (CALLS, default 10 s worth) and reports successful and failed calls and
# the proxy's CPU time per call (user+system of the proxy processes, from
# /proc), so the two proxies are compared on the same machine and load.
# Kamailio runs with one worker and the fm allocator (-x fm -X fm).
#
# WARMUP=S (seconds, default 0) first places S seconds of calls at the first
# rate, not measured, so that each proxy is measured in steady state: a
# stateful sipcluster node keeps a transaction 64*T1 = 32 s after its final
# response (RFC 3261 Timers J, K, L, M; RFC 6026) and Kamailio's tm 5 s
# (wt_timer), so a step shorter than that measures a proxy still filling its
# memory and never paying for ending its transactions.
set -uo pipefail
cd "$(dirname "$0")/.."
MODES=${1:-both}; shift || true
RATES=()
WORKERS=1
ROOT=$PWD
KAMAILIO=1
while [ $# -gt 0 ]; do
    case "$1" in
        --workers) WORKERS=$2; shift 2 ;;
        --root) ROOT=$(cd "$2" && pwd); shift 2 ;;
        --no-kamailio) KAMAILIO=0; shift ;;
        *) RATES+=("$1"); shift ;;
    esac
done
[ ${#RATES[@]} -gt 0 ] || RATES=(100 200 400)
SECONDS_PER_STEP=${SECONDS_PER_STEP:-10}
WARMUP=${WARMUP:-0}
HOST=127.0.3.1
# shellcheck source=bench/sipp_lib.sh
. bench/sipp_lib.sh

ticks() {  # CPU ticks (user+system) of a process and all its descendants
    local total=0 pid
    for pid in $(pids_of "$1"); do
        if [ -r /proc/$pid/stat ]; then
            total=$((total + $(awk '{print $14 + $15}' /proc/$pid/stat)))
        fi
    done
    echo $total
}

warm_up() {  # rate: WARMUP seconds of calls, not measured
    [ "$WARMUP" -gt 0 ] || return 0
    sipp -sn uac "$HOST:$UAS_PORT" -rsa "$HOST:$PROXY_PORT" -i "$HOST" -p $UAC_PORT \
        -r "$1" -m $(( $1 * WARMUP )) -l $(($1 * 4)) -nostdin -timeout $((WARMUP * 3)) \
        >/dev/null 2>&1
}

run_step() {  # name pid rate
    local name=$1 pid=$2 rate=$3 calls=$(( $3 * SECONDS_PER_STEP ))
    local before after ok failed
    before=$(ticks "$pid")
    sipp -sn uac "$HOST:$UAS_PORT" -rsa "$HOST:$PROXY_PORT" -i "$HOST" -p $UAC_PORT \
        -r "$rate" -m "$calls" -l $((rate * 4)) -nostdin -timeout $((SECONDS_PER_STEP * 3)) \
        -trace_stat -stf "$TMP/stat.csv" -fd 1000 >/dev/null 2>&1
    after=$(ticks "$pid")
    ok=$(tail -1 "$TMP/stat.csv" | awk -F';' '{print $16}')
    failed=$(tail -1 "$TMP/stat.csv" | awk -F';' '{print $18}')
    rm -f "$TMP/stat.csv"
    local hz; hz=$(getconf CLK_TCK)
    awk -v n="$name" -v r="$rate" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { printf "%-38s %5d cps  %6d ok  %4d failed  %8.1f us CPU/call\n", n, r, ok, f, (ok > 0 ? t / hz / ok * 1e6 : 0) }'
}

build_of() {  # the build the tree at ROOT runs, in one word
    (cd "$ROOT" && PYTHONPATH="$ROOT" "$OLDPWD/.venv/bin/python" -c '
try:
    from sipcluster import compiled
except ImportError:
    print("pure")  # a commit before the compiled build
else:
    print("compiled" if compiled.build().startswith("compiled") else "pure")')
}

bench_sipcluster() {  # mode
    local build; build=$(build_of)
    # The node's own reactor, as ops/run starts it (a tree from before it
    # existed runs on Twisted's default; REACTOR=default asks for that).
    local reactor=()
    [ -e "$ROOT/sipcluster/reactor.py" ] && [ "${REACTOR:-sipepoll}" = sipepoll ] && reactor=(--reactor=sipepoll)
    (cd "$ROOT" && PYTHONPATH="$ROOT" exec "$OLDPWD/.venv/bin/twistd" -n --pidfile= "${reactor[@]}" \
        --logfile="$TMP/node.log" sipcluster --mode "$1" \
        --listen "udp:$HOST:$PROXY_PORT" --workers "$WORKERS" --node-id bench) &
    local pid=$!
    PIDS+=("$pid")
    sleep 2
    warm_up "${RATES[0]}"
    for rate in "${RATES[@]}"; do run_step "sipcluster $1 w=$WORKERS $build" "$pid" "$rate"; done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

bench_kamailio() {  # mode
    kamailio -f "bench/kamailio/$1.cfg" -DD -E -x fm -X fm -l "udp:$HOST:$PROXY_PORT" \
        -m 256 -M 16 -w "$TMP" > "$TMP/kamailio.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    sleep 2
    warm_up "${RATES[0]}"
    for rate in "${RATES[@]}"; do run_step "kamailio $1" "$pid" "$rate"; done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

bench_floor() {
    PYTHONPATH=. .venv/bin/python bench/twisted_floor.py "$HOST" $PROXY_PORT $UAS_PORT $UAC_PORT &
    local pid=$!
    PIDS+=("$pid")
    sleep 1
    for rate in "${RATES[@]}"; do run_step "twisted relay (floor)" "$pid" "$rate"; done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

start_uas
if [ "$MODES" = floor ]; then bench_floor; exit 0; fi
for mode in stateless stateful; do
    if [ "$MODES" = both ] || [ "$MODES" = "$mode" ]; then
        bench_sipcluster "$mode"
        [ $KAMAILIO = 0 ] || bench_kamailio "$mode"
    fi
done
