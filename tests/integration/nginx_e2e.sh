#!/usr/bin/env bash
# A real application (issue 11): Debian's nginx with kTLS (`ssl_conf_command Options KTLS;`,
# `sendfile on`), unmodified, under libtlsnic-preload.so in the host namespace, serving
# through tlsnicd to curl and wrk (Debian's load generator, every response checked byte for
# byte by nginx_check.lua) in the peer namespace. A root master with two workers (root: the
# host side reads TCP sequence numbers with TCP_REPAIR), every path under the work folder,
# listening only on the host namespace's address: port 4433 TLS 1.3, port 4434 TLS 1.2
# (`reuseport`: each worker has its own listening socket).
#
#   nginx_e2e.sh MODE TLSNICD PRELOAD_SO NET_SH TLSNIC
#
#   load         curl fetches four files (1 KB, 16 KB, 200 KB, and 20 MB with plaintext
#                markers) over TLS 1.3 and over TLS 1.2: byte-exact, the access log names
#                the protocol; then wrk, 500 connections on TLS 1.3 and 100 on TLS 1.2 for
#                30 s (nginx ends a connection every 20 requests, so handshakes and closes
#                go on throughout): at least 500 connections established at once, every
#                response 200 and byte-exact, no wrk error (connect, read, write, status,
#                timeout); every socket offloaded (the workers' TlsTxDevice counts them, no
#                TlsTxSw) and the device encrypted at least every byte wrk received
#                (tx_tls_encrypted_bytes).
#   kill_worker  under wrk's load (400 + 100 connections), curl downloads the 20 MB file at
#                2 MB/s on connections spread over both workers, and six curl clients make
#                150 keep-alive requests each; one worker is SIGKILLed (stopped first, to
#                count its connections) while it still writes a download (under 8 MB
#                received, at most ~10 MB in the socket buffers: the file's end is not in
#                the socket yet). The other worker loses nothing: its downloads and its
#                curl clients (running across the kill) complete byte-exact, exit 0. The killed worker's downloads end with a
#                byte-exact decrypted prefix of the file (the one it was writing: short),
#                its curl clients too. wrk: every response it completed byte-exact, no
#                connect, status or timeout error (its read/write errors are reported: see
#                below). The daemon finished the killed worker's flows (no finish
#                timeout); nginx logs nothing worse than the kill itself, and a new worker
#                takes the old one's place.
#   reload       `nginx -s reload` under wrk's load (500 + 100 connections), with two 20 MB
#                downloads (TLS 1.3, TLS 1.2) and six curl clients (150 keep-alive requests
#                each) in flight. What a graceful reload may lose, and nothing else: the old
#                workers finish every request they have read (their access-log lines: 200,
#                request_completion OK; both downloads byte-exact) and close their idle
#                keep-alive connections at once (ngx_close_idle_connections), and a
#                connection once its response is done; a request the client sends on such a
#                connection as it closes is never read, and HTTP/1.1 (RFC 9112, 9.3.1) has
#                the client send it again: curl does (only when no byte of a response came
#                back), so the curl clients must see no failure at all, every body
#                byte-exact; the old workers exit with code 0; wrk as in kill_worker.
#
# wrk's read/write error counts are reported, not bounded: wrk does not send a request
# again, and it counts failed connections beyond those a kill or a reload closes even
# against nginx without tlsnic (plain OpenSSL, same kill: 376 read errors for 234
# connections of the killed worker), so they cannot tell a legitimate loss from another;
# the curl clients can.
#
# Every mode: tlsnicd captures the host side and the wire side into FIFOs read by grep
# (a capture of 30 s of load would fill gigabytes; TLSNIC_NGINX_PCAP_FILES=1 writes them to
# host.pcap and wire.pcap in the work folder instead, and nginx's TLS secrets to keylog,
# with TLSNIC_KEEP_WORK=1 to look into a failure): the wire holds no plaintext marker, the host side does (the test can fail); nginx's error log has no [error], [crit], [alert] or
# [emerg] line (kill_worker: except the master's alert that the killed worker exited on
# signal 9); no nginx process is left.
#
# Root only (exits 77 otherwise, or when nginx, wrk or curl is missing); own namespaces
# (unique prefix); removed on exit.
set -euo pipefail

mode=$1 tb_tlsnicd=$(readlink -f "$2") preload=$(readlink -f "$3") net_sh=$(readlink -f "$4")
tlsnic=$(readlink -f "$5")
check_lua=$(cd "$(dirname "$0")" && pwd)/nginx_check.lua
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
tb_require_root tun
PATH=$PATH:/usr/sbin:/sbin
tb_require_tools nginx wrk curl openssl sha256sum cmp ip ss pgrep mkfifo timeout
tb_workdir tlsnic-nginx
work=$tb_work
tb_netns "tlsnic-it-ngx-$mode"
ip4=$tb_host_v4
ngx_pid="" fifo_pids=()
big_size=$((20 * 1000 * 1000))

