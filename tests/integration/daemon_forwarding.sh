#!/usr/bin/env bash
# tlsnicd forwards real TCP between two namespaces, byte-exact, with TSO super-frames,
# and its captures are readable by tshark.
#
#   daemon_forwarding.sh MODE TLSNICD XFER NET_SH
#
#   plain        20 MB over IPv4, no faults: sha256 equal at both ends, TSO frames seen,
#                the pcap files hold exactly the frames the daemon counted.
#   faults       20 MB over IPv4 with 2 % loss, 2 % reordering, 0.5 % duplication
#                (seeded): sha256 equal, and the sender's kernel retransmitted (nstat
#                TcpRetransSegs > 0).
#   ipv6         20 MB over IPv6: sha256 equal, TSO frames seen.
#   segmented    20 MB with --wire-segments and 2 % loss + 2 % reordering: super-frames
#                are cut into MSS segments on the wire (no wire frame above the 1500-byte
#                MTU in the capture), single segments are lost, sha256 equal.
#   hook_partial 20 MB through the XOR test hook, frames left CHECKSUM_PARTIAL: the peer
#                receives exactly the XORed stream.
#   hook_full    the same, with complete checksums computed for non-GSO frames.
#   hook_stale   negative control: rewritten frames with stale checksums must be dropped
#                by the peer (TcpInCsumErrors > 0, the transfer does not complete).
#   restart      200 MB; tlsnicd is SIGKILLed mid-transfer and restarted: sha256 equal.
#   restart_offloaded
#                the same with the sender's flow offloaded (ctl add) and a state file:
#                the restarted daemon fences the flow and drops its payload
#                (to_wire_fence_drops > 0) until the sender re-adds it (1.5 s after the
#                daemon went away), then the transfer completes byte-exact.
#
# Needs root (namespaces, TUN): exits 77 (skipped) without it. Runs in namespaces of its
# own (prefix with the pid), so instances run in parallel; everything is removed on exit.
set -euo pipefail

mode=$1 tb_tlsnicd=$2 xfer=$3 net_sh=$4
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
bytes=$((20 * 1000 * 1000))
xfer_timeout=120
case "$mode" in
  restart | restart_offloaded) bytes=$((200 * 1000 * 1000)) ;;
  hook_stale) bytes=$((2 * 1000 * 1000)) xfer_timeout=5 ;;
esac

tb_require_root tun
tb_workdir tlsnic-it
work=$tb_work
tb_netns "tlsnic-it-$mode"

fail() { echo "FAIL: $*"; exit 1; }

counter() { # name, from a stats dump
  awk -v k="$1" '$1 == k { print $2 }' "$2"
}

daemon_args=(--pcap-host "$work/host.pcap" --pcap-wire "$work/wire.pcap"
  --stats-file "$work/final-stats")
case "$mode" in
  faults) daemon_args+=(--loss 0.02 --reorder 0.02 --dup 0.005 --seed 42) ;;
  segmented) daemon_args+=(--wire-segments --loss 0.02 --reorder 0.02 --seed 42) ;;
  hook_partial) daemon_args+=(--test-hook xor) ;;
  hook_full) daemon_args+=(--test-hook xor-fullcsum) ;;
  hook_stale) daemon_args+=(--test-hook xor-stalecsum) ;;
  # The flow carries no TLS records: the flow table stands in for the device.
  restart_offloaded) daemon_args+=(--state-file "$work/state" --device table) ;;
esac
sender_env=()
if [ "$mode" = restart_offloaded ]; then
  sender_env=(XFER_CTL="$tb_ctl" XFER_READD_DELAY_MS=1500)
fi
tb_daemon_start "${daemon_args[@]}"

case "$mode" in
  ipv6) peer_addr=$tb_peer_v6 ;;
  *) peer_addr=$tb_peer_v4 ;;
esac

tb_spawn peer "$xfer" recv "$peer_addr" 5001 "$xfer_timeout" >"$work/recv.out" 2>"$work/recv.err"
recv_pid=$!
tb_wait_for "$work/recv.err" listening 10

tb_in host nstat -n # reset the counter history: the next nstat shows deltas
tb_in peer nstat -n
tb_spawn host env "${sender_env[@]}" "$xfer" send "$peer_addr" 5001 "$bytes" "$xfer_timeout" \
  >"$work/send.out" 2>"$work/send.err"
send_pid=$!

if [ "$mode" = restart ] || [ "$mode" = restart_offloaded ]; then
  # SIGKILL once 20 MB have crossed, restart at once on the same TUNs and socket path.
  tb_wait_counter to_wire_bytes 20000000 30 "$work/stats" || true
  tb_daemon_kill
  echo "tlsnicd killed after $(counter to_wire_bytes "$work/stats") bytes; restarting"
  tb_daemon_start "${daemon_args[@]}"
fi

if [ "$mode" = hook_stale ]; then
  if wait "$send_pid"; then fail "the transfer completed with stale checksums"; fi
  wait "$recv_pid" 2>/dev/null || true
  tb_in peer nstat -z TcpInCsumErrors >"$work/nstat.peer"
  cat "$work/nstat.peer"
  csum_errors=$(awk '$1 == "TcpInCsumErrors" { print $2 }' "$work/nstat.peer")
  [ "${csum_errors:-0}" -gt 0 ] || fail "the peer counted no checksum error"
  echo "PASS: $mode (stale checksums dropped by the peer: TcpInCsumErrors $csum_errors)"
  exit 0
