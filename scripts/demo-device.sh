#!/usr/bin/env bash
# The device demo behind `tlsnic demo` (as root): TLS offload to a modelled network device
# in the real Linux packet path, with unmodified programs at both ends.
#
#   demo-device.sh TLSNICD PRELOAD_SO NET_SH TLSNIC
#
# Namespaces tlsnic-demo-<pid>-host / -peer joined only by tlsnicd (1 % loss and 1 %
# reordering on the wire, so that the device has retransmissions to resync); an unmodified
# `openssl s_server -WWW -sendfile` with KTLS switched on in its OpenSSL config runs under
# libtlsnic-preload.so in the host namespace (TX in device mode: records framed in the
# clear, encrypted by the device); curl (TLS 1.3) and openssl s_client (TLS 1.2) fetch a
# 50 MB file from the peer namespace; then `tlsnic serve` (the CLI's own server on the
# tlsnic socket layer) serves it to curl too. Then the download direction (RX offload: the
# device decrypts what the host receives): an unmodified `openssl s_server -WWW` in the peer
# namespace, and in the host namespace an unmodified `openssl s_client -tls1_2` under
# libtlsnic-preload.so (OpenSSL 3.0's kTLS receives TLS 1.2 only) and `tlsnic get --tls13`
# (the CLI's own client) fetching it. sha256 checked; counters per device and per flow,
# with the share of the bytes the host did not encrypt and did not decrypt; everything
# torn down.
# Environment: TLSNIC_DEMO_MB (file size, default 50), TLSNIC_DEMO_LOSS / _REORDER.
set -euo pipefail

tb_tlsnicd=$1 preload=$2 net_sh=$3 tlsnic=$4
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
size_mb=${TLSNIC_DEMO_MB:-50}
loss=${TLSNIC_DEMO_LOSS:-0.01} reorder=${TLSNIC_DEMO_REORDER:-0.01}
steps=11
server_ip=$tb_host_v4
tb_require_tools openssl curl sha256sum ip ss timeout
tb_workdir tlsnic-demo
work=$tb_work
tb_on_failure() {
  echo "tlsnic demo: FAILED (logs below)"
  tb_show_log "$work/server.err" "$work/serve.out" "$work/peer-server.err" "$work/rx.err" \
    "$work/get.out"
}
step() { printf '[%d/%d] %s ' "$1" "$steps" "$2"; }
die() { echo; echo "tlsnic demo: $*"; exit 1; }
now() { date +%s.%N; }
rate() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { t = t1 - t0; printf "%.1f MB in %.2f s (%.0f Mbit/s)", b / 1e6, t, b * 8 / 1e6 / t }'; }
cd "$work"

echo "tlsnic demo: TLS offload to a network device, in the real Linux packet path"
echo "  host namespace: unmodified openssl s_server under libtlsnic-preload.so (kTLS API -> tlsnic),"
echo "                  and tlsnic serve (libssl handshake, then the socket handed to tlsnic)"
echo "                  then, downloading: unmodified openssl s_client under the preload library,"
echo "                  and tlsnic get (the CLI's own client)"
echo "  tlsnicd:        the device model between the namespaces: encrypts the records the host"
echo "                  sends and decrypts the ones it receives, inline"
echo "  peer namespace: unmodified curl and openssl s_client, then an unmodified openssl s_server"
echo

tb_netns tlsnic-demo || die "could not make the namespaces"
step 1 "network namespaces $tb_host_ns <-> $tb_peer_ns ..."
echo "ok ($server_ip <-> $tb_peer_v4, nothing routed elsewhere)"

step 2 "tlsnicd (device model; wire: $loss loss, $reorder reordering) ..."
tb_daemon_start --loss "$loss" --reorder "$reorder" --seed 1 || die "tlsnicd did not start"
echo "ok (control socket $tb_ctl)"

