#!/usr/bin/env bash
# Digest REGISTER benchmark (not a test), in one run: SIPp registers
# distinct AORs answering each 401 (a challenge and an authenticated
# REGISTER per registration, MD5 since SIPp 3.6 computes no other) at each
# RATE for SECONDS_PER_STEP, against
#   - one sipcluster node (users file, ops/examples/auth.toml's settings),
#   - a three-node sipcluster cluster on a real etcd (users in etcd),
#   - Kamailio 5.6 (auth + auth_db, users in db_text files, usrloc in memory);
# each sipcluster case also without authentication (one REGISTER per
# registration); then SIPp calls through one node with and without
# authentication, for the extra CPU an authenticated call costs.  Reports registrations ok and
# failed and the CPU (user+system, from /proc) per registration or call.
#
#   bench/register_auth.sh [RATES...]        (default 300 600 900)
set -uo pipefail
cd "$(dirname "$0")/.."
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(300 600 900)
SECONDS_PER_STEP=${SECONDS_PER_STEP:-10}
CALL_RATE=${CALL_RATE:-100}
NET=127.0.3
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)
max=0; for r in "${RATES[@]}"; do [ "$r" -gt "$max" ] && max=$r; done
USERS=${USERS:-10000}

ticks() {  # CPU ticks of the given PIDs
    local total=0 pid
    for pid in "$@"; do
        [ -r /proc/$pid/stat ] && total=$((total + $(awk '{print $14 + $15}' /proc/$pid/stat)))
    done
    echo $total
}

# -- the users: the same names and passwords for every server -------------------
PYTHONPATH=. .venv/bin/python - "$TMP" "$USERS" <<'PY'
import os, sys
from sipcluster.policy.users import make_record, write_users_file
from sipcluster.policy import digest
tmp, n = sys.argv[1], int(sys.argv[2])
users = {"b%d" % i: "bench-Passw0rd-%d-xq" % i for i in range(n)}
users["alice"] = "sip-demo-Plover-7319"  # the caller of uac_auth_call.xml
write_users_file(os.path.join(tmp, "users.json"),
                 {u: make_record(u, "example.test", p, ["MD5"]) for u, p in users.items()})
os.mkdir(os.path.join(tmp, "kamdb"))
with open(os.path.join(tmp, "kamdb", "subscriber"), "w") as f:
    f.write("id(int,auto) username(string) domain(string) ha1(string)\n")
    for i, (u, p) in enumerate(users.items(), 1):
        f.write("%d:%s:example.test:%s\n" % (i, u, digest.ha1("MD5", u, "example.test", p)))
with open(os.path.join(tmp, "kamdb", "version"), "w") as f:
    f.write("table_name(string) table_version(int)\nsubscriber:7\n")
PY
cat > "$TMP/node.toml" <<TOML
[sip]
domains = ["example.test"]
[auth]
enabled = true
realm = "example.test"
algorithms = ["MD5"]
users_file = "users.json"
check_identity = false
TOML
cat > "$TMP/cluster.toml" <<TOML
[sip]
domains = ["example.test"]
[auth]
enabled = true
realm = "example.test"
algorithms = ["MD5"]
check_identity = false
TOML

node() {  # host config [args...]: a twistd node in the background; its PID in NODE
    local host=$1 config=$2; shift 2
    PYTHONPATH=. .venv/bin/twistd -n --pidfile= --reactor=sipepoll --logfile="$TMP/node-$host.log" sipcluster \
        --config "$config" --listen "udp:$host:5060" --node-id "bench-$host" "$@" &
    NODE=$!
    PIDS+=("$NODE")
}

