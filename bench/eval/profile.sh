#!/usr/bin/env bash
# Where the host core's time goes, per GB, scenario by scenario: the bench's setup (host
# core: sender + host receive processing steered there; device core: tlsnicd, peer,
# receiver), one sample per scenario, `perf record -e cpu-clock -C CORE -g` on both cores
# for the length of the sample (system-wide on each core: softirq work in any context is
# in it, as it is in the bench's accounting). Prints, per scenario, the host core's top
# symbols in s/GB side by side (and writes the perf data and the table to OUT).
#
#   profile.sh BUILD OUT "tcp,null,dev" SIZE [bench_eval send options, e.g. --rate 1000]
#
# Root only; perf needed (software clock: works without hardware counters, in a VM too).
# perf samples at its default 4 kHz per core; on a busy
# machine the other processes' work on the cores is in the profile too (see the comm column
# of perf report OUT/*.data for it).
set -euo pipefail
build=$1 out=$2 scens=$3 size=$4
shift 4
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/lib/testbed.sh
. "$root/scripts/lib/testbed.sh"
tb_require_root tun
tb_require_tools perf
tb_tlsnicd=$build/tools/tlsnicd eval_bin=$build/bench/bench_eval
host_cpu=1 dev_cpu=0
tb_daemon_wrapper=(taskset -c "$dev_cpu")
tb_workdir tlsnic-prof
work=$tb_work
tb_netns tlsnic-prof
tb_steer_rx host "$host_cpu"
tb_daemon_start
tb_spawn peer taskset -c "$dev_cpu" "$eval_bin" recv --addr "$tb_peer_v4" --port 5201 --timeout 3600 \
  >"$work/recv.out" 2>"$work/recv.err"
recv_pid=$!
tb_wait_for "$work/recv.err" listening 10
mkdir -p "$out"
rm -f "$out/samples.jsonl"
args=()
for sc in ${scens//,/ }; do
  perf record -q -e cpu-clock -C "$host_cpu" -g -o "$out/$sc-$size.host.data" 2>/dev/null &
  p1=$!
  perf record -q -e cpu-clock -C "$dev_cpu" -g -o "$out/$sc-$size.dev.data" 2>/dev/null &
  p2=$!
  sleep 0.5
  tb_in host taskset -c "$host_cpu" "$eval_bin" send --addr "$tb_peer_v4" --port 5201 \
    --ctl "$tb_ctl" --daemon-pid "$tb_daemon_pid" --recv-pid "$recv_pid" --host-cpu "$host_cpu" \
    --device-cpu "$dev_cpu" --cc cubic --notsent-lowat 131072 --scenarios "$sc" --sizes "$size" \
    --seconds 3 --rounds 1 --json "$out/samples.jsonl" "$@" >/dev/null
  kill -INT "$p1" "$p2"
  wait "$p1" "$p2" || true
  args+=("$sc" "$out/$sc-$size.host.data")
done
python3 "$root/bench/eval/profile_table.py" "$out/samples.jsonl" "${args[@]}" | tee "$out/table-$size.md"
