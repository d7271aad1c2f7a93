#!/usr/bin/env bash
# Load-balancer benchmark (not a test): SIPp uac -> balancer -> three SIPp
# uas (bench/sipp/uas_probed.xml, answering the balancer's OPTIONS too),
# on loopback, for a sipcluster node running ops/examples/loadbalancer.toml
# and Kamailio's dispatcher doing the same (bench/kamailio/dispatcher.cfg:
# round robin, OPTIONS every second, failover on 503 and a 2 s fr_timer),
# in the same run.
#
#   bench/lb_calls.sh [RATES...]          (default 100 200 400)
#
# For each balancer and rate: calls placed (CALLS = rate * SECONDS_PER_STEP),
# successful and failed calls, the balancer's CPU time per call (user+system
# from /proc), and how the calls were spread over the three destinations
# (SIPp's TotalCallCreated of each: the calls plus about one probe a second).
set -uo pipefail
cd "$(dirname "$0")/.."
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(100 200 400)
SECONDS_PER_STEP=${SECONDS_PER_STEP:-10}
HOST=127.0.9.1
DESTS=(127.0.9.51 127.0.9.52 127.0.9.53)
UAC_PORT=5080
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

ticks() {  # CPU ticks (user+system) of a process and all its descendants
    local total=0 pid
    for pid in $(pstree -p "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()'); do
        if [ -r /proc/$pid/stat ]; then
            total=$((total + $(awk '{print $14 + $15}' /proc/$pid/stat)))
        fi
    done
    echo $total
}

uas_calls() {  # "calls" (INVITEs and probes) each destination took so far, from its stats
    local out="" d
    sleep 1.2  # the stats are written every second
    for d in "${DESTS[@]}"; do
        out+="$(tail -1 "$TMP/uas-$d.csv" 2>/dev/null | awk -F';' '{print $13}') "
    done
    echo "$out"
}

run_step() {  # name pid rate
    local name=$1 pid=$2 rate=$3 calls=$(( $3 * SECONDS_PER_STEP ))
    local before after ok failed spread_before spread_after
    spread_before=($(uas_calls))
    before=$(ticks "$pid")
    # Bounded in time: SIPp's own -timeout did not always end a step that
    # lost calls; statistics every second so that the last line counts.
    timeout -k 5 $((SECONDS_PER_STEP * 3 + 10)) \
    sipp -sf bench/sipp/uac_lb.xml "$HOST:5060" -s service -i "$HOST" -p $UAC_PORT \
        -r "$rate" -m "$calls" -l $((rate * 4)) -nostdin -timeout $((SECONDS_PER_STEP * 3)) \
        -trace_stat -stf "$TMP/stat.csv" -fd 1 >/dev/null 2>&1
    after=$(ticks "$pid")
    spread_after=($(uas_calls))
    ok=$(tail -1 "$TMP/stat.csv" | awk -F';' '{print $16}')
    failed=$(tail -1 "$TMP/stat.csv" | awk -F';' '{print $18}')
    rm -f "$TMP/stat.csv"
    local hz spread="" i
    hz=$(getconf CLK_TCK)
    for i in 0 1 2; do spread+="$(( ${spread_after[$i]:-0} - ${spread_before[$i]:-0} ))/"; done
    awk -v n="$name" -v r="$rate" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$hz" \
        -v s="${spread%/}" \
        'BEGIN { printf "%-22s %5d cps  %6d ok  %4d failed  %8.1f us CPU/call  spread %s\n", n, r, ok, f, (ok > 0 ? t / hz / ok * 1e6 : 0), s }'
}

declare -A UAS
for d in "${DESTS[@]}"; do
    # (In $TMP: a SIPp in the background writes its screen there.)
    (cd "$TMP" && sipp -sf "$OLDPWD/bench/sipp/uas_probed.xml" -i "$d" -p 5060 -nostdin -bg \
        -trace_stat -stf "$TMP/uas-$d.csv" -fd 1 >/dev/null 2>&1)
    sleep 0.3
    UAS[$d]=$(pgrep -n -f "bench/sipp/uas_probed.xml -i $d -p 5060")
    PIDS+=("${UAS[$d]}")
done

# sipcluster: the shipped example, its destinations and domain moved here.
sed -e "s/127\.0\.0\.5\([123]\)/127.0.9.5\1/g" -e "s/domain = \"lb.test\"/domain = \"$HOST\"/" \
    ops/examples/loadbalancer.toml > "$TMP/lb.toml"
PYTHONPATH=. .venv/bin/twistd -n --pidfile= --reactor=sipepoll --logfile="$TMP/node.log" sipcluster \
    --config "$TMP/lb.toml" --listen "udp:$HOST:5060" --node-id bench-lb &
pid=$!
PIDS+=("$pid")
sleep 3
for rate in "${RATES[@]}"; do run_step "sipcluster lb" "$pid" "$rate"; done
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null

for d in "${DESTS[@]}"; do echo "1 sip:$d:5060 0 0"; done > "$TMP/dispatcher.list"
kamailio -f bench/kamailio/dispatcher.cfg -A "DSLIST=\"$TMP/dispatcher.list\"" -DD -E -x fm -X fm \
    -l "udp:$HOST:5060" -m 256 -M 16 -w "$TMP" > "$TMP/kamailio.log" 2>&1 &
pid=$!
PIDS+=("$pid")
sleep 3
for rate in "${RATES[@]}"; do run_step "kamailio dispatcher" "$pid" "$rate"; done
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
grep -i "error" "$TMP/kamailio.log" | head -5
