#!/usr/bin/env bash
# Plain TCP throughput through tlsnicd (host TUN -> daemon -> peer TUN, no hook) against a
# direct veth pair between two namespaces, side by side in one run (alternating), plus
# the daemon's CPU time per GB forwarded. Root only (77 otherwise). Only 198.18.0.0/15
# addresses; both paths' namespaces come from scripts/lib/testbed.sh.
#
# Usage: [TLSNICD_ARGS=--wire-segments] scripts/daemon-throughput.sh [MB per transfer (500)] [runs (3)] [build dir (build)]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/testbed.sh
. scripts/lib/testbed.sh
mb=${1:-500} runs=${2:-3} build=${3:-build}
tb_tlsnicd=$build/tests/integration/tlsnicd
[ -x "$build/tools/tlsnicd" ] && tb_tlsnicd=$build/tools/tlsnicd
xfer=$build/tests/integration/tlsnic-xfer
tb_require_root tun
[ -x "$tb_tlsnicd" ] && [ -x "$xfer" ] || { echo "build first ($tb_tlsnicd, $xfer)" >&2; exit 1; }

tb_workdir tlsnic-bench
work=$tb_work

# The direct path: a veth pair, 198.19.0.1 <-> 198.19.0.2.
veth_h="tlsnic-bench-$$-vh" veth_p="tlsnic-bench-$$-vp"
tb_veth_pair "$veth_h" "$veth_p"

# The daemon path.
tb_netns tlsnic-bench
# shellcheck disable=SC2086 # extra daemon options, e.g. TLSNICD_ARGS=--wire-segments
tb_daemon_start ${TLSNICD_ARGS:-}
daemon_pid=$tb_daemon_pid

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat"; }

one() { # host_ns peer_ns addr port -> prints mbit/s
  rm -f "$work/recv.err"
  tb_spawn "$2" "$xfer" recvraw "$3" "$4" 300 >/dev/null 2>"$work/recv.err"
  local rp=$!
  tb_wait_for "$work/recv.err" listening 5 || true
  tb_in "$1" "$xfer" sendraw "$3" "$4" $((mb * 1000 * 1000)) 300 | awk '{ print $10 }'
  wait "$rp"
}

bytes_total=0 ticks0=$(cpu_ticks)
declare -a veth_r daemon_r
for ((r = 0; r < runs; r++)); do
  veth_r+=("$(one "$veth_h" "$veth_p" 198.19.0.2 $((6000 + r)))")
  daemon_r+=("$(one "$tb_host_ns" "$tb_peer_ns" "$tb_peer_v4" $((7000 + r)))")
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
