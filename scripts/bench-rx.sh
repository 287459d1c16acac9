#!/usr/bin/env bash
# The receive side of `tlsnic bench`: what RX offload buys the receiving host.
#
# Makes its own namespaces (the testbed library, scripts/lib/testbed.sh: tlsnic-bench-rx-PID,
# 198.18.0.0/15 only), starts tlsnicd and a TLS sender (bench_rx serve, plain OpenSSL) in the peer
# namespace on CPU 0, and the measured receiver (bench_rx recv) in the host namespace on
# CPU 1, with the host's receive processing steered to that CPU (RPS on the host TUN), so
# that the busy time of CPU 1 is everything the host does for the transfer. Scenarios, in
# alternating rounds: plain TCP read(2), OpenSSL SSL_read, tlsnic software mode, tlsnic RX
# offload (tlsnicd decrypts inline; the host reads the RX status). Then, for each wire loss
# rate, tlsnicd is restarted with --loss and RX offload runs again: the share of records
# the device decrypted and verified, and how many records it took to resync after a gap.
# A second phase paces every scenario to one rate (--rate, the sender's SO_MAX_PACING_RATE),
# so that host CPU per byte is compared at equal throughput: the kernel's receive work per
# byte depends on it. The targets are judged there.
# Writes rx-samples.jsonl, results-rx.json and results-rx.md into the output folder.
#
# Usage: scripts/bench-rx.sh [--quick] [--out DIR] [--cipher aes128|aes256|chacha]
#                            [--version 1.2|1.3] [--sizes 1457,16384] [--mb N] [--rounds N]
#                            [--loss "0 0.01 0.05"] [--rate MBIT|0] [--cc NAME] [--build DIR]
# Root only. Everything it made is removed on exit (the testbed's trap), also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cmdline="tlsnic bench (receive side)${*:+ $*}"

quick=0 out="" cipher=aes128 version=1.2 sizes=1457,16384 mb="" rounds="" loss_rates=""
cc=cubic build=${TLSNIC_BUILD_DIR:-$root/build} rate=600
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --cipher) cipher=$2; shift ;;
    --version) version=$2; shift ;;
    --sizes) sizes=$2; shift ;;
    --mb) mb=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --loss) loss_rates=$2; shift ;;
    --cc) cc=$2; shift ;;
    --rate) rate=$2; shift ;;
    --build) build=$2; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench-rx.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  mb=${mb:-16} rounds=${rounds:-1} loss_rates=${loss_rates:-"0 0.01"}
else
  mb=${mb:-100} rounds=${rounds:-5} loss_rates=${loss_rates:-"0 0.01 0.05"}
fi
out=${out:-$build/bench-results}
case "$cipher" in aes128 | aes256 | chacha) ;; *) echo "bench-rx.sh: --cipher aes128|aes256|chacha" >&2; exit 2 ;; esac
case "$version" in 1.2 | 1.3) ;; *) echo "bench-rx.sh: --version 1.2|1.3" >&2; exit 2 ;; esac

# shellcheck source=scripts/lib/testbed.sh
. "$root/scripts/lib/testbed.sh"
tb_tlsnicd=$build/tools/tlsnicd
rx_bin=$build/bench/bench_rx
tb_require_root tun
[ -x "$tb_tlsnicd" ] && [ -x "$rx_bin" ] || { echo "bench-rx.sh: build first ($tb_tlsnicd, $rx_bin)" >&2; exit 1; }

ncpu=$(nproc)
daemon_cpu=0 recv_cpu=$((ncpu > 1 ? 1 : 0))
tb_daemon_wrapper=(taskset -c "$daemon_cpu")
tb_workdir tlsnic-bench-rx
work=$tb_work
tb_on_failure() { tb_show_log "$work/serve.err"; }

receiver() { # bench_rx recv args...
  tb_in host taskset -c "$recv_cpu" "$rx_bin" recv --addr "$tb_peer_v4" \
    --port 5301 --version "$version" --cipher "$cipher" --ctl "$tb_ctl" \
    --daemon-pid "$tb_daemon_pid" --cpu "$recv_cpu" --json "$work/rx-samples.jsonl" --cc "$cc" \
    --timeout 3000 "$@"
}

mkdir -p "$out"
tb_netns tlsnic-bench-rx
# The host's receive processing (the softirq work of every segment tlsnicd writes into the
# host TUN) on the receiver's core, so that its busy time counts it.
tb_in host sh -c \
  "printf '%x' $((1 << recv_cpu)) > /sys/class/net/$tb_host_if/queues/rx-0/rps_cpus" 2>/dev/null \
  && rps="steered to CPU $recv_cpu (RPS)" || rps="not steered (no RPS here)"
tb_daemon_start
tb_spawn peer taskset -c "$daemon_cpu" "$rx_bin" serve --addr "$tb_peer_v4" \
  --port 5301 >"$work/serve.out" 2>"$work/serve.err"
tb_wait_for "$work/serve.err" listening 10

started=$(date -u +%s)
echo "tlsnic bench, receive side: TLS $version $cipher, records $sizes, $mb MB x $rounds rounds; receiver CPU $recv_cpu (host receive processing $rps), tlsnicd and the sender CPU $daemon_cpu" >&2
echo "--- scenarios, alternating (no loss)" >&2
receiver --scenarios tcp,ssl,sw,dev --sizes "$sizes" --mb "$mb" --rounds "$rounds" \
  --label phase=main --label loss=0 || echo "bench-rx.sh: some samples failed (see results)" >&2

if [ "$rate" != 0 ]; then
  echo "--- scenarios, alternating, the sender paced to $rate Mbit/s" >&2
  receiver --scenarios tcp,ssl,sw,dev --sizes "$sizes" --mb "$mb" --rounds "$rounds" --rate "$rate" \
    --label phase=paced --label loss=0 --label rate="$rate" || echo "bench-rx.sh: some samples failed (see results)" >&2
fi

for loss in $loss_rates; do
  echo "--- loss $loss: RX offload" >&2
  tb_daemon_start --loss "$loss" --seed 7
  receiver --scenarios dev --sizes "$sizes" --mb "$mb" --rounds "$([ "$quick" = 1 ] && echo 1 || echo 2)" \
    --label phase=loss --label loss="$loss" || echo "bench-rx.sh: some samples failed (see results)" >&2
done

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
jq -s --arg cpu "${cpu_model:-unknown}" --arg nproc "$ncpu" --arg kernel "$(uname -r)" \
  --arg when "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg cmd "$cmdline" --arg suite "TLS $version $cipher" \
  --arg mb "$mb" --arg rounds "$rounds" --arg rcpu "$recv_cpu" --arg dcpu "$daemon_cpu" \
  --arg rps "$rps" --arg secs "$(($(date -u +%s) - started))" --arg cc "${cc:-system default}" \
  '{meta: {cpu: $cpu, nproc: ($nproc | tonumber), kernel: $kernel, when: $when, command: $cmd,
           suite: $suite, mb: ($mb | tonumber), rounds: ($rounds | tonumber),
           receiver_cpu: ($rcpu | tonumber), daemon_cpu: ($dcpu | tonumber), rps: $rps,
           seconds: ($secs | tonumber), cc: $cc},
    samples: .}' "$work/rx-samples.jsonl" >"$out/results-rx.json"
cp "$work/rx-samples.jsonl" "$out/rx-samples.jsonl"
python3 "$root/bench/eval/report_rx.py" "$out/results-rx.json" "$out/results-rx.md"
cat "$out/results-rx.md"
echo "tlsnic bench (receive side): $(($(date -u +%s) - started)) s; results in $out/results-rx.md" >&2
