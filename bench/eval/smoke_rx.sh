#!/usr/bin/env bash
# A tiny receive side of `tlsnic bench` (scripts/bench-rx.sh: 2 MB samples, one round, 0 and
# 1 % loss): the outputs exist and are well formed, and RX offload ran in device mode. No
# timing is judged here: a smoke run's numbers mean nothing.
#
#   smoke_rx.sh BUILD_DIR        root only (77 otherwise, as bench-rx.sh)
set -euo pipefail
build=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/lib/testbed.sh
. "$root/scripts/lib/testbed.sh"
tb_require_root tun
tb_workdir tlsnic-bench-rx-smoke
out=$tb_work
fail() { echo "FAIL: $*"; exit 1; }
TLSNIC_BUILD_DIR=$build "$root/scripts/bench-rx.sh" --quick --mb 2 --sizes 1457,16384 \
  --loss "0 0.01" --out "$out" >"$out/stdout" 2>"$out/stderr" \
  || { cat "$out/stderr"; fail "bench-rx.sh failed"; }
for f in results-rx.json rx-samples.jsonl results-rx.md; do
  [ -s "$out/$f" ] || fail "$f missing or empty"
done
jq -e '.meta.nproc >= 1 and (.meta.command | startswith("tlsnic bench")) and (.samples | length) > 0' \
  "$out/results-rx.json" >/dev/null || fail "results-rx.json: no machine or no samples"
for phase in main paced; do
  for sc in tcp ssl sw dev; do
    jq -e --arg p "$phase" --arg sc "$sc" \
      '[.samples[] | select(.phase == $p and .scenario == $sc and .ok)] | length == 2' \
      "$out/results-rx.json" >/dev/null || fail "results-rx.json: not 2 good $phase samples of $sc"
  done
done
# RX offload: the device decrypted, the host took its plaintext (no host crypto for it).
jq -e '[.samples[] | select(.scenario == "dev" and .ok) | .dev.rx_tls_decrypted_bytes > 0 and
        .host.TlsnicRxDeviceRecords > 0] | all' "$out/results-rx.json" >/dev/null \
  || fail "results-rx.json: a dev sample without device decryption"
jq -e '[.samples[] | select(.phase == "loss")] | length == 4' "$out/results-rx.json" >/dev/null \
  || fail "results-rx.json: not 4 loss samples"
grep -q '^| record | scenario | Mbit/s | host core s/GB' "$out/results-rx.md" || fail "results-rx.md: no CPU table"
grep -q '^| loss | record | Mbit/s | records device-verified' "$out/results-rx.md" || fail "results-rx.md: no loss table"
grep -q '^| target | record | measured | met? |' "$out/results-rx.md" || fail "results-rx.md: no targets table"
echo "PASS: receive-side bench outputs well formed ($(jq '.samples | length' "$out/results-rx.json") samples)"
