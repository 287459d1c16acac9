#!/bin/sh
# Second stage of the guest, PID 1 in the host's root (read-only 9p under a tmpfs overlay):
# the usual pseudo file systems (no tmpfs on /tmp: the host's /tmp may hold the build tree,
# and the overlay keeps what the guest writes in memory anyway), the guest kernel's modules
# at /lib/modules/$KVER (from the harness's cache, so modprobe and the kernel's own module
# requests work), loopback up, then
# the command from the run folder with its output on the second serial port (the harness's
# standard output), its exit status into the run folder, and power off.
# vm/run.sh copies this file into the run folder for every run.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root TERM=dumb LANG=C.UTF-8
run=/run/tlsnic-vm
. "$run/vm.env"

# busybox (static, one file over 9p) for the set-up: each dynamic program costs a round of
# library loads through 9p under TCG.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 shm /dev/shm
$bb mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
$bb mkdir -p "/lib/modules/$KVER"
$bb mount -o bind "$VM_MODULES" "/lib/modules/$KVER"
$bb hostname tlsnic-vm
$bb ip link set lo up

out=/dev/ttyS1
$bb stty -F "$out" raw -echo 2>/dev/null

read -r up _ < /proc/uptime
echo "tlsnic-vm: kernel $KVER up in $up s; running the command" > /dev/console
cd "$VM_CWD" 2>/dev/null || cd /
status=0
timeout -k 5 "$VM_TIMEOUT" /bin/bash "$run/cmd.sh" > "$out" 2>&1 < /dev/null || status=$?
[ "$status" -ne 124 ] || echo "tlsnic-vm: the command timed out after $VM_TIMEOUT s in the guest" > "$out"
echo "$status" > "$run/status.tmp" && mv "$run/status.tmp" "$run/status"
read -r up _ < /proc/uptime
echo "tlsnic-vm: command exited with $status after $up s of uptime" > /dev/console
$bb dmesg > "$run/dmesg" 2>/dev/null
$bb sync
$bb poweroff -f
