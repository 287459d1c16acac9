#!/usr/bin/env bash
# `tlsnic bench`: the paper's evaluation through the real Linux TCP stack and tlsnicd.
#
# Makes its own namespaces (scripts/net.sh, prefix tlsnic-bench-PID, 198.18.0.0/15 only),
# starts tlsnicd pinned to CPU 0, a discarding receiver in the peer namespace, and the
# sender (bench_eval send) in the host namespace pinned to CPU 1, which runs plain TCP,
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
#                         [--loss "0 0.005 0.02"] [--loss-sizes 16384] [--rate MBIT|0]
#                         [--paced-mb N] [--cc NAME] [--build DIR] [--no-rx]
# --rate: a second phase runs the network scenarios again, all paced to MBIT Mbit/s
# (default 150, below what the slowest scenario reaches; 0 skips it), so host CPU per byte
# is compared at equal throughput.
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
loss_sizes="" rate=150 paced_mb="" cc=cubic build=${TLSNIC_BUILD_DIR:-$root/build} rx=1 rx_args=()
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
    --paced-mb) paced_mb=$2; shift ;;
    --cc) cc=$2; shift ;;
    --build) build=$2; shift ;;
    --no-rx) rx=0 ;;
    -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  mb=${mb:-16} rounds=${rounds:-1} loss_rates=${loss_rates:-"0.02"} loss_sizes=${loss_sizes:-16384}
  paced_mb=${paced_mb:-$((mb / 2 > 0 ? mb / 2 : 1))}
else
  mb=${mb:-150} rounds=${rounds:-4} loss_rates=${loss_rates:-"0 0.005 0.02"} loss_sizes=${loss_sizes:-"1457,16384"}
  paced_mb=${paced_mb:-30}
fi
out=${out:-$build/bench-results}
case "$cipher" in aes128) suite_c="AES-128-GCM" ;; aes256) suite_c="AES-256-GCM" ;; chacha) suite_c="ChaCha20-Poly1305" ;;
  *) echo "bench.sh: --cipher aes128|aes256|chacha" >&2; exit 2 ;; esac
case "$version" in 1.2 | 1.3) ;; *) echo "bench.sh: --version 1.2|1.3" >&2; exit 2 ;; esac

tlsnicd=$build/tools/tlsnicd
eval_bin=$build/bench/bench_eval
[ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] || { echo "bench.sh: needs root and /dev/net/tun" >&2; exit 77; }
[ -x "$tlsnicd" ] && [ -x "$eval_bin" ] || { echo "bench.sh: build first ($tlsnicd, $eval_bin)" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "bench.sh: gnuplot not installed" >&2; exit 1; }

