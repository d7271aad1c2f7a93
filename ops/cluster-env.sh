# Sourced by ops/cluster-up and ops/cluster-down: the demo's addresses from
# the optional arguments BASE (first node's address, default 127.0.0.2) and
# PORT (SIP port, default 5060).
BASE=${1:-127.0.0.2}
PORT=${2:-5060}
if [[ $BASE =~ ^127\.([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
    prefix="127.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
    last=${BASH_REMATCH[3]}
else
    last=0
fi
if [ "$last" -lt 2 ] || [ "$last" -gt 252 ] || ! [[ $PORT =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [BASE [PORT]]: BASE a loopback address 127.x.y.z with 2 <= z <= 252" >&2
    exit 2
fi
HOSTS=("$prefix.$last" "$prefix.$((last + 1))" "$prefix.$((last + 2))")
ETCD_HOST="$prefix.$((last - 1))"
if [ "$BASE" = 127.0.0.2 ] && [ "$PORT" = 5060 ]; then
    RUN=run
else
    RUN=run/$BASE-$PORT
fi
