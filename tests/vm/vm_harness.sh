#!/usr/bin/env bash
# The VM harness itself: vm/run.sh boots the guest kernel, runs a command in the host's
# current directory, returns its exit status and output, keeps the host's files untouched
# and hands back what the guest put in $TLSNIC_VM_OUT; the guest kernel has kTLS.
# Usage: vm_harness.sh VM_RUN
set -uo pipefail
run=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

out=$("$run" --timeout 120 --out "$tmp/out" -- bash -c '
  echo "stdout-marker"; echo "stderr-marker" >&2
  echo "release $(uname -r)"
  modprobe tls && grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp && echo "ulp tls ok"
  [ -e /proc/net/tls_stat ] && echo "tls_stat ok"
  touch "$PWD/written-in-the-guest" && echo "guest wrote"
  echo kept > "$TLSNIC_VM_OUT/result.txt"
  exit 7' 2>"$tmp/err")
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "$out"
  exit 77
fi
fail() { echo "FAIL: $*"; echo "--- output:"; echo "$out"; echo "--- harness:"; cat "$tmp/err"; exit 1; }
[ "$rc" -eq 7 ] || fail "exit status $rc, want the command's 7"
for want in stdout-marker stderr-marker "ulp tls ok" "tls_stat ok" "guest wrote"; do
  grep -qx "$want" <<<"$out" || fail "no line \"$want\""
done
grep -q "^release $(vm_kver=$(sed -n 's/^KVER=//p' < <("$(dirname "$run")/kernel.sh" env)); echo "$vm_kver")\$" <<<"$out" ||
  fail "the guest did not run the cached kernel"
[ ! -e "$tmp/written-in-the-guest" ] || fail "a file the guest wrote reached the host"
[ "$(cat "$tmp/out/result.txt" 2>/dev/null)" = kept ] || fail "\$TLSNIC_VM_OUT/result.txt not handed back"
grep "guest exit status" "$tmp/err"
echo "PASS: vm/run.sh runs a command in a kTLS guest and returns its status (7) and output"