ncpu=$(nproc)
daemon_cpu=0 sender_cpu=$((ncpu > 1 ? 1 : 0))
prefix="tlsnic-bench-$$"
work=$(mktemp -d /tmp/tlsnic-bench.XXXXXX)
daemon_pid="" recv_pid=""
cleanup() {
  local rc=$?
  [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  [ -n "$recv_pid" ] && wait "$recv_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && wait "$daemon_pid" 2>/dev/null || true
  "$root/scripts/net.sh" down "$prefix" || true
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    echo "--- tlsnicd log (tail)" >&2; tail -20 "$work/daemon.log" >&2 2>/dev/null || true
    echo "--- receiver log (tail)" >&2; tail -5 "$work/recv.err" >&2 2>/dev/null || true
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
  echo "bench.sh: timed out waiting for '$2' in $1" >&2
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

sender() { # bench_eval send args...
  ip netns exec "$prefix-host" taskset -c "$sender_cpu" "$eval_bin" send --addr 198.18.0.2 \
    --port 5201 --version "$version" --cipher "$cipher" --ctl "$work/ctl.sock" \
    --daemon-pid "$daemon_pid" --json "$work/samples.jsonl" --progress --timeout 3000 --cc "$cc" "$@"
}

mkdir -p "$out"
"$root/scripts/net.sh" up "$prefix" >/dev/null
start_daemon
ip netns exec "$prefix-peer" "$eval_bin" recv --addr 198.18.0.2 --port 5201 --timeout 7200 \
  >"$work/recv.out" 2>"$work/recv.err" &
recv_pid=$!
wait_for "$work/recv.err" listening 10

started=$(date -u +%s)
echo "tlsnic bench: TLS $version $suite_c, records $sizes, $mb MB x $rounds rounds; sender CPU $sender_cpu, tlsnicd CPU $daemon_cpu" >&2
echo "--- scenarios, alternating (no loss)" >&2
sender --scenarios tcp,ssl,sw,dev,null,evp --sizes "$sizes" --mb "$mb" --rounds "$rounds" \
  --label phase=main --label loss=0 --label resync=ckpt || echo "bench.sh: some samples failed (see results)" >&2

if [ "$rate" != 0 ]; then
  echo "--- scenarios, alternating, all paced to $rate Mbit/s" >&2
  sender --scenarios tcp,ssl,sw,dev,null --sizes "$sizes" --mb "$paced_mb" --rounds "$rounds" \
    --rate "$rate" --label phase=paced --label rate="$rate" --label loss=0 --label resync=ckpt \
    || echo "bench.sh: some samples failed (see results)" >&2
fi

for loss in $loss_rates; do
  for resync in ckpt store; do
    echo "--- loss $loss, resync from $([ $resync = ckpt ] && echo checkpoints || echo the host store)" >&2
    args=(--loss "$loss" --seed 1)
    [ "$resync" = store ] && args+=(--no-checkpoints)
    start_daemon "${args[@]}"
    scen=dev
    [ "$resync" = ckpt ] && scen=tcp,sw,dev
    sender --scenarios "$scen" --sizes "$loss_sizes" --mb "$mb" --rounds 1 --io-timeout 10 \
      --label phase=loss --label loss="$loss" --label resync="$resync" ||
      echo "bench.sh: some samples failed (see results)" >&2
  done
done
start_daemon # leave the daemon as it was for nothing else; stats of the last one are in the log

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
jq -s --arg cpu "${cpu_model:-unknown}" --arg nproc "$ncpu" --arg kernel "$(uname -r)" \
  --arg when "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg cmd "$cmdline" --arg suite "TLS $version $suite_c" \
  --arg mb "$mb" --arg rounds "$rounds" --arg scpu "$sender_cpu" --arg dcpu "$daemon_cpu" \
  --arg secs "$(($(date -u +%s) - started))" --arg cc "${cc:-system default}" --arg note "${TLSNIC_BENCH_NOTE:-}" \
  '{meta: {cpu: $cpu, nproc: ($nproc | tonumber), kernel: $kernel, when: $when, command: $cmd,
           suite: $suite, mb: ($mb | tonumber), rounds: ($rounds | tonumber),
           sender_cpu: ($scpu | tonumber), daemon_cpu: ($dcpu | tonumber),
           seconds: ($secs | tonumber), cc: $cc, note: $note},
    samples: .}' "$work/samples.jsonl" >"$out/results.json"
cp "$work/samples.jsonl" "$out/samples.jsonl"
python3 "$root/bench/eval/report.py" "$out/results.json" "$out"
if [ "$rx" = 1 ]; then # the receive side: its own namespaces, daemon and report
  "$root/scripts/bench-rx.sh" $([ "$quick" = 1 ] && echo --quick) --out "$out" --cipher "$cipher" \
    --version "$version" --cc "$cc" --build "$build" "${rx_args[@]}" >/dev/null \
    && cat "$out/results-rx.md" >>"$out/results.md" \
    || echo "bench.sh: the receive side failed (scripts/bench-rx.sh)" >&2
fi
cat "$out/results.md"
echo "tlsnic bench: $(($(date -u +%s) - started)) s; results in $out (results.md, results.json, *.png)" >&2
