#!/usr/bin/env bash
# CPU-time ratios to Kamailio from interleaved pairs (not a test).
#
#   bench/sipp_pairs.sh [PAIRS] [RATES...]     (default 5 pairs, 400 and 800)
#
# On a shared host CPU time per call moves by half from one run to the next
# (bench/RESULTS.md, the tenth rework), more than either proxy's changes.
# One bench/sipp_calls.sh round measures the node at every rate and then
# Kamailio: a minute or more apart.  Here each step is a pair, the node and
# Kamailio back to back at one mode and rate (bench/sipp_calls.sh MODE RATE),
# repeated PAIRS times with the modes and rates taken in turn, so that what
# the host does to one of a pair it mostly does to the other.  Each pair's
# ratio is printed as it comes, then per mode and rate the median, lowest
# and highest ratio.  SECONDS_PER_STEP and WARMUP are passed on (WARMUP=40
# measures a stateful node in steady state, its transactions ending as fast
# as they start); MODES="stateful" (default "stateless stateful") runs one.
set -uo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-5}; shift || true
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(400 800)
read -r -a MODE_LIST <<< "${MODES:-stateless stateful}"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for pair in $(seq "$PAIRS"); do
    for mode in "${MODE_LIST[@]}"; do
        for rate in "${RATES[@]}"; do
            bench/sipp_calls.sh "$mode" "$rate" 2>/dev/null | awk -v m="$mode" -v r="$rate" -v p="$pair" '
                / us CPU\/call/ { us = $(NF - 2); failed = $(NF - 4)
                                  if ($1 == "kamailio") { k = us; kf = failed } else { n = us; f = failed } }
                END { if (n > 0 && k > 0)
                          printf "pair %d %-9s %4d cps  node %7.1f us (%d failed)  kamailio %6.1f us (%d failed)  %.2fx\n", p, m, r, n, f, k, kf, n / k
                      else
                          printf "pair %d %-9s %4d cps  no measurement\n", p, m, r }' | tee -a "$OUT"
        done
    done
done
echo
awk '/x$/ { key = $3 " " $4; r[key] = r[key] " " substr($NF, 1, length($NF) - 1) }
     END { for (key in r) {
               n = split(substr(r[key], 2), v, " ")
               for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
               med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
               printf "%-9s cps  median %.2fx  lowest %.2fx  highest %.2fx  (%d pairs)\n", key, med, v[1], v[n], n } }' "$OUT" | sort -k1,1 -k2,2n