step 3 "test file of $size_mb MB ..."
head -c $((size_mb * 1000 * 1000)) /dev/urandom > file.bin
want=$(sha256sum < file.bin | cut -d' ' -f1)
tb_tls_server_files tlsnic-demo
echo "ok (sha256 ${want:0:16}...)"

step 4 "openssl s_server -WWW -sendfile under libtlsnic-preload.so ..."
tb_spawn host env OPENSSL_CONF="$work/openssl.cnf" TLSNIC_CTL="$tb_ctl" \
  TLSNIC_STATS_FILE="$work/host-stats" TLSNIC_PRELOAD_DEBUG=1 LD_PRELOAD="$preload" \
  timeout 300 openssl s_server -accept "$server_ip:4433" -cert cert.pem -key key.pem -WWW -sendfile \
  >server.out 2>server.err
server_pid=$!
tb_wait_listening host 4433 5 || die "s_server does not listen"
echo "listening on $server_ip:4433"

fetched=0
check_download() { # LABEL FILE T0 T1
  local got mode
  got=$(sha256sum < "$2" | cut -d' ' -f1)
  mode=$(grep 'setsockopt TLS_TX' server.err | tail -n 1 | sed 's/.* mode //; s/ ([-0-9]*)$//')
  [ "$got" = "$want" ] || die "$1: sha256 $got, want $want"
  fetched=$((fetched + 1))
  echo "$(rate "$(stat -c %s "$2")" "$3" "$4"), sha256 ok; server TX mode: $mode"
}

step 5 "curl --tlsv1.3 https://$server_ip:4433/file.bin (peer namespace) ..."
t0=$(now)
tb_in peer curl -sk --tlsv1.3 --max-time 120 "https://$server_ip:4433/file.bin" -o curl.bin \
  || die "curl failed"
t1=$(now)
check_download curl curl.bin "$t0" "$t1"

step 6 "openssl s_client -tls1_2 (peer namespace), GET /file.bin ..."
t0=$(now)
printf 'GET /file.bin HTTP/1.0\r\n\r\n' | tb_in peer timeout 120 openssl s_client \
  -connect "$server_ip:4433" -tls1_2 -quiet -ign_eof >s_client.raw 2>s_client.err || true
t1=$(now)
tb_http_body "$tb_s_server_header" s_client.raw s_client.bin
check_download "openssl s_client" s_client.bin "$t0" "$t1"

# The server writes its counters when a connection closes.
for ((i = 0; i < 100; i++)); do
  [ "$(awk '$1 == "TlsTxDevice" { print $2 }' host-stats 2>/dev/null || echo 0)" -ge 2 ] && break
  sleep 0.05
done
[ "$(awk '$1 == "TlsTxSw" { print $2 }' host-stats)" = 0 ] || die "a connection fell back to software"

step 7 "tlsnic serve --port 4434 --file file.bin (the CLI's own server), curl --tlsv1.2 ..."
tb_spawn host env TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/serve-stats" \
  timeout 300 "$tlsnic" serve --addr "$server_ip" --port 4434 --file "$work/file.bin" --count 1 \
  >serve.out 2>&1
serve_pid=$!
tb_wait_for serve.out "listening on" 10 || die "tlsnic serve does not listen"
t0=$(now)
tb_in peer curl -sk --tlsv1.2 --tls-max 1.2 --max-time 120 "https://$server_ip:4434/file.bin" \
  -o serve.bin || die "curl from tlsnic serve failed"
t1=$(now)
wait "$serve_pid" || die "tlsnic serve: $(tail -n 1 serve.out)"
got=$(sha256sum < serve.bin | cut -d' ' -f1)
[ "$got" = "$want" ] || die "tlsnic serve: sha256 $got, want $want"
fetched=$((fetched + 1))
echo "$(rate "$(stat -c %s serve.bin)" "$t0" "$t1"), sha256 ok"
grep '#1 ' serve.out | sed 's/^tlsnic serve: #1 /      server: /'
grep -q 'TX device' serve.out || die "tlsnic serve did not use the device"

