#!/usr/bin/env bash
# A tiny `tlsnic bench` (0.5 s samples, one round, 2% loss only, 2 MB loss samples): the
# outputs exist and are well formed. No timing is judged here: a smoke run's numbers mean
# nothing (and the run says it is not valid: its samples are too short).
#
#   smoke.sh BUILD_DIR        root only (77 otherwise, as bench.sh)
set -euo pipefail
build=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/lib/testbed.sh
. "$root/scripts/lib/testbed.sh"
tb_require_root tun
tb_workdir tlsnic-bench-smoke
out=$tb_work
fail() { echo "FAIL: $*"; exit 1; }
TLSNIC_BUILD_DIR=$build "$root/scripts/bench.sh" --quick --no-rx --mb 2 --sizes 1457,16384 \
  --loss 0.02 --loss-sizes 16384 --out "$out" >"$out/stdout" 2>"$out/stderr" \
  || { cat "$out/stderr"; fail "bench.sh failed"; }
for f in results.json samples.jsonl summary.json results.md host_cpu.png throughput.png host_cpu_paced.png; do
  [ -s "$out/$f" ] || fail "$f missing or empty"
done
for png in host_cpu.png throughput.png host_cpu_paced.png; do
  [ "$(head -c 8 "$out/$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png is not a PNG"
done
jq -e '.meta.nproc >= 1 and .meta.cc == "cubic" and (.meta.command | startswith("tlsnic bench")) and (.samples | length) > 0' \
  "$out/results.json" >/dev/null || fail "results.json: no machine or no samples"
for sc in tcp ssl sw dev null evp; do
  jq -e --arg sc "$sc" '[.samples[] | select(.phase == "main" and .scenario == $sc and .ok)] | length == 2' \
    "$out/results.json" >/dev/null || fail "results.json: not 2 good main samples of $sc"
done
jq -e '[.samples[] | select(.phase == "loss")] | length > 0' "$out/results.json" >/dev/null \
  || fail "results.json: no loss samples"
# The device's counters are read around every sample: the offload ones saw encryption.
jq -e '[.samples[] | select(.scenario == "dev" and .ok) | .dev.tx_tls_encrypted_bytes > .bytes] | all' \
  "$out/results.json" >/dev/null || fail "results.json: a dev sample without device counters"
jq -e '(.verdicts | length) > 0 and all(.verdicts[]; has("target") and has("met"))' "$out/summary.json" \
  >/dev/null || fail "summary.json: no verdicts"
# Every network sample of the main phase carries the two cores' accounting, and the host
# core processed the ACKs (the steering works); the run judges itself (a quick run is too
# short to be valid, and says so).
jq -e '[.samples[] | select(.phase == "main" and .scenario != "evp" and .ok)
        | .host.cpu != .devcore.cpu and .host.busy_s > 0 and .host.packets >= 0.9 * .segs_in]
       | (length > 0) and all' "$out/results.json" >/dev/null \
  || fail "results.json: a main sample without the host core's accounting or steering"
jq -e '(.valid == false) and any(.validity[]; (.check | startswith("samples of at least")) and .ok == false)
       and all(.validity[]; has("check") and has("ok") and has("detail"))' "$out/summary.json" \
  >/dev/null || fail "summary.json: the quick run is not judged too short"
grep -q '^Validity: \*\*INVALID\*\*' "$out/results.md" || fail "results.md: no validity verdict"
grep -q '^| record | scenario | Mbit/s' "$out/results.md" || fail "results.md: no main table"
grep -q '^| target | record | measured' "$out/results.md" || fail "results.md: no targets table"
grep -q '^| loss | resync from' "$out/results.md" || fail "results.md: no loss table"
grep -q 'progress\|\[ *[0-9]*/ *[0-9]*\]' "$out/stderr" || fail "no progress display"
echo "PASS: bench outputs well formed ($(jq '.samples | length' "$out/results.json") samples)"