register_step() {  # name rate "host..." "pid..." [open]
    # Distinct AORs (an injection file per SIPp), one digest user for all:
    # SIPp 3.6 takes the digest user only from -au (its [authentication
    # username=[field0]] does not parse), so the AOR-identity check is off
    # on both servers (auth.check_identity, auth_check flags 0).  The
    # digest work per REGISTER is the same whoever the user is: one
    # lookup in a table of USERS users and the same hashes.
    local name=$1 rate=$2 hosts=($3) pids=($4) n=${#hosts[@]} open=${5:-}
    local per=$(( rate / n )) calls before after ok=0 failed=0 i
    calls=$((per * SECONDS_PER_STEP))
    STEP=$((STEP + 1))
    local sp=()
    for i in $(seq 0 $((n - 1))); do
        if [ -n "$open" ]; then  # register.xml: user;contact port;domain
            { echo SEQUENTIAL; for u in $(seq 1 "$calls"); do echo "r$STEP-$i-$u;6000;example.test"; done; } \
                > "$TMP/aors$i.csv"
        else
            { echo SEQUENTIAL; for u in $(seq 1 "$calls"); do echo "r$STEP-$i-$u;example.test"; done; } \
                > "$TMP/aors$i.csv"
        fi
    done
    local t0; t0=$(date +%s.%N)
    before=$(ticks "${pids[@]}")
    for i in $(seq 0 $((n - 1))); do
        local scenario=(-sf bench/register_auth.xml -au b1 -ap bench-Passw0rd-1-xq)
        [ -n "$open" ] && scenario=(-sf tests/integration/scenarios/register.xml)
        sipp "${scenario[@]}" "${hosts[$i]}:5060" -i "${hosts[$i]}" -p $((5090 + i)) \
            -inf "$TMP/aors$i.csv" \
            -r "$per" -m "$calls" -l $((per * 4)) -nostdin -timeout $((SECONDS_PER_STEP * 4)) \
            -trace_stat -stf "$TMP/stat$i.csv" -fd 1000 >/dev/null 2>&1 &
        sp+=($!)
    done
    for p in "${sp[@]}"; do wait "$p"; done
    after=$(ticks "${pids[@]}")
    local wall; wall=$(echo "$(date +%s.%N) - $t0" | bc)
    for i in $(seq 0 $((n - 1))); do
        ok=$((ok + $(tail -1 "$TMP/stat$i.csv" | awk -F';' '{print $16}')))
        failed=$((failed + $(tail -1 "$TMP/stat$i.csv" | awk -F';' '{print $18}')))
        rm -f "$TMP/stat$i.csv"
    done
    awk -v n="$name" -v r="$rate" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$hz" \
        -v s="$wall" \
        'BEGIN { printf "%-20s %5d reg/s offered  %6d ok in %5.1f s (%5.0f/s)  %5d failed  %6.1f us CPU/registration\n", n, r, ok, s, ok / s, f, (ok > 0 ? t / hz / ok * 1e6 : 0) }'
}
STEP=0

# -- one sipcluster node --------------------------------------------------------------
cp "$TMP/node.toml" "$TMP/single.toml"
node $NET.30 "$TMP/single.toml"
single=$NODE
sleep 3
for rate in "${RATES[@]}"; do register_step "sipcluster 1 node" "$rate" "$NET.30" "$single"; done
kill "$single"; wait "$single" 2>/dev/null
printf '[sip]\ndomains = ["example.test"]\n' > "$TMP/open.toml"
node $NET.30 "$TMP/open.toml"
single=$NODE
sleep 3
for rate in "${RATES[@]}"; do
    register_step "  same, no auth" "$rate" "$NET.30" "$single" open
done
kill "$single"; wait "$single" 2>/dev/null

# -- three nodes on etcd -------------------------------------------------------------------
etcd --name bench --data-dir "$TMP/etcd" --listen-client-urls http://$NET.40:2379 \
    --advertise-client-urls http://$NET.40:2379 --listen-peer-urls http://$NET.40:2380 \
    --initial-advertise-peer-urls http://$NET.40:2380 --initial-cluster bench=http://$NET.40:2380 \
    --log-level error > "$TMP/etcd.log" 2>&1 &
ETCD=$!
PIDS+=("$ETCD")
sleep 2
PYTHONPATH=. .venv/bin/python -m sipcluster.cli user import "$TMP/users.json" --etcd http://$NET.40:2379 --timeout 30 >/dev/null
cluster_pids=()
for h in 41 42 43; do
    node $NET.$h "$TMP/cluster.toml" --store etcd --etcd http://$NET.40:2379 --domain example.test
    cluster_pids+=("$NODE")
done
sleep 4
idle0=$(ticks "${cluster_pids[@]}")
sleep 10
idle1=$(ticks "${cluster_pids[@]}")
echo "  (3 idle cluster nodes: $(awk -v t=$((idle1 - idle0)) -v hz=$hz 'BEGIN{printf "%.0f ms CPU per second", t/hz*100}'))"
for rate in "${RATES[@]}"; do
    register_step "sipcluster 3 nodes" "$rate" "$NET.41 $NET.42 $NET.43" "${cluster_pids[*]}"
done
for p in "${cluster_pids[@]}"; do kill "$p"; done
for p in "${cluster_pids[@]}"; do wait "$p" 2>/dev/null; done
cluster_pids=()
for h in 41 42 43; do
    node $NET.$h "$TMP/open.toml" --store etcd --etcd http://$NET.40:2379 --domain example.test
    cluster_pids+=("$NODE")
done
sleep 4
for rate in "${RATES[@]}"; do
    register_step "  same, no auth" "$rate" "$NET.41 $NET.42 $NET.43" "${cluster_pids[*]}" open
done
echo "  (etcd's own CPU over the cluster runs: $(awk -v t=$(ticks $ETCD) -v hz=$hz 'BEGIN{printf "%.1f s", t/hz}'))"
for p in "${cluster_pids[@]}"; do kill "$p"; done
for p in "${cluster_pids[@]}"; do wait "$p" 2>/dev/null; done
kill "$ETCD"; wait "$ETCD" 2>/dev/null

# -- Kamailio ----------------------------------------------------------------------------------
sed -e "s|DBURL|text://$TMP/kamdb|" -e 's|auth_check("$td", "subscriber", "1")|auth_check("$td", "subscriber", "0")|' \
    bench/kamailio/register_auth.cfg > "$TMP/kamailio.cfg"
kamailio -f "$TMP/kamailio.cfg" -DD -E -x fm -X fm -l "udp:$NET.31:5060" -m 256 -M 16 \
    -w "$TMP" > "$TMP/kamailio.log" 2>&1 &
KAM=$!
PIDS+=("$KAM")
sleep 3
kam_pids() { pstree -p "$KAM" | grep -o '([0-9]*)' | tr -d '()' | tr '\n' ' '; }
for rate in "${RATES[@]}"; do register_step "kamailio auth_db" "$rate" "$NET.31" "$(kam_pids)"; done
kill "$KAM"; wait "$KAM" 2>/dev/null

# -- the extra CPU of an authenticated call ---------------------------------------------
sipp -sn uas -i $NET.32 -p 5070 -nostdin -bg >/dev/null 2>&1
sleep 0.5
UAS=$(pgrep -n -f "sipp -sn uas -i $NET.32 -p 5070")
PIDS+=("$UAS")
calls=$((CALL_RATE * SECONDS_PER_STEP))
call_step() {  # name node-pid sipp-args...
    local name=$1 pid=$2; shift 2
    local before after ok failed
    before=$(ticks "$pid")
    sipp "$@" $NET.32:5070 -rsa $NET.33:5060 -i $NET.32 -p 5080 -r "$CALL_RATE" -m "$calls" \
        -l $((CALL_RATE * 4)) -nostdin -timeout $((SECONDS_PER_STEP * 3)) -trace_stat \
        -stf "$TMP/calls.csv" -fd 1000 >/dev/null 2>&1
    after=$(ticks "$pid")
    ok=$(tail -1 "$TMP/calls.csv" | awk -F';' '{print $16}')
    failed=$(tail -1 "$TMP/calls.csv" | awk -F';' '{print $18}')
    rm -f "$TMP/calls.csv"
    awk -v n="$name" -v r="$CALL_RATE" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$hz" \
        'BEGIN { printf "%-30s %4d cps  %6d ok  %4d failed  %7.1f us CPU/call\n", n, r, ok, f, (ok > 0 ? t / hz / ok * 1e6 : 0) }'
}
node $NET.33 "$TMP/open.toml"
sleep 3
call_step "calls, no authentication" "$NODE" -sn uac
kill "$NODE"; wait "$NODE" 2>/dev/null
node $NET.33 "$TMP/single.toml"
sleep 3
call_step "calls, digest (407 + retry)" "$NODE" -sf tests/integration/scenarios/uac_auth_call.xml \
    -au alice -ap sip-demo-Plover-7319 -s bob
kill "$NODE"; wait "$NODE" 2>/dev/null
