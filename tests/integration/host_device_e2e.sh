#!/usr/bin/env bash
# End to end: an unmodified `openssl s_server -WWW -sendfile` (KTLS on in its OpenSSL
# config) runs under libtlsnic-preload.so in the host namespace; the preload library finds
# tlsnicd at TLSNIC_CTL and puts TX in device mode by itself (records framed in the clear,
# kept in shared memory, encrypted by the device model inside tlsnicd). Unmodified peers in
# the peer namespace download a file through tlsnicd.
#
#   host_device_e2e.sh MODE TLSNICD PRELOAD_SO NET_SH TLSNIC
#
#   peers    TLS 1.3 and 1.2 x AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 x curl,
#            openssl s_client, gnutls-cli: every download sha256-exact; per download the
#            host counted one TlsTxDevice and no TlsTxSw, and the device encrypted about
#            the file's size (tx_tls_encrypted_bytes between size and size + 5 %), device-
#            wide and in the download's own flow as `tlsnic stats --flows` lists it (its
#            4-tuple, TX, ended, packets > 0, bytes between size and size + 5 %).
#   loss     1 % loss + 1 % reordering, then 5 % loss + 2 % reordering of wire frames:
#            byte-exact, out-of-order packets and resync work counted by the device.
#   capture  wire and host captures and the server's SSLKEYLOGFILE (written by the preload
#            library): no plaintext canary of the file on the wire (the host capture has
#            them), and tshark with the key log decrypts the wire capture: the decrypted
#            stream of each download (TLS 1.3 curl, TLS 1.2 s_client) is the file.
#   restart  tlsnicd (--state-file) is SIGKILLed mid-download and started again: the host
#            side re-adds its context (TlsnicTxDeviceReadd), the download is byte-exact,
#            and a capture at the peer's interface holds no plaintext canary.
#
# Root only (exits 77 otherwise); own namespaces (unique prefix); removed on exit.
set -euo pipefail

mode=$1 tb_tlsnicd=$(readlink -f "$2") preload=$(readlink -f "$3") net_sh=$(readlink -f "$4")
tlsnic=$(readlink -f "$5")
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
size=$((20 * 1000 * 1000))
tb_require_root tun
tb_require_tools openssl curl gnutls-cli sha256sum basenc ip ss timeout tshark dumpcap
tb_workdir tlsnic-e2e
work=$tb_work
tb_netns "tlsnic-it-e2e-$mode"
server_ip=$tb_host_v4 port=4433
server_pid=""
tb_on_failure() {
  echo "--- server log (tail)" >&2
  grep -v '^tlsnic-preload: \(read\|write\|send\|recv\|poll\)' "$work/server.err" 2>/dev/null | tail -n 20 >&2 || true
}
fail() { echo "FAIL: $*"; exit 1; }
counter() { tb_counter "$@"; }
delta() { echo $(( $(counter "$1" after) - $(counter "$1" before) )); } # device counter over one download

cd "$work"
tb_tls_server_files tlsnic-e2e
# 20 MB: 1 MB blocks of random bytes, each ending in plaintext canaries that must never
# be seen on the wire.
tb_marker_file "$size" file.bin
want=$(sha256sum < file.bin | cut -d' ' -f1)
# gnutls-cli reads about 1.2 MB/s here even from a plain OpenSSL server over loopback (it
# waits in select between records): it fetches a 2 MB prefix of the same file.
small_size=2000000
head -c "$small_size" file.bin > small.bin
want_small=$(sha256sum < small.bin | cut -d' ' -f1)

stop_daemon() { tb_daemon_stop || fail "tlsnicd exited with an error"; }
device_stats() { tb_daemon_stats > "$1" || fail "tlsnicd stats"; }
# The device's counters of the server's newest flow on $port (the download just made), from
# `tlsnic stats --flows`: "state packets bytes" (the one still offloaded if there is one,
# else the newest ended one; flows are listed offloaded first, then ended oldest first).
flow_counters() {
  "$tlsnic" stats --flows --ctl "$tb_ctl" > flows.txt || fail "tlsnic stats --flows"
  awk -v me="$server_ip:$port" '$1 == me && $3 == "tx" {
      if (($4 == "active" || $4 == "finishing") && !active) { active = $4 " " $6 " " $7 }
      if ($4 == "ended") { ended = $4 " " $6 " " $7 } }
    END { print (active ? active : (ended ? ended : "none 0 0")) }' flows.txt
}

