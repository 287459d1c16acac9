#!/usr/bin/env bash
# The host-CPU accounting of `tlsnic bench` sees the work the host's kernel does in softirq,
# which the sender's getrusage does not: 2 s of plain TCP through tlsnicd (the bench's
# setup: tlsnicd and the receiver on the device core, the sender on the host core), once
# with the host TUN's receive processing steered onto the host core (RPS, as the bench
# does) and once without. Checked with the steering on: the host core processed at least
# as many packets as the sender's socket received (its ACKs), it took RPS interrupts for
# them, and its busy time holds the sender's whole CPU time. Printed for both: the host
# core's busy time, the sender's exact CPU time, its getrusage, and where the ACKs were
# processed, so the difference is on record. No timing is judged.
#
#   accounting.sh BUILD_DIR        root only (77 otherwise); needs 2 CPUs (77 otherwise)
set -euo pipefail
build=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/lib/testbed.sh
. "$root/scripts/lib/testbed.sh"
tb_require_root tun
[ "$(nproc)" -ge 2 ] || { echo "SKIP: needs two CPUs"; exit 77; }
tb_tlsnicd=$build/tools/tlsnicd eval_bin=$build/bench/bench_eval
tb_daemon_wrapper=(taskset -c 0)
tb_workdir tlsnic-acct
work=$tb_work
tb_netns tlsnic-acct
tb_on_failure() { tb_show_log "$work/recv.err" "$work/send.err"; }
fail() { echo "FAIL: $*"; exit 1; }

tb_daemon_start
tb_spawn peer taskset -c 0 "$eval_bin" recv --addr "$tb_peer_v4" --port 5201 --timeout 120 \
  >"$work/recv.out" 2>"$work/recv.err"
recv_pid=$!
tb_wait_for "$work/recv.err" listening 10

run() { # LABEL: one 2 s plain-TCP sample into $work/LABEL.jsonl
  tb_in host taskset -c 1 "$eval_bin" send --addr "$tb_peer_v4" --port 5201 --scenarios tcp \
    --sizes 16384 --seconds 2 --rounds 1 --cc cubic --host-cpu 1 --device-cpu 0 \
    --daemon-pid "$tb_daemon_pid" --recv-pid "$recv_pid" --json "$work/$1.jsonl" --timeout 60 \
    2>>"$work/send.err" || fail "sender failed ($1)"
}
tb_steer_rx host 1 || fail "could not steer the host TUN's receive processing"
run steered
tb_steer_rx host -1 || fail "could not turn the steering off"
run unsteered

show() {
  jq -r --arg l "$1" '"\($l): host core busy \(.host.busy_s * 1000 | floor) ms (softirq ticks \(.host.softirq_s * 1000 | floor) ms), sender exact \(.proc_s * 1000 | floor) ms, getrusage \((.user_s + .sys_s) * 1000 | floor) ms; ACKs received \(.segs_in), packets processed on host core \(.host.packets) (RPS interrupts \(.host.rps_ipis)), on device core \(.devcore.packets)"' "$work/$1.jsonl"
}
show steered
show unsteered

s=$work/steered.jsonl
jq -e '.ok and .wall_s >= 1.9 and .host.cpu == 1 and .devcore.cpu == 0' "$s" >/dev/null \
  || fail "the steered sample did not run its 2 s on the expected cores"
jq -e '.segs_in > 100 and .host.packets >= 0.9 * .segs_in' "$s" >/dev/null \
  || fail "with RPS on, the host core did not process the ACKs the sender received"
jq -e '.host.rps_ipis > 0' "$s" >/dev/null || fail "with RPS on, the host core took no RPS interrupt"
# Exact idle (ns) on the host core: its busy time holds all of the sender's CPU time.
jq -e '.host.precise == 1 and .host.busy_s >= 0.99 * .proc_s' "$s" >/dev/null \
  || fail "the host core's busy time does not hold the sender's CPU time"
echo "PASS: with the host's receive processing steered, the host core accounts $(jq -r \
  '((.host.busy_s - (.user_s + .sys_s)) * 1000 | floor)' "$s") ms more than the sender's getrusage over 2 s"