tb_on_failure() {
  kill_leftover_nginx
  echo "--- nginx error.log (errors, then tail)" >&2
  grep -E '\[(error|crit|alert|emerg)\]' "$work/error.log" 2>/dev/null | head -n 10 >&2 || true
  grep -v '^tlsnic-preload: \(sendfile\|close\|setsockopt\)' "$work/error.log" 2>/dev/null | tail -n 15 >&2 || true
  for f in "$work"/wrk-*.out; do [ -s "$f" ] && { echo "--- ${f##*/}"; cat "$f"; } >&2; done
  echo "--- the TUN devices (dropped: frames the stacks could not queue for tlsnicd)" >&2
  tb_in host ip -s link show "$tb_host_if" >&2 2>/dev/null || true
  tb_in peer ip -s link show "$tb_peer_if" >&2 2>/dev/null || true
  true
}
fail() { echo "FAIL: $*"; exit 1; }
counter() { tb_counter "$@"; }
# A host counter summed over every nginx process's file (TLSNIC_STATS_FILE with %p).
host_counter() { cat "$work"/stats/host.* 2>/dev/null | awk -v k="$1" '$1 == k { s += $2 } END { printf "%.0f\n", s + 0 }'; }
device_stats() { tb_daemon_stats >"$1" || fail "tlsnicd stats"; }

cd "$work"
tb_tls_server_files tlsnic-nginx # key.pem, cert.pem
mkdir -p www tmp stats
# Every file carries plaintext markers: the 20 MB one at the end of each megabyte, the
# small ones at their end. Each is random bytes of its own: no file is a prefix or a suffix
# of another (nginx_check.lua needs that).
tb_marker_file "$big_size" www/big.bin
small_marker_file() { # SIZE FILE ID: random bytes ending in (at most 64) marker lines
  local n=$(($1 / 64 > 64 ? 64 : $1 / 64)) i
  {
    head -c $(($1 - 32 * n)) /dev/urandom
    for ((i = 1; i <= n; i++)); do printf 'TLSNIC-CANARY-PLAINTEXT-%03d-%03d\n' "$3" "$i"; done
  } >"$2"
}
small_marker_file 1000 www/s.bin 901
small_marker_file 16384 www/m.bin 902
small_marker_file 200000 www/l.bin 903
wrk_files=("/s.bin=$work/www/s.bin" "/s.bin=$work/www/s.bin" "/m.bin=$work/www/m.bin" "/l.bin=$work/www/l.bin")

# ---- captures: tlsnicd writes its pcaps into FIFOs; grep counts the markers in each ----

marker_count_into() { # FIFO OUT
  { grep -a -o -F TLSNIC-CANARY-PLAINTEXT "$1" || true; } | wc -l >"$2"
}
start_daemon() {
  # A TUN queues 500 frames for tlsnicd by default and drops what does not fit (it frees
  # each frame from its socket's accounting as it queues it, so TCP's small queues do not
  # hold a sender back, as a NIC's full ring would). Under 600 connections the one-threaded
  # device cannot keep up: the host's TUN stays full, a lost segment's retransmissions are
  # lost again and again (RTO backoff: 20-40 s stalls seen, no device drop in them), and
  # when wrk exits, resetting its 600 connections at once, resets that do not fit the
  # peer's TUN are gone for good (a RST is never sent again), leaving the host's ends
  # waiting for a peer that is no longer there (nginx 60 s in a handshake, tlsnicd until
  # its finish timeout). Longer queues here; the loss tests (host_device_e2e) are where
  # the device resyncs after drops.
  tb_in host ip link set "$tb_host_if" txqueuelen 5000
  tb_in peer ip link set "$tb_peer_if" txqueuelen 10000
  # The clients' fixed local ports (downloads 45001..., curl clients 46010...), never
  # handed out as ephemeral ports (wrk's 600 connections take many).
  tb_in peer sh -c 'echo 45000-46099 >/proc/sys/net/ipv4/ip_local_reserved_ports'
  if [ -n "${TLSNIC_NGINX_PCAP_FILES:-}" ]; then # to look into a failure: gigabytes
    tb_daemon_start --pcap-host "$work/host.pcap" --pcap-wire "$work/wire.pcap"
    return
  fi
  mkfifo host.fifo wire.fifo
  marker_count_into host.fifo host.markers &
  fifo_pids+=($!)
  marker_count_into wire.fifo wire.markers &
  fifo_pids+=($!)
  tb_daemon_start --pcap-host "$work/host.fifo" --pcap-wire "$work/wire.fifo"
}
# Stops tlsnicd (which closes the captures) and reads the marker counts: host_m, wire_m.
stop_daemon_and_count() {
  tb_daemon_stop || fail "tlsnicd exited with an error"
  if [ -n "${TLSNIC_NGINX_PCAP_FILES:-}" ]; then
    marker_count_into host.pcap host.markers
    marker_count_into wire.pcap wire.markers
  else
    wait "${fifo_pids[@]}" || true
    fifo_pids=()
  fi
  host_m=$(cat host.markers) wire_m=$(cat wire.markers)
  [ "$host_m" -gt 0 ] || fail "no marker in the host capture: the search would prove nothing"
  [ "$wire_m" = 0 ] || fail "$wire_m plaintext markers crossed the wire (host capture: $host_m)"
}
wait_no_flows() { # the daemon lets go of every flow once its socket can send no more (15 s)
  local i
  for ((i = 0; i < 150; i++)); do
    device_stats flows.txt
    [ "$(counter ctl_flows flows.txt)" = 0 ] && return 0
    sleep 0.1
  done
  echo "--- the daemon's flows, and the host's connections to nginx" >&2
  "$tlsnic" stats --flows --ctl "$tb_ctl" 2>&1 | grep -v ' ended ' >&2 || true
  tb_in host ss -tnpio state all "( sport = :4433 or sport = :4434 )" | grep -v TIME-WAIT >&2 || true
  fail "the daemon still holds $(counter ctl_flows flows.txt) flow(s)"
}

