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
# Root only (exits 77 otherwise); own namespaces (unique prefix); removed on exit.
set -euo pipefail

mode=$1 tlsnicd=$(readlink -f "$2") preload=$(readlink -f "$3") net_sh=$(readlink -f "$4")
tlsnic=$(readlink -f "$5")
size=$((20 * 1000 * 1000))
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/net/tun ]; then
  echo "SKIP: needs root and /dev/net/tun"
  exit 77
fi
for tool in openssl sha256sum ip ss timeout; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
prefix="tlsnic-it-rx-$mode-$$"
work=$(mktemp -d /tmp/tlsnic-rx.XXXXXX)
host="$prefix-host" peer="$prefix-peer"
server_ip=198.18.0.2 port=4433
daemon_pid="" server_pid="" client_pid=""
cleanup() {
  local rc=$?
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  "$net_sh" down "$prefix" >/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "--- daemon log (tail)"; tail -n 20 "$work"/daemon*.log 2>/dev/null || true
    echo "--- client (tail)"; tail -n 5 "$work"/client.err 2>/dev/null || true
  fi
  if [ -n "${TLSNIC_E2E_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
wait_for() { # FILE PATTERN SECONDS, bounded
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "timed out waiting for '$2' in $1"
}
counter() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$2" 2>/dev/null || echo 0; }
delta() { echo $(( $(counter "$1" after) - $(counter "$1" before) )); }

cd "$work"
"$net_sh" up "$prefix" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
  -out cert.pem -subj /CN=tlsnic-rx -days 2 2>/dev/null
head -c "$size" /dev/urandom > file.bin
want=$(sha256sum < file.bin | cut -d' ' -f1)
cat > openssl.cnf <<'CNF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = tls_system_default
[tls_system_default]
Options = KTLS
CNF

daemon_n=0
start_daemon() { # extra tlsnicd options
  daemon_n=$((daemon_n + 1))
  rm -f ready
  "$tlsnicd" --host-ns "$host" --wire-ns "$peer" --ctl "$work/ctl.sock" --ready-file "$work/ready" \
    "$@" 2>"$work/daemon$daemon_n.log" &
  daemon_pid=$!
  wait_for ready ready 10
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || fail "tlsnicd exited with an error"
  daemon_pid=""
}
device_stats() { "$tlsnicd" stats --ctl "$work/ctl.sock" > "$1" || fail "tlsnicd stats"; }

start_server() { # s_server options (version, ciphers)
  port=$((port + 1))
  ip netns exec "$peer" timeout 300 openssl s_server -accept "$server_ip:$port" \
    -cert cert.pem -key key.pem -WWW "$@" >server.out 2>server.err &
  server_pid=$!
  local i
  for ((i = 0; i < 100; i++)); do
    ip netns exec "$peer" ss -ltn | grep -q ":$port " && return 0
    sleep 0.05
  done
  fail "s_server does not listen"
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

http_header=$'HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n'
fetch() { # CLIENT VERSION CIPHER OUT [tlsnic get options]: the host's counters in ./hoststats
  local client=$1 version=$2 cipher=$3 out=$4
  shift 4
  rm -f "$out" raw.out hoststats
  case "$client" in
    s_client)
      printf 'GET /file.bin HTTP/1.0\r\n\r\n' | ip netns exec "$host" env OPENSSL_CONF="$work/openssl.cnf" \
        TLSNIC_CTL="$work/ctl.sock" TLSNIC_STATS_FILE="$work/hoststats" LD_PRELOAD="$preload" \
        timeout 120 openssl s_client "-$version" -cipher "$cipher" -connect "$server_ip:$port" \
        -quiet -ign_eof >raw.out 2>client.err || true
      if head -c ${#http_header} raw.out | cmp -s - <(printf '%s' "$http_header"); then
        tail -c +$((${#http_header} + 1)) raw.out > "$out"
      fi ;;
    get)
      ip netns exec "$host" env TLSNIC_CTL="$work/ctl.sock" TLSNIC_STATS_FILE="$work/hoststats" \
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
    kill -KILL "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=""
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
