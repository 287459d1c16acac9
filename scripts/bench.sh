#!/usr/bin/env bash
# `tlsnic bench`: the paper's evaluation through the real Linux TCP stack and tlsnicd.
#
# Makes its own namespaces (scripts/lib/testbed.sh, prefix tlsnic-bench-PID, 198.18.0.0/15),
# starts tlsnicd and a discarding receiver in the peer namespace on CPU 0 (the device's
# core), steers the host TUN's receive processing onto CPU 1 (the host's core, RPS) and runs
# the sender (bench_eval send) in the host namespace on CPU 1; host CPU is everything CPU 1
# does during a sample (bench/eval/eval_cpu.h). The sender runs plain TCP,
# OpenSSL SSL_write, tlsnic software mode, tlsnic device mode and the NULL-cipher floor in
# alternating rounds (plus raw EVP sealing in the same process). Then, for each wire loss
# rate, tlsnicd is restarted with --loss (and once more with --no-checkpoints: resync from
# the host record store only) and device mode runs again. Writes, into the output folder:
#   samples.jsonl / results.json   every sample (results.json adds the machine)
#   results.md                     the tables, targets met / missed
#   host_cpu.png, throughput.png   gnuplot charts (host_cpu_paced.png: the paced phase)
#   results-rx.*, rx-samples.jsonl the receive side (scripts/bench-rx.sh; its tables are
#                                  appended to results.md); --no-rx skips it
#
# Usage: scripts/bench.sh [--quick] [--out DIR] [--cipher aes128|aes256|chacha]
#                         [--version 1.2|1.3] [--sizes 1457,4096,16384] [--mb N] [--rounds N]
#                         [--loss "0 0.005 0.02"] [--loss-sizes 16384] [--rate MBIT|0] [--pace app|tcp]
#                         [--paced-mb N] [--cc NAME] [--build DIR] [--seconds S]
#                         [--background S] [--notsent-lowat BYTES] [--no-profile] [--no-rx]
# --rate: a second phase runs the network scenarios again, all paced to MBIT Mbit/s (default
# auto: per record size, half of what the slowest scenario reached in the first phase; 0
# skips it), so host CPU per byte is compared at equal throughput: the headline.
# --pace: how that phase paces. app (default): the sender writes until it is 1 ms ahead of
# the rate's schedule, then sleeps (TCP sends 1 ms bursts). tcp: SO_MAX_PACING_RATE, TCP's
# own pacing: without an fq qdisc one high-resolution timer per packet, which in this VM
# made samples of one scenario spread 0.9-7 s/GB (softirq and timer interrupts, not TLS).
# --seconds: length of every sample of those two phases (default 2; --quick 0.5); the loss
# phase sends --mb per sample. --background: seconds measured with nothing of the bench
# running, before each round and size (what else the machine does; default 0.5).
# --notsent-lowat: TCP_NOTSENT_LOWAT of every connection (default 131072; 0: none). Without
# it a sender keeps as much unsent data in its socket as the send buffer holds (4 MB once
# autotuned: ss showed 2-4 MB unsent at 1 Gbit/s), for every scenario alike; servers that
# care about memory and latency set it, and it keeps what each scenario touches per byte
# (socket buffers, tlsnic's record store) near the data in flight.
# --no-profile: skip the profiles. By default, after the measurements, bench/eval/profile.sh
# records the host core with perf over one sample of plain TCP, NULL, offload and software
# per record size at the paced rate (profile/table-SIZE.md: s/GB by symbol side by side).
# --cc: the TCP congestion control of every benchmark connection (default cubic, the
# paper's; "" keeps the system default). BBR, a common default, paces inside TCP without an
# fq qdisc, one high-resolution timer per packet: in a VM that timer costs the sender more
# than the TLS work measured here, and more for small records (bench_eval.c has the profile).
# Root only. Everything it made is removed on exit (trap), also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmdline="tlsnic bench${*:+ $*}"

quick=0 out="" cipher=aes128 version=1.2 sizes=1457,4096,16384 mb="" rounds="" loss_rates=""
loss_sizes="" rate=auto pace=app paced_mb="" cc=cubic build=${TLSNIC_BUILD_DIR:-$root/build} seconds=""
background="" lowat=131072 profile=1 rx=1 rx_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --cipher) cipher=$2; shift ;;
    --version) version=$2; shift ;;
    --sizes) sizes=$2; rx_args+=(--sizes "$2"); shift ;;
    --mb) mb=$2; rx_args+=(--mb "$2"); shift ;;
    --rounds) rounds=$2; rx_args+=(--rounds "$2"); shift ;;
    --loss) loss_rates=$2; shift ;;
    --loss-sizes) loss_sizes=$2; shift ;;
    --rate) rate=$2; shift ;;
    --pace) pace=$2; shift ;;
    --paced-mb) paced_mb=$2; shift ;;
    --cc) cc=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --background) background=$2; shift ;;
    --notsent-lowat) lowat=$2; shift ;;
    --no-profile) profile=0 ;;
    --build) build=$2; shift ;;
    --no-rx) rx=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  mb=${mb:-16} rounds=${rounds:-1} loss_rates=${loss_rates:-"0.02"} loss_sizes=${loss_sizes:-16384}
  paced_mb=${paced_mb:-$((mb / 2 > 0 ? mb / 2 : 1))} seconds=${seconds:-0.5} background=${background:-0.2}
