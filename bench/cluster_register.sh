#!/usr/bin/env bash
# Cluster REGISTER benchmark (not a test): against the demo cluster of
# ops/cluster-up (nodes 127.0.0.2-4, etcd 127.0.0.1:2379), one SIPp per node
# registers distinct users at RATE/3 each for SECONDS; then every binding
# is looked for in etcd.
#
#   ops/cluster-up && bench/cluster_register.sh [RATE] [SECONDS]; ops/cluster-down
set -uo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1200}
SECONDS_RUN=${2:-10}
PER_NODE=$((RATE / 3))
CALLS=$((PER_NODE * SECONDS_RUN))
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run=$(date +%s)
pids=()
for i in 2 3 4; do
    { echo SEQUENTIAL; for n in $(seq 1 "$CALLS"); do echo "b$run-$i-$n;6000;example.test"; done; } > "$TMP/users$i.csv"
    sipp -sf tests/integration/scenarios/register.xml "127.0.0.$i:5060" -i 127.0.0.$i -p 5190 \
        -inf "$TMP/users$i.csv" -r "$PER_NODE" -m "$CALLS" -l $((PER_NODE * 4)) -nostdin \
        -timeout $((SECONDS_RUN * 4)) -trace_stat -stf "$TMP/stat$i.csv" -fd 1000 >/dev/null 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
ok=0; failed=0
for i in 2 3 4; do
    ok=$((ok + $(tail -1 "$TMP/stat$i.csv" | awk -F';' '{print $16}')))
    failed=$((failed + $(tail -1 "$TMP/stat$i.csv" | awk -F';' '{print $18}')))
done
stored=$(.venv/bin/sipcluster registrations --etcd http://127.0.0.1:2379 --json --timeout 30 |
         .venv/bin/python -c "import json,sys; print(sum(1 for r in json.load(sys.stdin) if r['aor'].startswith('sip:b$run-')))")
echo "REGISTER across 3 nodes at $RATE/s for ${SECONDS_RUN}s: $ok ok, $failed failed, $stored of $((CALLS * 3)) bindings in etcd"
