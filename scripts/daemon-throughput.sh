#!/usr/bin/env bash
# Plain TCP throughput through tlsnicd (host TUN -> daemon -> peer TUN, no hook) against a
# direct veth pair between two namespaces, side by side in one run (alternating), plus
# the daemon's CPU time per GB forwarded. Root only. Only 198.18.0.0/15 addresses.
#
# Usage: [TLSNICD_ARGS=--wire-segments] scripts/daemon-throughput.sh [MB per transfer (500)] [runs (3)] [build dir (build)]
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-500} runs=${2:-3} build=${3:-build}
tlsnicd=$build/tests/integration/tlsnicd
[ -x "$build/tools/tlsnicd" ] && tlsnicd=$build/tools/tlsnicd
xfer=$build/tests/integration/tlsnic-xfer
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
[ -x "$tlsnicd" ] && [ -x "$xfer" ] || { echo "build first ($tlsnicd, $xfer)" >&2; exit 1; }

prefix="tlsnic-bench-$$"
veth_h="$prefix-vh" veth_p="$prefix-vp"
work=$(mktemp -d /tmp/tlsnic-bench.XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  scripts/net.sh down "$prefix" || true
  ip netns del "$veth_h" 2>/dev/null || true
  ip netns del "$veth_p" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The direct path: a veth pair, 198.19.0.1 <-> 198.19.0.2.
ip netns add "$veth_h"; ip netns add "$veth_p"
ip -n "$veth_h" link set lo up; ip -n "$veth_p" link set lo up
ip -n "$veth_h" link add tb0 type veth peer name tb1 netns "$veth_p"
ip -n "$veth_h" addr add 198.19.0.1/24 dev tb0; ip -n "$veth_p" addr add 198.19.0.2/24 dev tb1
ip -n "$veth_h" link set tb0 up; ip -n "$veth_p" link set tb1 up

# The daemon path.
scripts/net.sh up "$prefix" >/dev/null
# shellcheck disable=SC2086 # extra daemon options, e.g. TLSNICD_ARGS=--wire-segments
"$tlsnicd" --host-ns "$prefix-host" --wire-ns "$prefix-peer" --ready-file "$work/ready" ${TLSNICD_ARGS:-} 2>"$work/daemon.log" &
daemon_pid=$!
for ((i = 0; i < 100; i++)); do [ -e "$work/ready" ] && break; sleep 0.1; done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat"; }

one() { # host_ns peer_ns addr port -> prints mbit/s
  ip netns exec "$2" "$xfer" recvraw "$3" "$4" 300 >/dev/null 2>"$work/recv.err" &
  local rp=$!
  for ((i = 0; i < 100; i++)); do grep -q listening "$work/recv.err" 2>/dev/null && break; sleep 0.05; done
  ip netns exec "$1" "$xfer" sendraw "$3" "$4" $((mb * 1000 * 1000)) 300 | awk '{ print $10 }'
  wait "$rp"
}

bytes_total=0 ticks0=$(cpu_ticks)
declare -a veth_r daemon_r
for ((r = 0; r < runs; r++)); do
  veth_r+=("$(one "$veth_h" "$veth_p" 198.19.0.2 $((6000 + r)))")
  daemon_r+=("$(one "$prefix-host" "$prefix-peer" 198.18.0.2 $((7000 + r)))")
  bytes_total=$((bytes_total + mb * 1000 * 1000))
done
ticks=$(( $(cpu_ticks) - ticks0 ))
hz=$(getconf CLK_TCK)
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "transfers: $runs x $mb MB, plain TCP, cubic, one flow"
echo "direct veth      Mbit/s: ${veth_r[*]}  (median $(median "${veth_r[@]}"))"
echo "through tlsnicd  Mbit/s: ${daemon_r[*]}  (median $(median "${daemon_r[@]}"))"
awk -v t="$ticks" -v hz="$hz" -v b="$bytes_total" \
  'BEGIN { printf "tlsnicd CPU: %.2f s for %.1f GB = %.2f s/GB\n", t / hz, b / 1e9, t / hz / (b / 1e9) }'