else
  mb=${mb:-150} rounds=${rounds:-5} loss_rates=${loss_rates:-"0 0.005 0.02"} loss_sizes=${loss_sizes:-"1457,16384"}
  paced_mb=${paced_mb:-30} seconds=${seconds:-2} background=${background:-0.5}
fi
out=${out:-$build/bench-results}
case "$pace" in app | tcp) ;; *) echo "bench.sh: --pace app|tcp" >&2; exit 2 ;; esac
case "$cipher" in aes128) suite_c="AES-128-GCM" ;; aes256) suite_c="AES-256-GCM" ;; chacha) suite_c="ChaCha20-Poly1305" ;;
  *) echo "bench.sh: --cipher aes128|aes256|chacha" >&2; exit 2 ;; esac
case "$version" in 1.2 | 1.3) ;; *) echo "bench.sh: --version 1.2|1.3" >&2; exit 2 ;; esac

# shellcheck source=scripts/lib/testbed.sh
. "$root/scripts/lib/testbed.sh"
tb_tlsnicd=$build/tools/tlsnicd
eval_bin=$build/bench/bench_eval
tb_require_root tun
[ -x "$tb_tlsnicd" ] && [ -x "$eval_bin" ] || { echo "bench.sh: build first ($tb_tlsnicd, $eval_bin)" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "bench.sh: gnuplot not installed" >&2; exit 1; }

# Two cores: the host's (the sender, and the host stack's receive processing, steered there
# with RPS) and the device's (tlsnicd, the peer's stack, the receiver). Host CPU is
# everything the host's core does during a sample (bench/eval/eval_cpu.h).
ncpu=$(nproc)
daemon_cpu=0 sender_cpu=$((ncpu > 1 ? 1 : 0))
[ "$ncpu" -gt 1 ] || echo "bench.sh: one CPU: host and device share it, host CPU cannot be told apart (the run is marked invalid)" >&2
tb_daemon_wrapper=(taskset -c "$daemon_cpu")
tb_workdir tlsnic-bench
work=$tb_work
tb_on_failure() { tb_show_log "$work/recv.err"; }

recv_pid=""
sender() { # bench_eval send args...
  tb_in host taskset -c "$sender_cpu" "$eval_bin" send --addr "$tb_peer_v4" \
    --port 5201 --version "$version" --cipher "$cipher" --ctl "$tb_ctl" \
    --daemon-pid "$tb_daemon_pid" --recv-pid "$recv_pid" --host-cpu "$sender_cpu" \
    --device-cpu "$daemon_cpu" --json "$work/samples.jsonl" --progress --timeout 3000 --cc "$cc" \
    --notsent-lowat "$lowat" "$@"
}

mkdir -p "$out"
tb_netns tlsnic-bench
[ "$ncpu" -le 1 ] || tb_steer_rx host "$sender_cpu"
tb_daemon_start
tb_spawn peer taskset -c "$daemon_cpu" "$eval_bin" recv --addr "$tb_peer_v4" --port 5201 \
  --timeout 7200 >"$work/recv.out" 2>"$work/recv.err"
recv_pid=$!
tb_wait_for "$work/recv.err" listening 10

started=$(date -u +%s)
# Samples last --seconds each (bytes: what fits); with --seconds 0, --mb / --paced-mb each.
if [ "$seconds" = 0 ]; then main_len=(--mb "$mb") paced_len=(--mb "$paced_mb")
else main_len=(--seconds "$seconds") paced_len=(--seconds "$seconds"); fi
echo "tlsnic bench: TLS $version $suite_c, records $sizes, ${seconds}s samples x $rounds rounds; host core $sender_cpu (sender, host receive processing), device core $daemon_cpu (tlsnicd, peer, receiver)" >&2
echo "--- scenarios, alternating (no loss)" >&2
sender --scenarios tcp,ssl,sw,dev,null,evp --sizes "$sizes" "${main_len[@]}" --rounds "$rounds" \
  --background "$background" --label phase=main --label loss=0 --label resync=ckpt ||
  echo "bench.sh: some samples failed (see results)" >&2