# ---- nginx ----

write_conf() { # KEEPALIVE_REQUESTS
  cat >nginx.conf <<EOF
daemon off;
master_process on;
worker_processes 2;
# root: tlsnic reads each connection's TCP sequence numbers with TCP_REPAIR (CAP_NET_ADMIN)
user root root;
pid $work/nginx.pid;
error_log $work/error.log info;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
  log_format check '\$pid \$server_port \$status \$bytes_sent \$body_bytes_sent \$ssl_protocol \$connection \$connection_requests \$msec \$request_uri "\$request_completion" \$remote_port \$request_time';
  access_log $work/access.log check;
  client_body_temp_path $work/tmp/body;
  proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fastcgi;
  uwsgi_temp_path $work/tmp/uwsgi;
  scgi_temp_path $work/tmp/scgi;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests $1;
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  ssl_conf_command Options KTLS;
  server {
    listen $ip4:4433 ssl reuseport backlog=1024;
    ssl_protocols TLSv1.3;
    root $work/www;
  }
  server {
    listen $ip4:4434 ssl reuseport backlog=1024;
    ssl_protocols TLSv1.2;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384;
    root $work/www;
  }
}
EOF
}
start_nginx() {
  local keylog=()
  [ -z "${TLSNIC_NGINX_PCAP_FILES:-}" ] || keylog=(SSLKEYLOGFILE="$work/keylog")
  tb_spawn host env TLSNIC_CTL="$tb_ctl" TLSNIC_STATS_FILE="$work/stats/host.%p" \
    TLSNIC_PRELOAD_DEBUG=1 LD_PRELOAD="$preload" "${keylog[@]}" \
    nginx -p "$work/" -c "$work/nginx.conf" -e "$work/error.log" >nginx.out 2>&1
  ngx_pid=$!
  tb_wait_listening host 4433 10 && tb_wait_listening host 4434 10 || fail "nginx does not listen"
  tb_poll 10 two_workers || fail "nginx has not two workers: $(workers)"
}
workers() { pgrep -P "$ngx_pid" | sort -n | tr '\n' ' '; }
two_workers() { [ "$(pgrep -c -P "$ngx_pid")" = 2 ]; }
# Graceful stop (SIGQUIT: the workers finish what they serve), bounded; then no nginx left.
stop_nginx() {
  local pid=$ngx_pid left
  kill -QUIT "$pid"
  if ! tb_poll 20 gone "$pid"; then
    left=$(workers)
    echo "nginx still running 20 s after SIGQUIT; workers $left hold:" >&2
    for w in $left; do tb_in host ss -tnpio state all "( sport = :4433 or sport = :4434 )" | grep -A1 "pid=$w," >&2 || true; done
    fail "nginx did not stop within 20 s of SIGQUIT"
  fi
  ngx_pid=""
  wait "$pid" || fail "nginx exited with status $?"
}
gone() { ! kill -0 "$1" 2>/dev/null; }
# Every nginx process of this test (its working directory is the work folder), killed:
# the exit trap's SIGTERM to the master may leave workers behind if the master dies first.
kill_leftover_nginx() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = nginx ] && [ "$(readlink "$p/cwd" 2>/dev/null)" = "$work" ] &&
      kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}
# The error log without the lines a mode expects; fails on [error], [crit], [alert], [emerg].
check_error_log() { # [EXPECTED_ALERT_REGEX]
  local bad
  bad=$({ grep -E '\[(error|crit|alert|emerg)\]' error.log || true; } | { grep -v -E "${1:-^$}" || true; })
  [ -z "$bad" ] || fail "nginx logged errors: $(echo "$bad" | head -n 5)"
}
# Every socket nginx offloaded is in device mode: per process, the TLS_TX debug lines.
check_device_mode() {
  local dev sw
  dev=$(grep -c 'setsockopt TLS_TX fd=[0-9]* -> 0 mode device' error.log || true)
  sw=$(grep -c 'setsockopt TLS_TX fd=[0-9]* -> 0 mode sw' error.log || true)
  [ "$dev" -gt 0 ] && [ "$sw" = 0 ] || fail "TLS_TX: $dev sockets in device mode, $sw in software: $(grep -m3 'TLS_TX.*mode sw' error.log)"
  echo "$dev"
}

