#!/usr/bin/env bash
# Unmodified `openssl s_server -WWW -sendfile`, with KTLS switched on in its OpenSSL config
# and libtlsnic-preload.so preloaded, serves a 50 MB file to curl, gnutls-cli and
# openssl s_client (TLS 1.3 and TLS 1.2). Each download must match the file's sha256, and
# the server's tlsnic counters must show the TLS went through tlsnic (TlsTxSw and records
# counted; for TLS 1.2, where OpenSSL 3.0 also receives through kTLS, TlsRxSw and received
# records too), so OpenSSL cannot pass by quietly falling back to its user-space TLS.
#
# Usage: preload_s_server.sh PRELOAD_SO
# Runs in a network namespace of its own (needs root); skipped (77) otherwise.
set -euo pipefail

preload=$(readlink -f "$1")
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$(readlink -f "$0")")/../../scripts/lib/testbed.sh"
size_mb=${TLSNIC_PRELOAD_FILE_MB:-50}

if [ -z "${TLSNIC_IN_NETNS:-}" ]; then
    tb_require_root
    tb_require_tools unshare openssl curl gnutls-cli sha256sum ip timeout
    exec env TLSNIC_IN_NETNS=1 unshare --net "$0" "$@"
fi
ip link set lo up

tb_workdir tlsnic-preload
work=$tb_work
server_pid=
cd "$work"

tb_tls_server_files localhost
head -c $((size_mb * 1000 * 1000)) /dev/urandom > file.bin
want=$(sha256sum < file.bin | cut -d' ' -f1)

port=4433
fail=0

start_server() { # $1 = extra s_server options
    rm -f stats
    # shellcheck disable=SC2086
    OPENSSL_CONF=$work/openssl.cnf TLSNIC_STATS_FILE=$work/stats LD_PRELOAD=$preload \
        timeout 300 openssl s_server -accept 127.0.0.1:$port -cert cert.pem -key key.pem \
        -WWW -sendfile -naccept 1 $1 > server.out 2> server.err &
    server_pid=$!
    tb_poll 5 listening || true
}
# shellcheck disable=SC2317 # called through tb_poll
listening() { local out; out=$(ss -ltn 2>/dev/null) && [[ $out == *":$port "* ]]; }

stop_server() {
    tb_poll 5 server_gone || true
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
# shellcheck disable=SC2317 # called through tb_poll
server_gone() { ! kill -0 "$server_pid" 2>/dev/null; }

# s_server -WWW answers with exactly this header block before the file's bytes.
http_header=$tb_s_server_header
body_of() { tb_http_body "$http_header" "$1" "$2"; } # that header stripped from $1 into $2

check() { # $1 = label, $2 = downloaded body, $3 = 1 if OpenSSL also receives through kTLS
    local got tx records rx rx_records rx_ok=1
    got=$(sha256sum < "$2" | cut -d' ' -f1)
    tx=$(awk '$1 == "TlsTxSw" {print $2}' stats 2>/dev/null || echo 0)
    records=$(awk '$1 == "TlsnicTxRecords" {print $2}' stats 2>/dev/null || echo 0)
    rx=$(awk '$1 == "TlsRxSw" {print $2}' stats 2>/dev/null || echo 0)
    rx_records=$(awk '$1 == "TlsnicRxRecords" {print $2}' stats 2>/dev/null || echo 0)
    # OpenSSL 3.0 receives through kTLS for TLS 1.2 only: there the request came via tlsnic
    if [ "$3" = 1 ] && { [ "${rx:-0}" -lt 1 ] || [ "${rx_records:-0}" -lt 1 ]; }; then rx_ok=0; fi
    if [ "$got" = "$want" ] && [ "${tx:-0}" -ge 1 ] && [ "${records:-0}" -ge $((size_mb * 1000 * 1000 / 16384)) ] \
        && [ $rx_ok = 1 ] && grep -q "KTLS SENDFILE" server.err; then
        echo "PASS $1: sha256 ok, TlsTxSw=$tx, TlsnicTxRecords=$records, TlsRxSw=$rx, TlsnicRxRecords=$rx_records"
    else
        echo "FAIL $1: sha256 $got (want $want), TlsTxSw=${tx:-none}, TlsnicTxRecords=${records:-none}, TlsRxSw=${rx:-none}, TlsnicRxRecords=${rx_records:-none}"
        sed 's/^/  server: /' server.err
        fail=1
    fi
}

for proto in "" "-no_tls1_3"; do
    label=${proto:+TLS 1.2}
    label=${label:-TLS 1.3}
    rx_expected=0
    [ -n "$proto" ] && rx_expected=1

    start_server "$proto"
    curl -sk --max-time 120 "https://127.0.0.1:$port/file.bin" -o curl.bin || true
    stop_server
    check "curl, $label" curl.bin $rx_expected

    start_server "$proto"
    rm -f gnutls.out
    # gnutls-cli stops reading when its stdin ends: keep stdin open until the whole
    # response is in (bounded), or the server has closed.
    ( printf 'GET /file.bin HTTP/1.0\r\n\r\n'
      for _ in $(seq 1 1800); do
          [ "$(stat -c %s gnutls.out 2>/dev/null || echo 0)" -ge $((size_mb * 1000 * 1000 + ${#http_header})) ] && break
          kill -0 "$server_pid" 2>/dev/null || { sleep 0.5; break; }
          sleep 0.1
      done ) | timeout 200 gnutls-cli --insecure -p "$port" 127.0.0.1 --logfile=gnutls.log \
        > gnutls.out || true
    stop_server
    body_of gnutls.out gnutls.bin
    check "gnutls-cli, $label" gnutls.bin $rx_expected

    start_server "$proto"
    printf 'GET /file.bin HTTP/1.0\r\n\r\n' | timeout 120 openssl s_client -connect "127.0.0.1:$port" \
        -quiet -ign_eof > s_client.out 2> s_client.err || true
    stop_server
    body_of s_client.out s_client.bin
    check "openssl s_client, $label" s_client.bin $rx_expected
done

exit $fail