start_server() { # s_server options (version, ciphers)
  rm -f stats
  port=$((port + 1)) # a fresh port: the last server's closed connections may still hold the old one
  tb_spawn host env OPENSSL_CONF="$work/openssl.cnf" TLSNIC_CTL="$tb_ctl" \
    TLSNIC_STATS_FILE="$work/stats" TLSNIC_PRELOAD_DEBUG=1 SSLKEYLOGFILE="$work/keylog" \
    LD_PRELOAD="$preload" timeout 300 openssl s_server -accept "$server_ip:$port" \
    -cert cert.pem -key key.pem -WWW -sendfile "$@" >server.out 2>>server.err
  server_pid=$!
  tb_wait_listening host "$port" 5 ||
    fail "s_server does not listen: $(tb_in host ss -ltnp; ps -ef | grep '[s]_server' | head -5)"
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
# The host counters as of the last closed tlsnic socket (written at close): wait until the
# server has closed download number $1.
wait_host_closed() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(counter TlsTxDevice stats)" -ge "$1" ] || [ "$(counter TlsTxSw stats)" -ge 1 ] || { sleep 0.05; continue; }
    [ "$(counter TlsCurrTxDevice stats)" = 0 ] && [ "$(counter TlsCurrTxSw stats)" = 0 ] && return 0
    sleep 0.05
  done
}

# s_server -WWW answers with exactly this header block before the file's bytes.
http_header=$tb_s_server_header
body_of() { tb_http_body "$http_header" "$1" "$2"; } # that header stripped from $1 into $2

fetch() { # CLIENT OUT [curl options]: downloads file.bin (gnutls-cli: small.bin) into OUT
  local client=$1 out=$2
  shift 2
  rm -f "$out" raw.out
  case "$client" in
    curl)
      tb_in peer curl -sk --max-time 120 "$@" "https://$server_ip:$port/file.bin" -o "$out" || true ;;
    s_client)
      printf 'GET /file.bin HTTP/1.0\r\n\r\n' | tb_in peer timeout 120 openssl s_client \
        -connect "$server_ip:$port" -quiet -ign_eof >raw.out 2>s_client.err || true
      body_of raw.out "$out" ;;
    gnutls-cli)
      # gnutls-cli stops reading when its stdin ends: keep stdin open (bounded) until the
      # whole response is in.
      ( printf 'GET /small.bin HTTP/1.0\r\n\r\n'
        for _ in $(seq 1 1200); do
          [ "$(stat -c %s raw.out 2>/dev/null || echo 0)" -ge $((small_size + ${#http_header})) ] && break
          sleep 0.1
        done ) | tb_in peer timeout 130 gnutls-cli --insecure -p "$port" "$server_ip" \
          --logfile=gnutls.log >raw.out 2>gnutls.err || true
      body_of raw.out "$out" ;;
  esac
}

got_sha() { sha256sum < "$1" | cut -d' ' -f1; }

case "$mode" in
peers)
  tb_daemon_start
  n=0 fails=0
  for version in tls1_3 tls1_2; do
    for cipher in AES128 AES256 CHACHA20; do
      case "$version-$cipher" in
        tls1_3-AES128) opts=(-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256) ;;
        tls1_3-AES256) opts=(-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384) ;;
        tls1_3-CHACHA20) opts=(-tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256) ;;
        tls1_2-AES128) opts=(-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256) ;;
        tls1_2-AES256) opts=(-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384) ;;
        tls1_2-CHACHA20) opts=(-tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305) ;;
      esac
      start_server "${opts[@]}"
      served=0
      for client in curl s_client gnutls-cli; do
        n=$((n + 1)) served=$((served + 1))
        device_stats before
        fetch "$client" got.bin
        wait_host_closed "$served"
        device_stats after
        enc=$(( $(counter tx_tls_encrypted_bytes after) - $(counter tx_tls_encrypted_bytes before) ))
        read -r flow_state flow_packets flow_bytes <<<"$(flow_counters)"
        dev=$(counter TlsTxDevice stats) sw=$(counter TlsTxSw stats)
        got=$(got_sha got.bin)
        label="$version $cipher $client"
        w=$want s=$size
        [ "$client" = gnutls-cli ] && w=$want_small s=$small_size
        if [ "$got" = "$w" ] && [ "$dev" = "$served" ] && [ "$sw" = 0 ] \
          && [ "$enc" -ge "$s" ] && [ "$enc" -le $((s + s / 20)) ] \
          && [ "$flow_state" = ended ] && [ "$flow_packets" -gt 0 ] \
          && [ "$flow_bytes" -ge "$s" ] && [ "$flow_bytes" -le $((s + s / 20)) ]; then
          echo "PASS $label: sha256 ok ($s bytes), TlsTxDevice=$dev TlsTxSw=$sw, device encrypted $enc bytes; the flow: $flow_packets packets, $flow_bytes bytes"
        else
          echo "FAIL $label: sha256 $got (want $w), TlsTxDevice=$dev (want $served) TlsTxSw=$sw, device encrypted $enc bytes of $s; flow $flow_state: $flow_packets packets, $flow_bytes bytes"
          cat flows.txt
          fails=$((fails + 1))
        fi
      done
      stop_server
    done
  done
  stop_daemon
  [ "$fails" = 0 ] || fail "$fails of $n downloads"
  echo "PASS: $n downloads in device mode through tlsnicd"
  ;;