# ---- clients ----

# wrk in the peer namespace (bounded by its own -d and by timeout): wrk-NAME.out
start_wrk() { # NAME PORT CONNECTIONS SECONDS
  tb_spawn peer timeout $(($4 + 60)) wrk -t1 -c"$3" -d"$4"s --timeout 30s -s "$check_lua" \
    "https://$ip4:$2/" -- "${wrk_files[@]}" >"wrk-$1.out" 2>&1
}
wrk_field() { # NAME FIELD: a number from wrk-NAME.out's check line
  awk -v k="$2" '/^check:/ { for (i = 2; i < NF; i += 2) if ($i == k) print $(i + 1) }' "wrk-$1.out"
}
wrk_errors() { # NAME: wrk's error counts summed over KINDS (default: all)
  local kind sum=0
  for kind in ${2:-connect read write status timeout}; do sum=$((sum + $(wrk_field "$1" "$kind"))); done
  echo "$sum"
}
wrk_line() { sed -n 's/^check: //p' "wrk-$1.out"; }
# Every completed response byte-exact (or, after a failed connection, byte-exact behind the
# failed response's byte-exact prefix that wrk carries over: nginx_check.lua; at most one
# per failed connection), and some: fails otherwise.
check_wrk_responses() { # NAME MIN_REQUESTS
  local req ver car bad
  grep -q '^check:' "wrk-$1.out" || fail "wrk $1 printed no check line: $(tail -n 3 "wrk-$1.out")"
  req=$(wrk_field "$1" requests) ver=$(wrk_field "$1" verified) car=$(wrk_field "$1" carried)
  bad=$(wrk_field "$1" bad)
  [ "$bad" = 0 ] && [ $((ver + car)) = "$req" ] || fail "wrk $1: $bad responses not byte-exact: $(wrk_line "$1")"
  [ "$car" -le "$(wrk_errors "$1" "read write")" ] || fail "wrk $1: $car responses carried over from more failed connections: $(wrk_line "$1")"
  [ "$req" -ge "$2" ] || fail "wrk $1: only $req responses: $(wrk_line "$1")"
}
# Established TLS connections to nginx, sampled every 0.5 s for SECONDS, into OUT.
sample_connections() { # SECONDS OUT
  local i
  for ((i = 0; i < $1 * 2; i++)); do
    tb_in host ss -Htn state established "( sport = :4433 or sport = :4434 )" | wc -l >>"$2"
    sleep 0.5
  done
}
# Established connections owned by nginx process PID (ss -p lists the daemon too).
connections_of() { # PID
  tb_in host ss -Htnp state established "( sport = :4433 or sport = :4434 )" | grep -c "\"nginx\",pid=$1," || true
}
# The nginx worker serving the connection from the peer's port PORT.
owner_of() { # PORT
  tb_in host ss -Htnp state established "( dport = :$1 )" |
    grep -o '"nginx",pid=[0-9]*' | head -n 1 | grep -o '[0-9]*$' || true
}
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
is_prefix_of_big() { # FILE: what curl decrypted is the big file's first bytes
  local n
  n=$(size_of "$1")
  [ "$n" -gt 0 ] && cmp -s -n "$n" "$1" www/big.bin
}
curl_tls() { # PORT: curl's options for that port's protocol
  if [ "$1" = 4433 ]; then echo "--tlsv1.3"; else echo "--tlsv1.2 --tls-max 1.2"; fi
}
# curl (peer namespace) downloads the big file on a fixed local port: big-K.bin, pid in dl_pid[K].
declare -A dl_pid
start_download() { # K PORT RATE
  # shellcheck disable=SC2046
  tb_spawn peer curl -sSk --max-time 90 $(curl_tls "$2") --limit-rate "$3" --local-port $((45000 + $1)) \
    "https://$ip4:$2/big.bin" -o "big-$1.bin" 2>"big-$1.err"
  dl_pid[$1]=$!
}
wait_downloaded() { # BYTES K...: each download holds at least BYTES (bounded: 30 s)
  local bytes=$1 k i
  shift
  for k in "$@"; do
    for ((i = 0; i < 300; i++)); do
      [ "$(size_of "big-$k.bin")" -ge "$bytes" ] && break
      sleep 0.1
    done
    [ "$(size_of "big-$k.bin")" -ge "$bytes" ] || fail "download $k: $(size_of "big-$k.bin") bytes after 30 s: $(cat "big-$k.err")"
  done
}
# curl clients: 150 keep-alive requests each (s, m, l in turn) over one connection from a
# local port range of their own (46000 + 10 P ..., to find their worker), bodies to stdout
# (probe-P.out), stopping at the first failure (--fail-early: what came is then a prefix).
# curl, as HTTP/1.1 has it (RFC 9112, 9.3.1), sends a request again on a new connection when
# its kept-alive connection closed before any byte of the response came back.
probe_urls=() probe_files=()
for ((i = 0; i < 50; i++)); do
  for f in s m l; do probe_urls+=("/$f.bin"); probe_files+=("www/$f.bin"); done
