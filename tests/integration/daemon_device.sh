#!/usr/bin/env bash
# The device model inside tlsnicd encrypts TLS records sent by the real Linux TCP stack:
# a sender in the host namespace offloads TX of its socket (ctl ADD with the socket and a
# shared-memory record store), writes device-mode records in the clear (20 MB of content,
# TLS 1.2 AES-128-GCM, 4 KB records); the peer opens every record with OpenSSL's EVP.
#
#   daemon_device.sh plain|faults|segmented TLSNICD DEVXFER NET_SH
#
#   plain      no faults: every record authenticates, content sha256 equal, the wire
#              capture holds no plaintext canary (the host capture does), the device
#              counted at least the stream's bytes as encrypted.
#   faults     2 % loss, 2 % reordering, 0.5 % duplication of (super-)frames: the same,
#              and the device served out-of-order packets (tx_tls_ooo > 0).
#   segmented  --wire-segments with 5 % loss and 2 % reordering of single segments: the same.
#   restart    100 MB; tlsnicd (with --state-file) is SIGKILLed once 5 MB are encrypted and
#              restarted; it fences the flow until the sender re-adds it from the first
#              unacknowledged record (DEVXFER_READD): every record still opens, and
#              neither daemon's wire capture holds a canary.
#
# Root only (exits 77 otherwise); own namespaces; everything removed on exit.
set -euo pipefail

mode=$1 tb_tlsnicd=$2 devxfer=$3 net_sh=$4
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
bytes=$((20 * 1000 * 1000))
[ "$mode" = restart ] && bytes=$((100 * 1000 * 1000))
tb_require_root tun
tb_workdir tlsnic-it
work=$tb_work
tb_netns "tlsnic-it-dev-$mode"
fail() { echo "FAIL: $*"; exit 1; }
counter() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

args=(--state-file "$work/state")
case "$mode" in
  faults) args+=(--loss 0.02 --reorder 0.02 --dup 0.005 --seed 7) ;;
  segmented) args+=(--wire-segments --loss 0.05 --reorder 0.02 --seed 8) ;;
esac
start_daemon() { # capture name
  tb_daemon_start "${args[@]}" --pcap-host "$work/host$1.pcap" --pcap-wire "$work/wire$1.pcap"
}
start_daemon ""

tb_spawn peer "$devxfer" recv "$tb_peer_v4" 5001 120 >"$work/recv.out" 2>"$work/recv.err"
recv_pid=$!
tb_wait_for "$work/recv.err" listening 10
sender_env=()
[ "$mode" = restart ] && sender_env=(DEVXFER_READD=1)
tb_spawn host env "${sender_env[@]}" "$devxfer" send "$tb_peer_v4" 5001 "$bytes" "$tb_ctl" 120 \
  >"$work/send.out" 2>"$work/send.err"
send_pid=$!
if [ "$mode" = restart ]; then
  tb_wait_counter tx_tls_encrypted_bytes 5000000 30 "$work/stats" || fail "the device encrypted nothing"
  # The sender stops (its kernel socket keeps sending what it queued) so that the kill
  # lands mid-transfer however fast the machine is: a finished flow has nothing to fence.
  kill -STOP "$send_pid"
  tb_daemon_stats >"$work/stats"
  [ "$(counter tx_tls_encrypted_bytes "$work/stats")" -lt "$bytes" ] ||
    fail "the transfer finished before the daemon could be killed"
  tb_daemon_kill
  echo "tlsnicd killed after $(counter tx_tls_encrypted_bytes "$work/stats") encrypted bytes; restarting"
  start_daemon 2
  kill -CONT "$send_pid"
fi
wait "$send_pid" || fail "sender failed: $(cat "$work/send.err")"
wait "$recv_pid" || fail "receiver failed"
tb_daemon_stats >"$work/stats"
tb_daemon_stop || fail "tlsnicd exited with an error"

echo "sender:   $(cat "$work/send.out")"
echo "receiver: $(cat "$work/recv.out")"
echo "--- device and daemon counters"; grep -E '^(tx_tls|to_wire_(fault|wire_seg|gso_frames))' "$work/stats" | grep -v ' 0$' || true

read -r _ sent _ sent_sha _ records <"$work/send.out"
read -r _ got _ got_sha _ got_records _ bad _ leftover <"$work/recv.out"
[ "$got" = "$bytes" ] && [ "$sent" = "$bytes" ] || fail "sent $sent, opened $got of $bytes bytes"
[ "$bad" = 0 ] || fail "$bad records failed authentication at the peer"
[ "$got_records" = "$records" ] && [ "$leftover" = 0 ] || fail "records: sent $records, opened $got_records, $leftover bytes left"
[ "$sent_sha" = "$got_sha" ] || fail "content sha256 differs"

encrypted=$(counter tx_tls_encrypted_bytes "$work/stats")
if [ "$mode" = restart ]; then
  cat "$work/send.err"
  grep -q "1 offloaded TX flow(s) fenced" "$work/daemon.log" || fail "the restarted daemon fenced nothing"
  grep -q "re-added at record" "$work/send.err" || fail "the sender never re-added its flow"
  [ "$encrypted" -gt 0 ] || fail "the restarted device encrypted nothing"
else
  [ "$encrypted" -ge "$bytes" ] || fail "the device encrypted $encrypted bytes of a $bytes-byte stream"
fi
# The canary opens every record's content: the host side must show it, the wire never.
host_canaries=$(cat "$work"/host*.pcap | grep -c -a TLSNIC-CANARY-PLAINTEXT || true)
wire_canaries=$(cat "$work"/wire*.pcap | grep -c -a TLSNIC-CANARY-PLAINTEXT || true)
[ "$host_canaries" -gt 0 ] || fail "no canary in the host capture: the search would prove nothing"
[ "$wire_canaries" = 0 ] || fail "$wire_canaries plaintext canaries crossed the wire"
case "$mode" in
  faults | segmented)
    [ "$(counter tx_tls_ooo "$work/stats")" -gt 0 ] || fail "the device saw no out-of-order packet"
    ;;
esac
# Every capture reads to its end. That of a SIGKILLed daemon may end in one record cut
# short (the kill can land inside a write); tshark reads everything before it.
for cap in "$work"/wire*.pcap "$work"/host*.pcap; do
  if ! timeout 120 tshark -r "$cap" -T fields -e frame.number >"$work/frames" 2>"$work/tshark.err"; then
    case "$mode:$(basename "$cap")" in
      restart:wire.pcap | restart:host.pcap)
        grep -q "cut short in the middle of a packet" "$work/tshark.err" && [ -s "$work/frames" ] \
          || fail "tshark cannot read $(basename "$cap"): $(cat "$work/tshark.err")" ;;
      *) fail "tshark cannot read $(basename "$cap"): $(cat "$work/tshark.err")" ;;
    esac
  fi
done
echo "PASS: device $mode: $records records encrypted by the device ($encrypted bytes), opened by EVP, no plaintext on the wire"