loss)
  fails=0
  for faults in "--loss 0.01 --reorder 0.01 --seed 11" "--loss 0.05 --reorder 0.02 --seed 12"; do
    # shellcheck disable=SC2086
    tb_daemon_start $faults
    for run in "curl -tls1_3" "s_client -tls1_2"; do
      read -r client version <<<"$run"
      start_server "$version"
      device_stats before
      fetch "$client" got.bin
      wait_host_closed 1
      stop_server
      device_stats after
      got=$(got_sha got.bin)
      ooo=$(delta tx_tls_ooo) ckpt=$(delta tx_tls_ooo_ckpt)
      resync=$(delta tx_tls_resync_bytes) dump=$(delta tx_tls_dump_packets)
      label="$faults, $client ${version#-}"
      if [ "$got" = "$want" ] && [ "$(counter TlsTxDevice stats)" = 1 ] && [ "$ooo" -gt 0 ] \
        && [ $((ckpt + resync + dump)) -gt 0 ]; then
        echo "PASS $label: sha256 ok; device: tx_tls_ooo=$ooo tx_tls_ooo_ckpt=$ckpt tx_tls_resync_bytes=$resync tx_tls_dump_packets=$dump (frames lost $(delta to_wire_fault_lost), reordered $(delta to_wire_fault_reordered))"
      else
        echo "FAIL $label: sha256 $got (want $want), TlsTxDevice=$(counter TlsTxDevice stats), tx_tls_ooo=$ooo ckpt=$ckpt resync_bytes=$resync dump=$dump"
        fails=$((fails + 1))
      fi
    done
    stop_daemon
  done
  [ "$fails" = 0 ] || fail "$fails downloads under loss"
  ;;
