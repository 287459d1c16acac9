#!/usr/bin/env bash
# End to end, the download direction: a plain `openssl s_server -WWW` in the peer
# namespace serves a file; clients in the host namespace download it through tlsnicd with
# RX in device mode (the device model inside tlsnicd decrypts the records on their way to
# the host; the host reads the RX status in shared memory and opens in software only what
# the device did not verify):
#   - unmodified `openssl s_client -tls1_2` with KTLS on in its OpenSSL config, under
#     libtlsnic-preload.so (OpenSSL 3.0's kTLS receives TLS 1.2 only; curl never uses kTLS
#     here: it wraps the socket in its own BIO);
#   - `tlsnic get` (libssl handshake, keys exported, the socket handed to tlsnic), TLS 1.3
#     and TLS 1.2.
#
#   rx_device_e2e.sh MODE TLSNICD PRELOAD_SO NET_SH TLSNIC
#
#   clients  every client x AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305: sha256-exact; the
#            host counted RX in device mode (TlsRxDevice), the device verified >= 95 % of
#            the bytes (TlsnicRxDeviceBytes; the first records may have reached the socket
#            before the device had the flow), the device's rx_tls_rec_ok grew, no tag
#            failure; the share of received bytes the host did not decrypt is printed.
#   loss     1 % loss + 1 % reordering, then 5 % loss + 2 % reordering of wire frames:
#            byte-exact; the share and the resync distances are printed; in the median the
#            device decrypts again within 2 records (TlsnicRxResyncWithin2 >= half the gaps).
#   restart  tlsnicd (--state-file) is SIGKILLed mid-download and started again: the RX flow
#            is fenced towards the host until the host adds it again (TlsnicRxDeviceReadd),
#            the new device takes over the old one's decisions, the download is byte-exact.
#
# Root only (exits 77 otherwise); own namespaces (unique prefix), from the testbed library
# (scripts/lib/testbed.sh); removed on exit.
set -euo pipefail

mode=$1 tb_tlsnicd=$(readlink -f "$2") preload=$(readlink -f "$3") net_sh=$(readlink -f "$4")
tlsnic=$(readlink -f "$5")
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
size=$((20 * 1000 * 1000))
tb_require_root tun
tb_require_tools openssl sha256sum ip ss timeout
tb_workdir tlsnic-rx
work=$tb_work
tb_on_failure() { tb_show_log "$work/client.out" "$work/client.err" "$work/server.err"; }
server_ip=$tb_peer_v4 port=4433
server_pid="" client_pid=""
fail() { echo "FAIL: $*"; exit 1; }
counter() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$2" 2>/dev/null || echo 0; }
delta() { echo $(( $(counter "$1" after) - $(counter "$1" before) )); }

cd "$work"
tb_netns "tlsnic-it-rx-$mode" || fail "could not make the namespaces"
tb_tls_server_files tlsnic-rx || fail "no certificate"
head -c "$size" /dev/urandom > file.bin
want=$(sha256sum < file.bin | cut -d' ' -f1)

start_daemon() { # extra tlsnicd options
  tb_daemon_start "$@" || fail "tlsnicd did not start"
}
stop_daemon() {
  tb_daemon_stop || fail "tlsnicd exited with an error"
}
device_stats() { tb_daemon_stats > "$1" || fail "tlsnicd stats"; }

start_server() { # s_server options (version, ciphers)
  port=$((port + 1))
  tb_spawn peer timeout 300 openssl s_server -accept "$server_ip:$port" \
    -cert cert.pem -key key.pem -WWW "$@" >server.out 2>server.err
  server_pid=$!
  tb_wait_listening peer "$port" 5 || fail "s_server does not listen"
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

fetch() { # CLIENT VERSION CIPHER OUT [tlsnic get options]: the host's counters in ./hoststats
  local client=$1 version=$2 cipher=$3 out=$4
  shift 4
  rm -f "$out" raw.out hoststats
  case "$client" in
    s_client)
      printf 'GET /file.bin HTTP/1.0\r\n\r\n' | tb_in host env OPENSSL_CONF="$work/openssl.cnf" \
        TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/hoststats" LD_PRELOAD="$preload" \
        timeout 120 openssl s_client "-$version" -cipher "$cipher" -connect "$server_ip:$port" \
        -quiet -ign_eof >raw.out 2>client.err || true
      tb_http_body "$tb_s_server_header" raw.out "$out" ;;
    get)
      tb_in host env TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/hoststats" \
        timeout 120 "$tlsnic" get --addr "$server_ip" --port "$port" --path /file.bin \
        --out "$out" "--${version//_/}" --cipher "$cipher" "$@" >client.out 2>client.err || true ;;
  esac
}
got_sha() { sha256sum < "$1" 2>/dev/null | cut -d' ' -f1; }
share() { # percent of received TLS bytes the device verified (the host did not decrypt)
  local dev sw
  dev=$(counter TlsnicRxDeviceBytes hoststats) sw=$(counter TlsnicRxSwBytes hoststats)
  awk -v d="$dev" -v s="$sw" 'BEGIN { printf "%.2f", (d + s) ? 100 * d / (d + s) : 0 }'
}