step 8 "openssl s_server -WWW in the peer namespace (no preload: a plain TLS peer) ..."
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
tb_spawn peer timeout 300 openssl s_server -accept "$tb_peer_v4:4435" -cert cert.pem \
  -key key.pem -WWW >peer-server.out 2>peer-server.err
peer_server_pid=$!
tb_wait_listening peer 4435 5 || die "the peer's s_server does not listen"
echo "listening on $tb_peer_v4:4435"

step 9 "downloads into the host namespace, RX in device mode:"
echo
t0=$(now)
printf 'GET /file.bin HTTP/1.0\r\n\r\n' | tb_in host env OPENSSL_CONF="$work/openssl.cnf" \
  TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/rx-stats" TLSNIC_PRELOAD_DEBUG=1 \
  LD_PRELOAD="$preload" timeout 120 openssl s_client -connect "$tb_peer_v4:4435" -tls1_2 -quiet \
  -ign_eof >rx.raw 2>rx.err || true
t1=$(now)
tb_http_body "$tb_s_server_header" rx.raw rx.bin
got=$(sha256sum < rx.bin | cut -d' ' -f1)
[ "$got" = "$want" ] || die "s_client download: sha256 $got, want $want"
rx_mode=$(grep 'setsockopt TLS_RX' rx.err | tail -n 1 | sed 's/.* mode //; s/ ([-0-9]*)$//')
[ "$rx_mode" = device ] || die "s_client's RX was not in device mode: $(grep 'TLS_RX' rx.err | tail -n 1)"
fetched=$((fetched + 1))
echo "      openssl s_client -tls1_2 under libtlsnic-preload.so: $(rate "$(stat -c %s rx.bin)" "$t0" "$t1"), sha256 ok; client RX mode: $rx_mode"
tb_in host env TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/get-stats" \
  timeout 120 "$tlsnic" get --addr "$tb_peer_v4" --port 4435 --path /file.bin --out "$work/get.bin" \
  --tls13 >get.out 2>&1 || die "tlsnic get: $(tail -n 1 get.out)"
got=$(sha256sum < get.bin | cut -d' ' -f1)
[ "$got" = "$want" ] || die "tlsnic get: sha256 $got, want $want"
grep -q 'RX device' get.out || die "tlsnic get did not receive through the device: $(cat get.out)"
fetched=$((fetched + 1))
echo "      $(cat get.out), sha256 ok"

step 10 "counters (tlsnic stats: the device, its flows, the hosts):"
echo
"$tlsnic" stats --brief --ctl "$tb_ctl" --host "$work/host-stats" | sed 's/^/      /'
echo "      tlsnic serve's own host counters: $(awk '$1 ~ /^(TlsTxDevice|TlsTxSw|TlsnicTxDeviceBytes|TlsnicTxSwBytes)$/ { printf "%s %s  ", $1, $2 }' serve-stats)"
echo "      the downloading s_client (host counters, RX):"
"$tlsnic" stats --ctl /nonexistent --host "$work/rx-stats" | sed -n '/^summary: of .* received/,$p' | sed 's/^/      /'
echo "      tlsnic get --tls13: $(awk '$1 ~ /^(TlsRxDevice|TlsnicRxDeviceBytes|TlsnicRxSwBytes)$/ { printf "%s %s  ", $1, $2 }' get-stats)"
step 11 "teardown ..."
kill "$peer_server_pid"; wait "$peer_server_pid" 2>/dev/null || true
tb_daemon_stop || true
tb_netns_down
echo "ok"
echo
echo "tlsnic demo: PASS: $fetched downloads of $size_mb MB, byte-exact: 3 served by the host (s_server"
echo "             under the preload library, and tlsnic serve), encrypted by the device; 2 received"
echo "             by the host (s_client under the preload library, and tlsnic get), decrypted by"
echo "             the device"
