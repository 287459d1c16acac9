#!/usr/bin/env bash
# Runs one command in a Linux guest that has kTLS (Debian's 6.1 kernel under QEMU, software
# emulation) and returns its exit status, with its output (stdout and stderr together) on
# this script's standard output.
#
#   vm/run.sh [--timeout S] [--mem MB] [--smp N] [--out DIR] [--keep] [--] COMMAND [ARG...]
#
# The guest sees this machine's root file system read-only (9p), under a tmpfs overlay:
# every program and library installed here is there, in the same place, and whatever the
# guest writes is gone when it stops. COMMAND runs as root in the current directory, with
# loopback up and nothing else on the network. $TLSNIC_VM_OUT in the guest is a folder
# whose files are copied to DIR with --out (captures, logs); --keep keeps the whole run
# folder (the guest's console.log and dmesg are there).
#
# Exit status: the command's; 77 (with "SKIP: why") where no guest can run here (no QEMU,
# no kernel cached by scripts/bootstrap.sh); 125 when the guest did not report a status
# (boot failure or timeout; the guest's console is printed).
#
# Environment: TLSNIC_VM_CACHE (vm/kernel.sh), TLSNIC_VM_QEMU (default qemu-system-x86_64),
# TLSNIC_VM_VERBOSE=1 (print the guest's console at the end).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
timeout_s=600
mem=1024
smp=2
keep=0
outdir=
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout_s=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --out) outdir=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "vm/run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: vm/run.sh [--timeout S] [--mem MB] [--smp N] [--out DIR] [--keep] [--] COMMAND [ARG...]" >&2; exit 2; }

skip() { echo "SKIP: $*"; exit 77; }

qemu=${TLSNIC_VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null ||
  skip "no $qemu here (Debian package qemu-system-x86, installed by scripts/bootstrap.sh): the VM tests need it"
"$qemu" -version >/dev/null 2>&1 || skip "$qemu does not start here"
kenv=$("$here/kernel.sh" env 2>/dev/null) ||
  skip "no guest kernel cached in ${TLSNIC_VM_CACHE:-/var/cache/tlsnic-vm} (scripts/bootstrap.sh downloads it)"
eval "$kenv"
"$here/kernel.sh" prepare >&2 || { echo "vm/run.sh: could not prepare the guest kernel" >&2; exit 125; }

run=$(mktemp -d /tmp/tlsnic-vm.XXXXXX)
qemu_pid=
cleanup() {
  [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "vm/run.sh: run folder kept: $run" >&2; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$run/out"
cp "$here/guest-init.sh" "$run/guest-init.sh"
{
  printf 'KVER=%q\n' "$KVER"
  printf 'VM_MODULES=%q\n' "$ROOT/lib/modules/$KVER"
  printf 'VM_CWD=%q\n' "$PWD"
  printf 'VM_TIMEOUT=%q\n' "$timeout_s"
} > "$run/vm.env"
{
  echo 'export TLSNIC_VM=1 TLSNIC_VM_OUT=/run/tlsnic-vm/out'
  printf '%q ' "$@"
  echo
} > "$run/cmd.sh"

start=$(date +%s.%N)
# The command's output arrives on the guest's second serial port, the kernel's console on
# the first (kept in the run folder). Standard input is not the guest's.
# A guest that dies before it starts the command (multi-threaded TCG now and then oopses
# while the kernel patches its own text at boot: int3 in early init) is booted again, up
# to three times: the command has not run, so nothing is repeated. Any failure after the
# command started is the command's (its status, or no status: 125).
for boot in 1 2 3; do
  rm -f "$run/status" "$run/console.log"
  timeout -k 5 "$((timeout_s + 120))" "$qemu" \
    -accel tcg,thread=multi -cpu max -smp "$smp" -m "$mem" \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$VMLINUX" -initrd "$INITRAMFS" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init mitigations=off ${TLSNIC_VM_APPEND:-}" \
    -virtfs local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$run,mount_tag=vmrun,security_model=none" \
    -serial "file:$run/console.log" -serial stdio < /dev/null &
  qemu_pid=$!
  wait "$qemu_pid" || true
  qemu_pid=
  [ ! -f "$run/status" ] && ! grep -q "tlsnic-vm: kernel .* running the command" "$run/console.log" 2>/dev/null ||
    break
  [ "$boot" -lt 3 ] || break
  echo "vm/run.sh: the guest died before it started the command (boot $boot); booting again. Its console's end:" >&2
  tail -n 8 "$run/console.log" >&2 || true
done
end=$(date +%s.%N)

if [ -n "$outdir" ]; then
  mkdir -p "$outdir"
  cp -a "$run/out/." "$outdir/"
fi
if [ ! -f "$run/status" ]; then
  echo "vm/run.sh: the guest reported no status after $(awk "BEGIN{print $end - $start}") s; its console:" >&2
  tail -n 40 "$run/console.log" >&2 || true
  exit 125
fi
status=$(cat "$run/status")
[ "${TLSNIC_VM_VERBOSE:-0}" = 1 ] && cat "$run/console.log" >&2
printf 'vm/run.sh: guest exit status %s, %.1f s from start to power-off\n' "$status" \
  "$(awk "BEGIN{print $end - $start}")" >&2
exit "$status"
