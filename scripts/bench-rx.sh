#!/usr/bin/env bash
# The receive side of `tlsnic bench`: what RX offload buys the receiving host.
#
# Makes its own namespaces (scripts/net.sh, prefix tlsnic-bench-rx-PID, 198.18.0.0/15
# only), starts tlsnicd and a TLS sender (bench_rx serve, plain OpenSSL) in the peer
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
# Root only. Everything it made is removed on exit (trap), also on failure.
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

tlsnicd=$build/tools/tlsnicd
rx_bin=$build/bench/bench_rx
[ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] || { echo "bench-rx.sh: needs root and /dev/net/tun" >&2; exit 77; }
[ -x "$tlsnicd" ] && [ -x "$rx_bin" ] || { echo "bench-rx.sh: build first ($tlsnicd, $rx_bin)" >&2; exit 1; }

ncpu=$(nproc)
daemon_cpu=0 recv_cpu=$((ncpu > 1 ? 1 : 0))
prefix="tlsnic-bench-rx-$$"
work=$(mktemp -d /tmp/tlsnic-bench-rx.XXXXXX)
daemon_pid="" serve_pid=""
cleanup() {
  local rc=$?
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  "$root/scripts/net.sh" down "$prefix" >/dev/null || true
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    echo "--- tlsnicd log (tail)" >&2; tail -20 "$work/daemon.log" >&2 2>/dev/null || true
    echo "--- sender log (tail)" >&2; tail -5 "$work/serve.err" >&2 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # FILE PATTERN SECONDS (bounded)
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-rx.sh: timed out waiting for '$2' in $1" >&2
  return 1
}

start_daemon() { # extra tlsnicd args...
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" && wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
  fi
  rm -f "$work/ready" "$work/ctl.sock"
  echo "=== tlsnicd $*" >>"$work/daemon.log"
  taskset -c "$daemon_cpu" "$tlsnicd" --host-ns "$prefix-host" --wire-ns "$prefix-peer" \
    --ctl "$work/ctl.sock" --ready-file "$work/ready" "$@" 2>>"$work/daemon.log" &
  daemon_pid=$!
  wait_for "$work/ready" ready 10
}

receiver() { # bench_rx recv args...
  ip netns exec "$prefix-host" taskset -c "$recv_cpu" "$rx_bin" recv --addr 198.18.0.2 \
    --port 5301 --version "$version" --cipher "$cipher" --ctl "$work/ctl.sock" \
    --daemon-pid "$daemon_pid" --cpu "$recv_cpu" --json "$work/rx-samples.jsonl" --cc "$cc" \
    --timeout 3000 "$@"
}

mkdir -p "$out"
"$root/scripts/net.sh" up "$prefix" >/dev/null
# The host's receive processing (the softirq work of every segment tlsnicd writes into the
# host TUN) on the receiver's core, so that its busy time counts it.
ip netns exec "$prefix-host" sh -c \
  "printf '%x' $((1 << recv_cpu)) > /sys/class/net/tlsnic-h/queues/rx-0/rps_cpus" 2>/dev/null \
  && rps="steered to CPU $recv_cpu (RPS)" || rps="not steered (no RPS here)"
start_daemon
ip netns exec "$prefix-peer" taskset -c "$daemon_cpu" "$rx_bin" serve --addr 198.18.0.2 \
  --port 5301 >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
wait_for "$work/serve.err" listening 10

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
  start_daemon --loss "$loss" --seed 7
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