capture)
  tb_daemon_start --pcap-host "$work/host.pcap" --pcap-wire "$work/wire.pcap"
  start_server -tls1_3
  fetch curl got13.bin
  wait_host_closed 1
  stop_server
  start_server -tls1_2
  fetch s_client got12.bin
  wait_host_closed 1
  stop_server
  stop_daemon # flushes the captures
  [ "$(got_sha got13.bin)" = "$want" ] && [ "$(got_sha got12.bin)" = "$want" ] || fail "download not byte-exact"
  [ "$(stat -c %s wire.pcap)" -ge $((2 * size)) ] || fail "the wire capture holds less than the two downloads"
  host_canaries=$(grep -c -a TLSNIC-CANARY-PLAINTEXT host.pcap || true)
  wire_canaries=$(grep -c -a TLSNIC-CANARY-PLAINTEXT wire.pcap || true)
  [ "$host_canaries" -gt 0 ] || fail "no canary in the host capture: the search would prove nothing"
  [ "$wire_canaries" = 0 ] || fail "$wire_canaries plaintext canaries crossed the wire"
  [ "$(grep -c CLIENT_TRAFFIC_SECRET_0 keylog)" -ge 1 ] && [ "$(grep -c '^CLIENT_RANDOM' keylog)" -ge 1 ] \
    || fail "the key log lacks the TLS 1.3 or TLS 1.2 secrets: $(cut -c1-30 keylog | tr '\n' ' ')"
  # tshark decrypts the whole of both downloads out of the wire capture with the key log:
  # the server's decrypted byte stream of each TCP connection is the response, byte-exact.
  for stream in 0 1; do
    timeout 300 tshark -r wire.pcap -o "tls.keylog_file:$work/keylog" -q -z "follow,tls,raw,$stream" \
      >follow.txt 2>tshark.err || fail "tshark: $(cat tshark.err)"
    # One direction's lines are indented with a tab; the response is the one starting "HTTP/1.0".
    if grep -qE '^485454502f312e30' follow.txt; then
      grep -E '^[0-9a-f]+$' follow.txt
    else
      grep -E $'^\t[0-9a-f]+$' follow.txt | tr -d '\t'
    fi | tr -d '\n' | tr a-f A-F | basenc --base16 -d > decrypted.raw
    body_of decrypted.raw decrypted.bin
    [ "$(got_sha decrypted.bin)" = "$want" ] \
      || fail "tshark's decryption of TCP stream $stream is not the file ($(stat -c %s decrypted.raw) bytes decrypted)"
  done
  echo "PASS: wire capture ($(stat -c %s wire.pcap) bytes) without canaries (host capture: $host_canaries), both downloads decrypted byte-exact by tshark with the host's key log"
  ;;
restart)
  state="$work/tlsnicd.state"
  tb_spawn peer dumpcap -q -i "$tb_peer_if" -w "$work/peer.pcapng" 2>capture.err
  capture_pid=$!
  fails=0
  for version in -tls1_3 -tls1_2; do
    client=curl
    tb_daemon_start --state-file "$state" --pcap-wire "$work/wire-a.pcap"
    start_server "$version"
    # 20 MB at 10 MB/s: the daemon dies 0.5 s into a 2 s download
    fetch curl got.bin --limit-rate 10M &
    fetch_pid=$!
    sleep 0.5
    tb_daemon_kill
    sleep 0.3
    tb_daemon_start --state-file "$state" --pcap-wire "$work/wire-b.pcap"
    wait "$fetch_pid" || true
    wait_host_closed 1
    stop_server
    device_stats after
    stop_daemon
    got=$(got_sha got.bin)
    readd=$(counter TlsnicTxDeviceReadd stats)
    fenced=$(counter to_wire_fence_drops after)
    label="SIGKILL mid-download, $client ${version#-}"
    if [ "$got" = "$want" ] && [ "$readd" -ge 1 ]; then
      echo "PASS $label: sha256 ok, TlsnicTxDeviceReadd=$readd, to_wire_fence_drops=$fenced, device encrypted $(counter tx_tls_encrypted_bytes after) bytes after the restart"
    else
      echo "FAIL $label: sha256 $got (want $want), TlsnicTxDeviceReadd=$readd"
      fails=$((fails + 1))
    fi
    cat wire-a.pcap wire-b.pcap >> wire-all.pcap 2>/dev/null || true
  done
  sleep 0.5
  kill "$capture_pid"; wait "$capture_pid" 2>/dev/null || true
  [ "$fails" = 0 ] || fail "$fails downloads across a restart"
  [ "$(stat -c %s peer.pcapng)" -ge "$size" ] || fail "the peer capture is too small to prove anything"
  peer_canaries=$(grep -c -a TLSNIC-CANARY-PLAINTEXT peer.pcapng || true)
  wire_canaries=$(grep -c -a TLSNIC-CANARY-PLAINTEXT wire-all.pcap || true)
  [ "$peer_canaries" = 0 ] && [ "$wire_canaries" = 0 ] \
    || fail "plaintext crossed the wire: $peer_canaries canaries at the peer, $wire_canaries in the daemons' wire captures"
  echo "PASS: no plaintext at the peer across the restarts ($(stat -c %s peer.pcapng) bytes captured)"
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