fi

wait "$send_pid" || fail "sender failed: $(cat "$work/send.err")"
wait "$recv_pid" || fail "receiver failed"
tb_in host nstat -z TcpRetransSegs TcpExtTCPFastRetrans TcpExtTCPSackRecovery \
  TcpExtTCPTimeouts >"$work/nstat.out"

tb_daemon_stats >"$work/stats"
tb_daemon_stop || fail "tlsnicd exited with an error"

echo "sender:   $(cat "$work/send.out")"
echo "receiver: $(cat "$work/recv.out")"
echo "--- sender's TCP counters (nstat, host namespace)"; cat "$work/nstat.out"
echo "--- daemon counters"; grep -vE ' 0$' "$work/stats" || true

read -r _ sent_bytes _ sent_sha _ _ _ _ _ _ _ _ _ xor_sha <"$work/send.out"
read -r _ recv_bytes _ recv_sha <"$work/recv.out"
[ "$sent_bytes" = "$bytes" ] || fail "sent $sent_bytes of $bytes bytes"
[ "$recv_bytes" = "$bytes" ] || fail "received $recv_bytes of $bytes bytes"
case "$mode" in
  hook_*) expect_sha=$xor_sha ;; # the hook XORs every payload byte with 0x5a
  *) expect_sha=$sent_sha ;;
esac
[ "$expect_sha" = "$recv_sha" ] || fail "sha256 differs: expected $expect_sha received $recv_sha"

gso=$(counter to_wire_gso_frames "$work/stats")
retrans=$(awk '$1 == "TcpRetransSegs" { print $2 }' "$work/nstat.out")
case "$mode" in
  plain | ipv6)
    [ "$gso" -gt 0 ] || fail "no TSO super-frame reached the daemon"
    echo "TSO: $gso super-frames, largest $(counter to_wire_max_frame "$work/stats") bytes"
    ;;
  faults)
    [ "$(counter to_wire_fault_lost "$work/stats")" -gt 0 ] || fail "the wire lost nothing"
    [ "$(counter to_wire_fault_reordered "$work/stats")" -gt 0 ] || fail "the wire reordered nothing"
    [ "${retrans:-0}" -gt 0 ] || fail "the kernel retransmitted nothing under 2 % loss"
    echo "retransmissions: TcpRetransSegs $retrans"
    ;;
  segmented)
    [ "$(counter to_wire_wire_segments "$work/stats")" -gt "$gso" ] || fail "no super-frame was cut"
    [ "${retrans:-0}" -gt 0 ] || fail "the kernel retransmitted nothing under 2 % loss"
    largest=$(timeout 120 tshark -r "$work/wire.pcap" -T fields -e frame.len 2>/dev/null | sort -n | tail -1)
    [ "$largest" -le 1500 ] || fail "a $largest-byte frame crossed a 1500-byte wire"
    echo "wire: $(counter to_wire_wire_segments "$work/stats") segments from $gso super-frames, largest $largest bytes; TcpRetransSegs $retrans"
    ;;
  hook_partial)
    [ "$(counter xor_frames_rewritten "$work/stats")" -gt 0 ] || fail "the hook rewrote nothing"
    ;;
  hook_full)
    [ "$(counter xor_full_computed "$work/stats")" -gt 0 ] || fail "no full checksum was computed"
    echo "frames with a full checksum computed by the hook: $(counter xor_full_computed "$work/stats")"
    ;;
  restart)
    [ "$(counter to_wire_frames "$work/stats")" -gt 0 ] || fail "the restarted daemon forwarded nothing"
    echo "PASS: $mode (byte-exact across a SIGKILL and restart of tlsnicd)"
    exit 0 # the captures restarted with the daemon: nothing to compare them with
    ;;
  restart_offloaded)
    cat "$work/send.err"
    grep -q "1 offloaded TX flow(s) fenced" "$work/daemon.log" || fail "the restarted daemon fenced nothing"
    grep -q "re-added" "$work/send.err" || fail "the sender never re-added its flow"
    drops=$(counter to_wire_fence_drops "$work/stats")
    [ "${drops:-0}" -gt 0 ] || fail "no payload was held back while the flow was fenced"
    [ "$(counter ctl_fences_lifted "$work/stats")" -ge 1 ] || fail "the fence was never lifted"
    echo "PASS: $mode ($drops payload frames of the fenced flow dropped, then re-added, byte-exact)"
    exit 0
    ;;
esac

# The captures: tshark must read every record, and there are as many as the daemon
# counted at each TUN.
for side in host wire; do
  frames=$(timeout 120 tshark -r "$work/$side.pcap" -T fields -e frame.number 2>"$work/tshark.err" | wc -l) \
    || fail "tshark cannot read $side.pcap: $(cat "$work/tshark.err")"
  grep -qiE "appears to be damaged|cut short|error" "$work/tshark.err" \
    && fail "tshark: $side.pcap: $(cat "$work/tshark.err")"
  if [ "$side" = host ]; then
    expected=$(($(counter to_wire_frames "$work/final-stats") + $(counter to_host_sent "$work/final-stats")))
  else
    expected=$(($(counter to_wire_sent "$work/final-stats") + $(counter to_host_frames "$work/final-stats")))
  fi
  [ "$frames" -eq "$expected" ] || fail "$side.pcap has $frames frames, the daemon counted $expected"
  echo "pcap $side: $frames frames, read by tshark"
done
echo "PASS: $mode"