done
cat "${probe_files[@]}" >probe.expected
declare -A probe_pid
start_probe() { # P PORT
  local urls=() u
  for u in "${probe_urls[@]}"; do urls+=("https://$ip4:$2$u"); done
  # shellcheck disable=SC2046
  tb_spawn peer bash -c 'date +%s.%N >"$1.start"; "${@:2}" >"$1.out"; rc=$?; date +%s.%N >"$1.end"; exit $rc' \
    _ "probe-$1" curl -sSk --max-time 90 --fail-early $(curl_tls "$2") \
    --local-port $((46000 + 10 * $1))-$((46009 + 10 * $1)) "${urls[@]}" 2>"probe-$1.err"
  probe_pid[$1]=$!
}
probe_owner() { # P: the worker serving probe P's connection
  tb_in host ss -Htnp state established "( dport >= :$((46000 + 10 * $1)) and dport <= :$((46009 + 10 * $1)) )" |
    grep -o '"nginx",pid=[0-9]*' | head -n 1 | grep -o '[0-9]*$' || true
}
probe_spans() { # P TIME: probe P started before TIME and ended after it
  [ "$(echo "$(cat "probe-$1.start") < $2 && $(cat "probe-$1.end") > $2" | bc)" = 1 ]
}
probe_is_prefix() { # P: what probe P got is the expected bodies' first bytes
  cmp -s -n "$(size_of "probe-$1.out")" "probe-$1.out" probe.expected
}
wait_probes_going() { # P...: each has had a response (bounded: 30 s)
  local p i
  for p in "$@"; do
    for ((i = 0; i < 300; i++)); do
      [ "$(size_of "probe-$p.out")" -gt 0 ] && break
      sleep 0.1
    done
    [ "$(size_of "probe-$p.out")" -gt 0 ] || fail "curl client $p has no response after 30 s: $(cat "probe-$p.err")"
  done
}

# Access-log lines (fields: pid port status bytes_sent body_bytes ssl_protocol connection
# connection_requests msec uri "completion" remote_port request_time) that are not a complete 200 of the right size.
incomplete_log_lines() { # AWK_CONDITION selecting the lines to check
  awk -v s="$(size_of www/s.bin)" -v m="$(size_of www/m.bin)" -v l="$(size_of www/l.bin)" \
    -v b="$big_size" "$1"' {
      want = ($10 == "/s.bin") ? s : ($10 == "/m.bin") ? m : ($10 == "/l.bin") ? l : ($10 == "/big.bin") ? b : -1
      if ($3 != 200 || $5 != want || $11 != "\"OK\"") print }' access.log
}