# The equal-rate phase, per record size: --rate, or (auto) half the median rate of the
# slowest scenario at that size in the first phase, to two significant digits. As high as
# every scenario surely reaches, so the host core's work stands well above whatever else
# the machine does (the paced phase's least busy core must not be dominated by background).
paced_rate() { # SIZE -> Mbit/s
  if [ "$rate" != auto ]; then echo "$rate"; return; fi
  python3 - "$work/samples.jsonl" "$1" <<'PY'
import json, math, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rec = int(sys.argv[2])
by = {}
for s in rows:
    if s.get("phase") == "main" and s["ok"] and s["rec"] == rec and s["scenario"] != "evp":
        by.setdefault(s["scenario"], []).append(s["bytes"] * 8 / s["wall_s"] / 1e6)
slowest = min((statistics.median(v) for v in by.values()), default=0)
r = slowest / 2
if r < 10:
    print(0)
else:
    q = 10 ** (int(math.log10(r)) - 1)
    print(int(r // q * q))
PY
}
declare -A paced_rates=()
if [ "$rate" != 0 ]; then
  for size in ${sizes//,/ }; do
    r=$(paced_rate "$size")
    paced_rates[$size]=$r
    if [ "$r" = 0 ]; then echo "bench.sh: no rate for the paced phase at $size B" >&2; continue; fi
    echo "--- scenarios, alternating, $size-byte records, all paced to $r Mbit/s" >&2
    sender --scenarios tcp,ssl,sw,dev,null --sizes "$size" "${paced_len[@]}" --rounds "$rounds" \
      --background "$background" --rate "$r" --pace "$pace" --label phase=paced --label rate="$r" \
      --label pace="$pace" \
      --label loss=0 --label resync=ckpt || echo "bench.sh: some samples failed (see results)" >&2
  done
fi

for loss in $loss_rates; do
  for resync in ckpt store; do
    echo "--- loss $loss, resync from $([ $resync = ckpt ] && echo checkpoints || echo the host store)" >&2
    args=(--loss "$loss" --seed 1)
    [ "$resync" = store ] && args+=(--no-checkpoints)
    tb_daemon_start "${args[@]}"
    scen=dev
    [ "$resync" = ckpt ] && scen=tcp,sw,dev
    sender --scenarios "$scen" --sizes "$loss_sizes" --mb "$mb" --rounds 1 --io-timeout 10 \
      --label phase=loss --label loss="$loss" --label resync="$resync" ||
      echo "bench.sh: some samples failed (see results)" >&2
  done
done
tb_daemon_start # leave the daemon as it was for nothing else; stats of the last one are in the log

if [ "$profile" = 1 ] && [ "$quick" = 0 ] && command -v perf >/dev/null; then
  for size in ${sizes//,/ }; do
    echo "--- profile of the host core, $size-byte records (perf, one sample per scenario)" >&2
    args=()
    [ -z "${paced_rates[$size]:-}" ] || args=(--rate "${paced_rates[$size]}" --pace "$pace")
    "$root/bench/eval/profile.sh" "$build" "$out/profile" tcp,null,dev,sw "$size" "${args[@]}" \
      >/dev/null || echo "bench.sh: the profile at $size B failed" >&2
  done
fi

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
jq -s --arg cpu "${cpu_model:-unknown}" --arg nproc "$ncpu" --arg kernel "$(uname -r)" \
  --arg when "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg cmd "$cmdline" --arg suite "TLS $version $suite_c" \
  --arg mb "$mb" --arg rounds "$rounds" --arg scpu "$sender_cpu" --arg dcpu "$daemon_cpu" \
  --arg seconds "$seconds" --arg rps "$([ "$ncpu" -gt 1 ] && echo 1 || echo 0)" --arg lowat "$lowat" \
  --arg secs "$(($(date -u +%s) - started))" --arg cc "${cc:-system default}" --arg note "${TLSNIC_BENCH_NOTE:-}" \
  '{meta: {cpu: $cpu, nproc: ($nproc | tonumber), kernel: $kernel, when: $when, command: $cmd,
           suite: $suite, mb: ($mb | tonumber), rounds: ($rounds | tonumber),
           sender_cpu: ($scpu | tonumber), daemon_cpu: ($dcpu | tonumber),
           seconds: ($secs | tonumber), cc: $cc, note: $note,
           sample_seconds: ($seconds | tonumber), host_rx_steered: ($rps == "1"),
           notsent_lowat: ($lowat | tonumber)},
    samples: .}' "$work/samples.jsonl" >"$out/results.json"
cp "$work/samples.jsonl" "$out/samples.jsonl"
python3 "$root/bench/eval/report.py" "$out/results.json" "$out"
if [ "$rx" = 1 ]; then # the receive side: its own namespaces, daemon and report
  tb_daemon_stop || true # (this side's testbed is done: the receive side measures alone)
  tb_netns_down
  "$root/scripts/bench-rx.sh" $([ "$quick" = 1 ] && echo --quick) --out "$out" --cipher "$cipher" \
    --version "$version" --cc "$cc" --build "$build" "${rx_args[@]}" >/dev/null \
    && cat "$out/results-rx.md" >>"$out/results.md" \
    || echo "bench.sh: the receive side failed (scripts/bench-rx.sh)" >&2
fi
cat "$out/results.md"
echo "tlsnic bench: $(($(date -u +%s) - started)) s; results in $out (results.md, results.json, *.png)" >&2
