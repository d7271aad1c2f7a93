# What the SIPp benchmarks share (sourced, not run): SIPp's UAS and UAC on
# HOST (set before sourcing), the proxy between them, the processes to stop
# and the temporary directory to remove on exit.
UAS_PORT=5070
UAC_PORT=5080
PROXY_PORT=5060
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    # The UAS ran in the background of SIPp's own (-bg), not as our child:
    # wait (5 s at most) until it has let its port go, or the next run's UAS
    # cannot bind it and every call of that run fails.
    for _ in $(seq 50); do
        [ -n "${UAS_PID:-}" ] && kill -0 "$UAS_PID" 2>/dev/null || break
        sleep 0.1
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

pids_of() {  # pid: it and all its descendants, one line
    pstree -p "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' | tr '\n' ' '
}

start_uas() {
    sipp -sn uas -i "$HOST" -p $UAS_PORT -nostdin -bg >/dev/null 2>&1
    sleep 0.5
    UAS_PID=$(pgrep -n -f "sipp -sn uas -i $HOST -p $UAS_PORT")
    PIDS+=("$UAS_PID")
}
