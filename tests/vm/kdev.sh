#!/usr/bin/env bash
# tlsnic as a Linux TLS offload NIC: runs tests/vm/kdev_guest.sh MODE in the guest
# (vm/run.sh), then checks its captures here: no plaintext canary of the served file on
# any wire capture, and (offload) tshark with the server's key log decrypts every download
# out of the wire capture, byte-exact.
#
#   kdev.sh MODE VM_RUN KDEVD KMOD       (MODE: offload, loss, rx, unload; see kdev_guest.sh)
set -uo pipefail
mode=$1 vm_run=$2 kdevd=$3 kmod=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$kmod" ] || [ ! -f "$kmod" ]; then
  echo "SKIP: tlsnic.ko was not built (no guest kernel headers: scripts/bootstrap.sh caches them)"
  exit 77
fi
out=$(mktemp -d /tmp/tlsnic-kdev.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$vm_run" --timeout 400 --out "$out" -- "$here/kdev_guest.sh" "$mode" "$kdevd" "$kmod"
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

shopt -s nullglob
captures=("$out"/*.pcap "$out"/*.pcapng)
[ "${#captures[@]}" -gt 0 ] || fail "the guest left no capture"
for c in "${captures[@]}"; do
  n=$(grep -c -a TLSNIC-CANARY-PLAINTEXT "$c" || true)
  [ "$n" = 0 ] || fail "$n plaintext canaries crossed the wire in $(basename "$c")"
  echo "  $(basename "$c"): $(stat -c %s "$c") bytes, no plaintext canary"
done

case "$mode" in
offload)
  command -v tshark >/dev/null || fail "tshark missing (scripts/bootstrap.sh installs it)"
  want=$(cat "$out/want.sha256")
  # Streams 0 and 1: TLS 1.2 (AES-128-GCM, AES-256-GCM, offloaded); 2: TLS 1.3 (software).
  for stream in 0 1 2; do
    timeout 300 tshark -r "$out/wire.pcap" -o "tls.keylog_file:$out/keylog" -q \
      -z "follow,tls,raw,$stream" > "$out/follow.txt" 2> "$out/tshark.err" ||
      fail "tshark: $(cat "$out/tshark.err")"
    got=$(python3 - "$out/follow.txt" <<'PY'
import hashlib, sys
# follow,tls,raw: hex lines, one direction indented with a tab; the server's is the one
# that starts with the HTTP response.
hexd = set("0123456789abcdef")
sides = {True: b"", False: b""}
for line in open(sys.argv[1]).read().splitlines():
    h = line.strip()
    if h and set(h) <= hexd:
        sides[line.startswith("\t")] += bytes.fromhex(h)
srv = next((v for v in sides.values() if v.startswith(b"HTTP/")), b"")
body = srv.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in srv else b""
print(hashlib.sha256(body).hexdigest(), len(body))
PY
)
    [ "${got%% *}" = "$want" ] || fail "tshark's decryption of stream $stream is not the file (${got#* } bytes)"
    echo "  tshark with the key log decrypts TCP stream $stream of the wire capture: the file, byte-exact"
  done
  ;;
unload)
  veth=$(stat -c %s "$out/wire-veth.pcapng") rest=$((2000000 - $(cat "$out/at_kill")))
  [ "$veth" -gt $((rest / 2)) ] ||
    fail "only $veth bytes crossed the veth, $rest were left at the kill: the download did not move there"
  ;;
esac
echo "PASS: kdev $mode"
