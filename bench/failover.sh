#!/usr/bin/env bash
# Failover-detection benchmark (not a test): against the demo cluster of
# ops/cluster-up, kill -9 one node and measure how long until the others'
# view (sipcluster status) no longer lists it, and, when it was the leader,
# until another node holds the leadership.  Restarts it afterwards.
#
#   ops/cluster-up && bench/failover.sh [node-b]     # node-a leads the demo cluster
set -uo pipefail
cd "$(dirname "$0")/.."
NODE=${1:-node-b}
if [ ! -f run/$NODE.pid ] || ! kill -0 "$(cat run/$NODE.pid)" 2>/dev/null; then
    echo "bench/failover.sh: $NODE is not running; start the demo cluster with ops/cluster-up" >&2
    exit 1
fi
leader() {
    .venv/bin/sipcluster leader --etcd http://127.0.0.1:2379 --json |
        .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['leader'] or '')"
}
was_leader=$( [ "$(leader)" = "$NODE" ] && echo yes || echo no )
pid=$(cat run/$NODE.pid)
kill -9 "$pid"
start=$(date +%s.%N)
gone="" led=""
while [ -z "$gone" ] || { [ "$was_leader" = yes ] && [ -z "$led" ]; }; do
    now=$(date +%s.%N)
    if [ -z "$gone" ] && ! .venv/bin/sipcluster status --etcd http://127.0.0.1:2379 --json |
          .venv/bin/python -c "import json,sys; sys.exit(0 if any(n['id'] == '$NODE' for n in json.load(sys.stdin)['nodes']) else 1)"; then
        gone=$now
    fi
    if [ "$was_leader" = yes ] && [ -z "$led" ]; then
        current=$(leader)
        if [ -n "$current" ] && [ "$current" != "$NODE" ]; then led=$now; fi
    fi
    sleep 0.05
done
awk -v s="$start" -v e="$gone" -v n="$NODE" 'BEGIN { printf "%s gone from the cluster %.2f s after kill -9 (node_ttl_s = 3)\n", n, e - s }'
if [ "$was_leader" = yes ]; then
    awk -v s="$start" -v e="$led" -v n="$(leader)" 'BEGIN { printf "%s leader %.2f s after the leader was killed\n", n, e - s }'
fi
rm -f run/$NODE.pid
ops/cluster-up >/dev/null 2>&1