# (client, version, server options, cipher name for the client)
runs=(
  "s_client tls1_2 ECDHE-ECDSA-AES128-GCM-SHA256 -tls1_2"
  "s_client tls1_2 ECDHE-ECDSA-AES256-GCM-SHA384 -tls1_2"
  "s_client tls1_2 ECDHE-ECDSA-CHACHA20-POLY1305 -tls1_2"
  "get tls1_3 aes128gcm -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256"
  "get tls1_3 aes256gcm -tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384"
  "get tls1_3 chacha20 -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256"
  "get tls1_2 aes128gcm -tls1_2"
  "get tls1_2 aes256gcm -tls1_2"
  "get tls1_2 chacha20 -tls1_2"
)

case "$mode" in
clients)
  start_daemon
  fails=0
  for run in "${runs[@]}"; do
    read -r client version cipher server_opts <<<"$run"
    # shellcheck disable=SC2086
    start_server $server_opts
    device_stats before
    fetch "$client" "$version" "$cipher" got.bin
    device_stats after
    stop_server
    got=$(got_sha got.bin)
    rxdev=$(counter TlsRxDevice hoststats) devb=$(counter TlsnicRxDeviceBytes hoststats)
    recs=$(delta rx_tls_rec_ok) err=$(delta rx_tls_err) pct=$(share)
    label="$client $version $cipher"
    if [ "$got" = "$want" ] && [ "$rxdev" -ge 1 ] && [ "$devb" -ge $((size * 95 / 100)) ] \
      && [ "$recs" -gt 0 ] && [ "$err" = 0 ]; then
      echo "PASS $label: sha256 ok, RX device; the device verified $recs records, $pct % of the received bytes (host decrypted $(counter TlsnicRxSwBytes hoststats) bytes)"
    else
      echo "FAIL $label: sha256 $got (want $want), TlsRxDevice=$rxdev, device bytes $devb of $size, rx_tls_rec_ok +$recs, rx_tls_err +$err"
      cat client.out client.err 2>/dev/null | tail -3
      fails=$((fails + 1))
    fi
  done
  stop_daemon
  [ "$fails" = 0 ] || fail "$fails of ${#runs[@]} downloads"
  echo "PASS: ${#runs[@]} downloads with RX in device mode through tlsnicd"
  ;;
loss)
  fails=0
  for faults in "--loss 0.01 --reorder 0.01 --seed 21" "--loss 0.05 --reorder 0.02 --seed 22"; do
    # shellcheck disable=SC2086
    start_daemon $faults
    for run in "${runs[0]}" "${runs[3]}" "${runs[8]}"; do
      read -r client version cipher server_opts <<<"$run"
      # shellcheck disable=SC2086
      start_server $server_opts
      device_stats before
      fetch "$client" "$version" "$cipher" got.bin
      device_stats after
      stop_server
      got=$(got_sha got.bin)
      gaps=$(counter TlsnicRxResyncGaps hoststats) w2=$(counter TlsnicRxResyncWithin2 hoststats)
      dist=$(counter TlsnicRxResyncRecords hoststats)
      label="$faults, $client $version $cipher"
      if [ "$got" = "$want" ] && [ "$(counter TlsRxDevice hoststats)" -ge 1 ] && [ $((2 * w2)) -ge "$gaps" ]; then
        echo "PASS $label: sha256 ok; device verified $(share) % of the received bytes; $gaps gaps, resync within 2 records after $w2 (mean $(awk -v s="$dist" -v g="$gaps" 'BEGIN { printf "%.1f", g ? s / g : 0 }') records); rx_tls_ooo=$(delta rx_tls_ooo) placed=$(delta rx_tls_resync_placed) requests=$(delta rx_tls_resync_req_start) rechecks=$(delta rx_tls_recheck) (frames lost $(delta to_host_fault_lost), reordered $(delta to_host_fault_reordered))"
      else
        echo "FAIL $label: sha256 $got (want $want), TlsRxDevice=$(counter TlsRxDevice hoststats), gaps $gaps within 2: $w2"
        fails=$((fails + 1))
      fi
    done
    stop_daemon
  done
  [ "$fails" = 0 ] || fail "$fails downloads under loss"
  ;;
restart)
  state="$work/tlsnicd.state"
  fails=0
  for run in "${runs[3]}" "${runs[0]}"; do
    read -r client version cipher server_opts <<<"$run"
    start_daemon --state-file "$state"
    # shellcheck disable=SC2086
    start_server $server_opts
    if [ "$client" = get ]; then
      fetch get "$version" "$cipher" got.bin --rate 10 &
    else
      fetch s_client "$version" "$cipher" got.bin &
    fi
    client_pid=$!
    sleep 0.4
    tb_daemon_kill
    sleep 0.3
    start_daemon --state-file "$state"
    wait "$client_pid" || true
    client_pid=""
    device_stats after
    stop_server
    stop_daemon
    got=$(got_sha got.bin)
    readd=$(counter TlsnicRxDeviceReadd hoststats)
    label="SIGKILL mid-download, $client $version $cipher"
    if [ "$got" = "$want" ]; then
      echo "PASS $label: sha256 ok, TlsnicRxDeviceReadd=$readd, to_host_fence_drops=$(counter to_host_fence_drops after), the new device verified $(counter rx_tls_rec_ok after) records; $(share) % of the bytes device-verified over the whole download"
    else
      echo "FAIL $label: sha256 $got (want $want), TlsnicRxDeviceReadd=$readd"
      fails=$((fails + 1))
    fi
    # The get client is slow enough that the kill lands mid-download: it must have re-added.
    if [ "$client" = get ] && [ "$readd" -lt 1 ]; then
      echo "FAIL $label: the host did not add its RX context again"
      fails=$((fails + 1))
    fi
  done
  [ "$fails" = 0 ] || fail "$fails downloads across a restart"
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
