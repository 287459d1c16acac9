#!/usr/bin/env bash
# Builds every fuzz target with clang (libFuzzer + ASan + UBSan) in its own tree and runs
# each for a while, one after the other, from its committed corpus and regression inputs
# (tests/fuzz/corpus/<name>, tests/fuzz/regress/<name>; new inputs go to a temporary
# directory, the committed ones are not changed). Prints per target the executions,
# executions per second, coverage (libFuzzer's cov: / ft:) and the outcome; exits non-zero
# if any target crashed, leaked, hung or failed an oracle (its crashing input is kept in
# <build-dir>/fuzz-artifacts/, to be added to tests/fuzz/regress/<name>/ with the fix).
#
# Usage: scripts/test-fuzz.sh [seconds per target (20)] [build-dir (build-fuzz)]
#   TLSNIC_FUZZ_TARGETS="fuzz_a fuzz_b"  only these targets
#   TLSNIC_FUZZ_RUNS=n                   stop a target after n executions (or the seconds)
#   TLSNIC_FUZZ_KEEP=dir                 keep the corpora the run grew in dir/<name>
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
build_dir=${2:-build-fuzz}

CC=clang cmake -S . -B "$build_dir" -DTLSNIC_FUZZ=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)" >/dev/null

list=$build_dir/tests/fuzz/targets.txt
artifacts=$build_dir/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
printf '%-18s %12s %8s %6s %7s %6s  %s\n' target executions exec/s cov ft secs result
while read -r name bin max_len dict corpus regress; do
  [[ -z $name || $name == \#* ]] && continue
  if [[ -n ${TLSNIC_FUZZ_TARGETS:-} && " $TLSNIC_FUZZ_TARGETS " != *" $name "* ]]; then
    continue
  fi
  grown=${TLSNIC_FUZZ_KEEP:+$TLSNIC_FUZZ_KEEP/$name}
  grown=${grown:-$work/$name}
  mkdir -p "$grown"
  args=(-max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$artifacts/$name-")
  [[ $dict != - ]] && args+=(-dict="$dict")
  [[ -n ${TLSNIC_FUZZ_RUNS:-} ]] && args+=(-runs="$TLSNIC_FUZZ_RUNS")
  dirs=("$grown" "$corpus")
  [[ -d $regress ]] && dirs+=("$regress")
  log=$work/$name.log
  start=$SECONDS
  if "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (log: $artifacts/$name.log)"
    cp "$log" "$artifacts/$name.log"
    status=1
  fi
  # (a run that crashed while loading its corpus has no stats: "?")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$({ grep -o 'cov: [0-9]*' "$log" || true; } | tail -1 | cut -d' ' -f2)
  ft=$({ grep -o 'ft: [0-9]*' "$log" || true; } | tail -1 | cut -d' ' -f2)
  printf '%-18s %12s %8s %6s %7s %6s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
         "${ft:-?}" "$((SECONDS - start))" "$result"
  if [[ $result != ok ]]; then
    { grep -E 'ERROR|SUMMARY|oracle|Test unit written' "$log" || true; } | head -5 | sed 's/^/    /'
  fi
done <"$list"
exit $status
