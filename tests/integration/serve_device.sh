#!/usr/bin/env bash
# `tlsnic serve` in device mode through tlsnicd: the CLI's own server (libssl handshake,
# keys exported, the socket handed to the tlsnic socket layer, which offers it to tlsnicd
# by itself) serves a file to unmodified clients in the peer namespace.
#
#   serve_device.sh TLSNICD TLSNIC NET_SH
#
# TLS 1.3 (default ciphers) and TLS 1.2 (--cipher chacha20), curl and openssl s_client per
# version: every download sha256-exact; the server's line for each connection says TX
# device; the host counters (TLSNIC_STATS_FILE) count one TlsTxDevice per connection and
# no TlsTxSw; the device lists each connection's flow (tlsnic stats --flows) as ended, its
# encrypted bytes between the file's size and size + 5 %.
#
# Root only (exits 77 otherwise); own namespaces (unique prefix); removed on exit.
set -euo pipefail

tb_tlsnicd=$(readlink -f "$1") tlsnic=$(readlink -f "$2") net_sh=$(readlink -f "$3")
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
size=$((8 * 1000 * 1000))
tb_require_root tun
tb_require_tools openssl curl sha256sum ip timeout
tb_workdir tlsnic-serve
work=$tb_work
tb_netns tlsnic-it-serve
server_ip=$tb_host_v4 port=5443
tb_on_failure() { tb_show_log "$work"/server*.out; }
fail() { echo "FAIL: $*"; exit 1; }
counter() { tb_counter "$@"; }
got_sha() { sha256sum < "$1" | cut -d' ' -f1; }

cd "$work"
head -c "$size" /dev/urandom > file.bin
want=$(got_sha file.bin)
# tlsnic serve's answer before the file's bytes (s_client shows it; curl strips it).
http_header=$'HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: '"$size"$'\r\nConnection: close\r\n\r\n'

tb_daemon_start

fails=0
for run in "tls13 --tls13" "tls12 --tls12 --cipher chacha20"; do
  read -r label serve_opts <<<"$run"
  port=$((port + 1))
  rm -f host-stats
  # shellcheck disable=SC2086
  tb_spawn host env TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/host-stats" \
    timeout 120 "$tlsnic" serve --addr "$server_ip" --port "$port" --file "$work/file.bin" \
    --count 2 $serve_opts >"server-$label.out" 2>&1
  server_pid=$!
  tb_wait_for "server-$label.out" "listening on" 10

  curl_version=--tlsv1.3 s_client_version=-tls1_3
  [ "$label" = tls12 ] && curl_version="--tlsv1.2 --tls-max 1.2" s_client_version=-tls1_2
  # shellcheck disable=SC2086
  tb_in peer curl -sk $curl_version --max-time 60 "https://$server_ip:$port/file.bin" \
    -o curl.bin || true
  printf 'GET /file.bin HTTP/1.0\r\n\r\n' | tb_in peer timeout 60 openssl s_client \
    -connect "$server_ip:$port" $s_client_version -quiet -ign_eof >raw.out 2>s_client.err || true
  tb_http_body "$http_header" raw.out s_client.bin
  wait "$server_pid" || fail "$label: tlsnic serve exited with an error: $(cat "server-$label.out")"

  device_lines=$(grep -c '#[12] .* TX device, .* -> 200, '"$size"' bytes' "server-$label.out" || true)
  dev=$(counter TlsTxDevice host-stats) sw=$(counter TlsTxSw host-stats)
  "$tlsnic" stats --flows --ctl "$tb_ctl" > flows.txt || fail "tlsnic stats --flows"
  flows_ok=$(awk -v me="$server_ip:$port" -v s="$size" \
    '$1 == me && $3 == "tx" && $4 == "ended" && $6 > 0 && $7 >= s && $7 <= s + s / 20 { n++ }
     END { print n + 0 }' flows.txt)
  flow_bytes=$(awk -v me="$server_ip:$port" '$1 == me { printf "%s ", $7 }' flows.txt)
  for client in curl s_client; do
    got=$(got_sha "$client.bin")
    if [ "$got" = "$want" ]; then
      echo "PASS $label $client: sha256 ok ($size bytes)"
    else
      echo "FAIL $label $client: sha256 $got (want $want), $(stat -c %s "$client.bin") bytes"
      fails=$((fails + 1))
    fi
  done
  if [ "$device_lines" = 2 ] && [ "$dev" = 2 ] && [ "$sw" = 0 ] && [ "$flows_ok" = 2 ]; then
    echo "PASS $label: both connections TX device (TlsTxDevice=$dev TlsTxSw=$sw); device flows encrypted $flow_bytes bytes"
  else
    echo "FAIL $label: $device_lines server lines say TX device, TlsTxDevice=$dev TlsTxSw=$sw, $flows_ok device flows of ~$size bytes ($flow_bytes)"
    cat "server-$label.out" flows.txt
    fails=$((fails + 1))
  fi
done
tb_daemon_stop || fail "tlsnicd exited with an error"
[ "$fails" = 0 ] || fail "$fails checks"
echo "PASS: tlsnic serve in device mode through tlsnicd, TLS 1.3 and 1.2, curl and openssl s_client"