write_conf 1000
case "$mode" in
load)
  write_conf 20
  start_daemon
  start_nginx
  # curl: four files per protocol over one keep-alive connection each, byte-exact.
  for port in 4433 4434; do
    args=()
    for f in s m l big; do args+=("https://$ip4:$port/$f.bin" -o "got-$port-$f.bin"); done
    # shellcheck disable=SC2046
    tb_in peer curl -sk --max-time 60 $(curl_tls $port) "${args[@]}" || fail "curl on port $port: exit $?"
    for f in s m l big; do
      cmp -s "got-$port-$f.bin" "www/$f.bin" || fail "curl $f.bin on port $port: not byte-exact ($(size_of "got-$port-$f.bin") bytes)"
    done
  done
  protos=$(awk '{ print $2 "=" $6 }' access.log | sort | uniq -c | tr -s ' ' | tr '\n' ',')
  [ "$protos" = " 4 4433=TLSv1.3, 4 4434=TLSv1.2," ] || fail "protocols in the access log: $protos"
  echo "PASS curl: s/m/l/big.bin (1000, 16384, 200000, $big_size bytes) byte-exact over TLS 1.3 and TLS 1.2"

  device_stats before
  secs=30
  start_wrk tls13 4433 500 $secs
  wrk13=$!
  start_wrk tls12 4434 100 $secs
  wrk12=$!
  sample_connections $secs connections.txt &
  sampler=$!
  wait "$wrk13" || fail "wrk TLS 1.3 exit $?: $(tail -n 3 wrk-tls13.out)"
  wait "$wrk12" || fail "wrk TLS 1.2 exit $?: $(tail -n 3 wrk-tls12.out)"
  wait "$sampler" || true
  device_stats after
  check_wrk_responses tls13 1000
  check_wrk_responses tls12 200
  for w in tls13 tls12; do
    [ "$(wrk_errors $w)" = 0 ] || fail "wrk $w: errors: $(wrk_line $w)"
  done
  most=$(sort -n connections.txt | tail -n 1)
  [ "$most" -ge 500 ] || fail "at most $most connections at once (want >= 500)"
  stop_nginx
  wait_no_flows
  check_error_log
  bad_lines=$(incomplete_log_lines '$11 == "\"OK\"" || $3 != 200' | wc -l)
  [ "$bad_lines" = 0 ] || fail "access log: $bad_lines answers not 200 of the file's size: $(incomplete_log_lines '$11 == "\"OK\"" || $3 != 200' | head -n 3)"
  ndev=$(check_device_mode)
  tx_dev=$(host_counter TlsTxDevice) tx_sw=$(host_counter TlsTxSw)
  dev_bytes=$(host_counter TlsnicTxDeviceBytes) sw_bytes=$(host_counter TlsnicTxSwBytes)
  enc=$(($(counter tx_tls_encrypted_bytes after) - $(counter tx_tls_encrypted_bytes before)))
  got=$(($(wrk_field tls13 bytes) + $(wrk_field tls12 bytes)))
  reqs=$(($(wrk_field tls13 requests) + $(wrk_field tls12 requests)))
  [ "$tx_sw" = 0 ] && [ "$sw_bytes" = 0 ] || fail "host: TlsTxSw $tx_sw, TlsnicTxSwBytes $sw_bytes: some TX in software"
  [ "$tx_dev" -ge 600 ] && [ "$tx_dev" = "$ndev" ] || fail "host: TlsTxDevice $tx_dev (TLS_TX device lines: $ndev)"
  [ "$enc" -ge "$got" ] || fail "the device encrypted $enc bytes during the load, wrk received $got"
  stop_daemon_and_count
  echo "PASS load: wrk $reqs responses in $secs s, all byte-exact, 0 errors (TLS 1.3: $(wrk_line tls13 | cut -d"'" -f1); TLS 1.2: $(wrk_line tls12 | cut -d"'" -f1)); up to $most connections at once"
  echo "PASS offload: $tx_dev sockets TX in device mode (TlsTxDevice), 0 in software; host framed $dev_bytes bytes for the device; the device encrypted $enc bytes during the load (wrk received $got); markers: host capture $host_m, wire 0; nginx error log clean"
  ;;
