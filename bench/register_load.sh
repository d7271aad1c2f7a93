#!/usr/bin/env bash
# REGISTER-load benchmark (not a test): SIPp registers USERS distinct users
# from an injection file at each RATE against one node; reports successful
# and failed registrations and the node's CPU per REGISTER.
#
#   bench/register_load.sh [RATES...]      (USERS, default 10 s worth per rate)
set -uo pipefail
cd "$(dirname "$0")/.."
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(500 1000 1500)
SECONDS_PER_STEP=${SECONDS_PER_STEP:-10}
HOST=127.0.3.9
TMP=$(mktemp -d)
PYTHONPATH=. .venv/bin/twistd -n --pidfile= --reactor=sipepoll --logfile="$TMP/node.log" sipcluster \
    --listen "udp:$HOST:5060" --node-id bench &
NODE=$!
trap 'kill $NODE 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
sleep 2
hz=$(getconf CLK_TCK)
for rate in "${RATES[@]}"; do
    users=$((rate * SECONDS_PER_STEP))
    { echo SEQUENTIAL; for i in $(seq 1 "$users"); do echo "u$rate-$i;6000;$HOST"; done; } > "$TMP/users.csv"
    before=$(awk '{print $14 + $15}' /proc/$NODE/stat)
    sipp -sf tests/integration/scenarios/register.xml "$HOST:5060" -i "$HOST" -p 5090 \
        -inf "$TMP/users.csv" -r "$rate" -m "$users" -l $((rate * 2)) -nostdin \
        -timeout $((SECONDS_PER_STEP * 3)) -trace_stat -stf "$TMP/stat.csv" -fd 1000 >/dev/null 2>&1
    after=$(awk '{print $14 + $15}' /proc/$NODE/stat)
    ok=$(tail -1 "$TMP/stat.csv" | awk -F';' '{print $16}')
    failed=$(tail -1 "$TMP/stat.csv" | awk -F';' '{print $18}')
    rm -f "$TMP/stat.csv"
    awk -v r="$rate" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { printf "REGISTER %5d/s  %6d ok  %4d failed  %7.1f us CPU/REGISTER\n", r, ok, f, (ok > 0 ? t / hz / ok * 1e6 : 0) }'
done
