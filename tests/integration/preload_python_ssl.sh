#!/usr/bin/env bash
# Python's ssl module as a server under libtlsnic-preload.so: an http.server over ssl with
# OpenSSL's kTLS switched on (SSL_OP_ENABLE_KTLS), fetched by curl with TLS 1.3 and TLS 1.2.
# Python loads libssl with dlopen (its _ssl module), so the preload library's SSL_new
# wrapper cannot find libssl's with dlsym(RTLD_NEXT): it used to return NULL and Python
# died with SIGSEGV on the first connection. Each download must be byte-exact, TX must have
# gone through tlsnic (TLS_TX in the debug lines, TlsTxSw counted), and SSLKEYLOGFILE must
# get the secrets (the key log callback is installed through the same lookup).
#
# Usage: preload_python_ssl.sh PRELOAD_SO
# Runs in a network namespace of its own (needs root); skipped (77) otherwise.
set -euo pipefail

preload=$(readlink -f "$1")

if [ -z "${TLSNIC_IN_NETNS:-}" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
        echo "SKIP: needs root and unshare for a private network namespace"
        exit 77
    fi
    for tool in python3 openssl curl sha256sum ip timeout; do
        command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
    done
    python3 -c 'import ssl' 2>/dev/null || { echo "SKIP: python3 has no ssl module"; exit 77; }
    exec env TLSNIC_IN_NETNS=1 unshare --net "$0" "$@"
fi
ip link set lo up

work=$(mktemp -d /tmp/tlsnic-pyssl.XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
    -out cert.pem -subj /CN=localhost -days 2 2>/dev/null
mkdir www
head -c 3000000 /dev/urandom > www/file.bin
want=$(sha256sum < www/file.bin | cut -d' ' -f1)
cat > server.py <<'PY'
import http.server, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("cert.pem", "key.pem")
ctx.options |= 1 << 3  # SSL_OP_ENABLE_KTLS (OpenSSL 3; ssl.OP_ENABLE_KTLS from Python 3.12)
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory="www", **kw)
httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
with open("port", "w") as f:
    f.write(str(httpd.server_address[1]))
for _ in range(int(sys.argv[1])):
    httpd.handle_request()
PY

LD_PRELOAD=$preload TLSNIC_CTL=off TLSNIC_PRELOAD_DEBUG=1 TLSNIC_STATS_FILE=$work/stats \
    SSLKEYLOGFILE=$work/keys timeout 120 python3 server.py 2 > server.out 2> server.err &
server_pid=$!
for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
[ -s port ] || { echo "FAIL: the server did not start"; cat server.err; exit 1; }
port=$(cat port)

fail=0
for v in "--tlsv1.3" "--tlsv1.2 --tls-max 1.2"; do
    rm -f got.bin
    # shellcheck disable=SC2086
    if ! timeout 60 curl -sk $v -o got.bin "https://127.0.0.1:$port/file.bin"; then
        echo "FAIL: curl $v: download failed"; fail=1; continue
    fi
    got=$(sha256sum < got.bin | cut -d' ' -f1)
    if [ "$got" = "$want" ]; then echo "ok: curl $v, 3 MB byte-exact"; else echo "FAIL: curl $v: sha256 differs"; fail=1; fi
done
status=0
wait "$server_pid" || status=$?
server_pid=
if [ "$status" -ne 0 ]; then
    echo "FAIL: the python server exited with status $status (139 = SIGSEGV)"; fail=1
fi
n_tx=$(grep -c 'setsockopt TLS_TX fd=[0-9]* -> 0 mode' server.err || true)
if [ "$n_tx" -ge 2 ]; then echo "ok: TLS_TX set through tlsnic on both connections"; else
    echo "FAIL: TLS_TX through tlsnic $n_tx times (want 2)"; fail=1; fi
if grep -q '^TlsTxSw  *[1-9]' stats 2>/dev/null; then echo "ok: $(grep '^TlsTxSw' stats)"; else
    echo "FAIL: no TlsTxSw in the server's tlsnic counters"; fail=1; fi
if grep -q '^CLIENT_TRAFFIC_SECRET_0 \|^CLIENT_RANDOM ' keys 2>/dev/null; then echo "ok: SSLKEYLOGFILE written"; else
    echo "FAIL: SSLKEYLOGFILE empty: the key log callback was not installed"; fail=1; fi
if [ "$fail" -ne 0 ]; then
    echo "--- server stderr"; cat server.err
fi
exit "$fail"