kill_worker)
  start_daemon
  start_nginx
  secs=25
  start_wrk tls13 4433 400 $secs
  wrk13=$!
  start_wrk tls12 4434 100 $secs
  wrk12=$!
  sleep 2
  for p in 1 2 3 4 5 6; do start_probe $p $((p % 2 == 1 ? 4433 : 4434)); done
  wait_probes_going 1 2 3 4 5 6
  declare -A powner
  for p in 1 2 3 4 5 6; do
    powner[$p]=$(probe_owner $p)
    [ -n "${powner[$p]}" ] || fail "no nginx worker owns curl client $p's connection"
  done
  # Big downloads at 2 MB/s, two at a time (bounded: 12), until one that nginx is still
  # writing (under 5 MB received, with at most ~10 MB in the socket buffers) is on a worker
  # whose sibling serves a download and a curl client: that worker is the victim.
  declare -A owner
  n=0 victim=""
  while ((n < 12)) && [ -z "$victim" ]; do
    for k in $((n + 1)) $((n + 2)); do start_download $k $((k % 2 == 1 ? 4433 : 4434)) 2M; done
    wait_downloaded 1000000 $((n + 1)) $((n + 2))
    n=$((n + 2))
    for ((k = 1; k <= n; k++)); do
      [ -n "${owner[$k]:-}" ] || owner[$k]=$(owner_of $((45000 + k)))
      [ -n "${owner[$k]}" ] || fail "no nginx worker owns download $k ($(size_of "big-$k.bin") bytes)"
    done
    for ((k = n; k >= 1; k--)); do
      w=${owner[$k]}
      [ "$(size_of "big-$k.bin")" -lt 5000000 ] || continue
      [ "$(printf '%s\n' "${owner[@]}" | grep -vc "^$w\$" || true)" -gt 0 ] || continue
      [ "$(printf '%s\n' "${powner[@]}" | grep -vc "^$w\$" || true)" -gt 0 ] || continue
      victim=$w
      break
    done
  done
  [ -n "$victim" ] || fail "no worker to kill: downloads on $(for ((k = 1; k <= n; k++)); do printf '%s ' "${owner[$k]}"; done), curl clients on ${powner[*]}"
  others=()
  for ((k = 1; k <= n; k++)); do [ "${owner[$k]}" = "$victim" ] || others+=("$k"); done
  victim_dl=$((n - ${#others[@]}))
  echo "downloads 1-$n on workers: $(for ((k = 1; k <= n; k++)); do printf '%s ' "${owner[$k]}"; done); curl clients 1-6 on workers: $(for p in 1 2 3 4 5 6; do printf '%s ' "${powner[$p]}"; done)"
  device_stats before
  old_workers=$(workers)
  # Stopped first, so that its connections can be counted, then killed.
  kill -STOP "$victim"
  declare -A at_kill
  mid=0
  for ((k = 1; k <= n; k++)); do
    at_kill[$k]=$(size_of "big-$k.bin")
    if [ "${owner[$k]}" = "$victim" ] && [ "${at_kill[$k]}" -lt 8000000 ]; then mid=$((mid + 1)); fi
  done
  held=$(connections_of "$victim")
  kill_at=$(date +%s.%N)
  kill -KILL "$victim"
  echo "worker $victim (of $old_workers) SIGKILLed holding $held connections ($victim_dl download(s) among them); downloads on the other worker: ${others[*]}"
  for ((k = 1; k <= n; k++)); do
    rc=0
    wait "${dl_pid[$k]}" || rc=$?
    if [ "${owner[$k]}" = "$victim" ]; then
      is_prefix_of_big "big-$k.bin" || fail "download $k (killed worker): what curl got is not a prefix of the file"
      # nginx was still writing it: the file's end never reached the socket.
      [ "${at_kill[$k]}" -ge 8000000 ] || [ "$(size_of "big-$k.bin")" -lt "$big_size" ] ||
        fail "download $k (killed worker, ${at_kill[$k]} bytes at the kill) is complete"
      echo "download $k on the killed worker: ${at_kill[$k]} bytes at the kill, then $(size_of "big-$k.bin"), a decrypted prefix of the file (curl exit $rc)"
    else
      cmp -s "big-$k.bin" www/big.bin || fail "download $k (worker ${owner[$k]}) not byte-exact: $(size_of "big-$k.bin") bytes, curl exit $rc"
      echo "download $k on worker ${owner[$k]}: byte-exact"
    fi
  done
  # The curl clients: those of the other worker lose nothing; the killed worker's get a
  # byte-exact prefix (or all of it, if curl could send the request again).
  spanned=0 on_victim=0
  for p in 1 2 3 4 5 6; do
    rc=0
    wait "${probe_pid[$p]}" || rc=$?
    if [ "${powner[$p]}" = "$victim" ]; then
      on_victim=$((on_victim + 1))
      probe_is_prefix $p || fail "curl client $p (killed worker): what it got is not a prefix of the bodies"
    else
      [ "$rc" = 0 ] || fail "curl client $p (worker ${powner[$p]}): exit $rc: $(cat "probe-$p.err")"
      cmp -s "probe-$p.out" probe.expected || fail "curl client $p (worker ${powner[$p]}): the 150 bodies are not byte-exact"
      if probe_spans $p "$kill_at"; then spanned=$((spanned + 1)); fi
    fi
  done
  [ "$spanned" -ge 1 ] || fail "no curl client of the other worker was running at the kill"
  [ "$mid" -ge 1 ] || fail "no download of the killed worker was under 8 MB at the kill"
  wait "$wrk13" || fail "wrk TLS 1.3 exit $?"
  wait "$wrk12" || fail "wrk TLS 1.2 exit $?"
  check_wrk_responses tls13 500
  check_wrk_responses tls12 100
  lost=$(($(wrk_errors tls13 "read write") + $(wrk_errors tls12 "read write")))
  other=$(($(wrk_errors tls13 "connect status timeout") + $(wrk_errors tls12 "connect status timeout")))
  [ "$other" = 0 ] || fail "wrk: connect/status/timeout errors: $(wrk_line tls13); $(wrk_line tls12)"
  now_workers=$(workers)
  grep -q "worker process $victim exited on signal 9" error.log || fail "nginx did not see the worker die"
  [ "$(pgrep -c -P "$ngx_pid")" = 2 ] || fail "nginx did not start a new worker: $now_workers"
  wait_no_flows
  device_stats after
  stop_nginx
  check_error_log "worker process $victim exited on signal 9"
  check_device_mode >/dev/null
  bad_lines=$(incomplete_log_lines '$3 != 200' | wc -l)
  [ "$bad_lines" = 0 ] || fail "access log: $bad_lines answers not 200"
  finished=$(($(counter ctl_finished after) - $(counter ctl_finished before)))
  [ "$(counter ctl_finish_timeouts after)" = 0 ] || fail "the daemon reset flows at its finish timeout"
  stop_daemon_and_count
  echo "PASS SIGKILL of worker $victim (workers now: $now_workers) holding $held connections: ${#others[@]} download(s) and $((6 - on_victim)) curl client(s) (150 requests each, $spanned across the kill) on the other worker byte-exact, no failure; the killed worker's $on_victim client(s) got byte-exact prefixes; wrk: every completed response byte-exact ($(wrk_line tls13 | cut -d' ' -f1-8); $(wrk_line tls12 | cut -d' ' -f1-8)), $lost read/write errors; the daemon finished $finished flows after the kill; markers: host capture $host_m, wire 0"
  ;;
reload)
  start_daemon
  start_nginx
  secs=20
  # wrk stops at its end and closes its connections, answers in flight or not: such cuts
  # are the client's, not the old workers' (seen under load, the reload late and the old
  # workers still serving wrk when it stopped). wrk's own requests (ephemeral ports, not
  # the reserved 45000-46099) logged from half a second before its end are not judged.
  wrk_end=$(awk -v t="$(date +%s.%N)" -v s=$secs 'BEGIN { printf "%.3f", t + s - 0.5 }')
  start_wrk tls13 4433 500 $secs
  wrk13=$!
  start_wrk tls12 4434 100 $secs
  wrk12=$!
  sleep 3
  start_download 1 4433 3M
  start_download 2 4434 3M
  for p in 1 2 3 4 5 6; do start_probe $p $((p % 2 == 1 ? 4433 : 4434)); done
  wait_downloaded 2000000 1 2
  wait_probes_going 1 2 3 4 5 6
  old_workers=$(workers)
  held=0
  for w in $old_workers; do held=$((held + $(connections_of "$w"))); done
  reload_at=$(date +%s.%N)
  nginx -p "$work/" -c "$work/nginx.conf" -s reload || fail "nginx -s reload: exit $?"
  for w in $old_workers; do
    tb_poll 40 gone "$w" || fail "old worker $w still running 40 s after the reload"
  done
  old_gone_at=$(date +%s.%N)
  new_workers=$(workers)
  for w in $old_workers; do [[ " $new_workers " != *" $w "* ]] || fail "worker $w survived the reload"; done
  for k in 1 2; do
    wait "${dl_pid[$k]}" || fail "download $k (in flight across the reload): curl exit $?: $(cat "big-$k.err")"
    cmp -s "big-$k.bin" www/big.bin || fail "download $k not byte-exact: $(size_of "big-$k.bin") bytes"
  done
  spanned=0
  for p in 1 2 3 4 5 6; do
    wait "${probe_pid[$p]}" || fail "curl client $p: exit $?: $(cat "probe-$p.err")"
    cmp -s "probe-$p.out" probe.expected || fail "curl client $p: the 150 bodies are not byte-exact ($(size_of "probe-$p.out") bytes of $(size_of probe.expected))"
    if probe_spans $p "$reload_at"; then spanned=$((spanned + 1)); fi
  done
  [ "$spanned" -ge 1 ] || fail "no curl client was running at the reload"
  wait "$wrk13" || fail "wrk TLS 1.3 exit $?"
  wait "$wrk12" || fail "wrk TLS 1.2 exit $?"
  check_wrk_responses tls13 500
  check_wrk_responses tls12 100
  lost=$(($(wrk_errors tls13 "read write") + $(wrk_errors tls12 "read write")))
  other=$(($(wrk_errors tls13 "connect status timeout") + $(wrk_errors tls12 "connect status timeout")))
  [ "$other" = 0 ] || fail "wrk: connect/status/timeout errors: $(wrk_line tls13); $(wrk_line tls12)"
  # Every request an old worker read was answered in full.
  old_re=$(echo "$old_workers" | xargs | tr ' ' '|')
  old_lines=$(awk -v re="^($old_re)\$" '$1 ~ re' access.log | wc -l)
  judged='$1 ~ /^('"$old_re"')$/ && (($12 >= 45000 && $12 <= 46099) || $9 < '"$wrk_end"')'
  bad_old=$(incomplete_log_lines "$judged" | wc -l)
  [ "$bad_old" = 0 ] || fail "the old workers left $bad_old of $old_lines requests unanswered: $(incomplete_log_lines "$judged" | head -n 3)"
  [ "$(incomplete_log_lines '$3 != 200' | wc -l)" = 0 ] || fail "access log: answers not 200"
  for w in $old_workers; do
    grep -q "worker process $w exited with code 0" error.log || fail "old worker $w did not exit with code 0: $(grep "process $w exited" error.log)"
  done
  wait_no_flows
  stop_nginx
  check_error_log
  check_device_mode >/dev/null
  stop_daemon_and_count
  echo "PASS nginx -s reload under load: old workers ($old_workers) held $held connections and exited (code 0) $(echo "$old_gone_at - $reload_at" | bc | cut -c1-4) s after the reload, having answered all $old_lines requests they read in full; both 20 MB downloads in flight byte-exact; 6 curl clients (900 requests, $spanned across the reload) byte-exact, no failure; wrk: $lost read/write errors on the closed keep-alive connections, every completed response byte-exact ($(wrk_line tls13 | cut -d' ' -f1-8); $(wrk_line tls12 | cut -d' ' -f1-8)); markers: host capture $host_m, wire 0"
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
