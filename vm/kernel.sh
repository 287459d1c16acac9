#!/usr/bin/env bash
# The guest kernel of the VM harness: Debian's own linux-image (kTLS as a module, with the
# device offload API) and its headers, as .deb files downloaded into a cache and extracted
# there with dpkg-deb. Nothing is installed: the host's /boot, /lib/modules and boot loader
# are not touched.
#
#   vm/kernel.sh fetch     download the .debs of the kernel $TLSNIC_VM_KERNEL points at
#                          (apt-get download; what scripts/bootstrap.sh runs)
#   vm/kernel.sh prepare   extract them, depmod, uncompressed vmlinux, initramfs (no network)
#   vm/kernel.sh env       print KVER=, ROOT=, VMLINUX=, INITRAMFS=, KDIR= for the cache
#
# Cache: $TLSNIC_VM_CACHE (default /var/cache/tlsnic-vm), one folder per kernel ABI
# (e.g. 6.1.0-57-amd64), the chosen one named in $TLSNIC_VM_CACHE/current. Each step does
# nothing when its output is there already.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${TLSNIC_VM_CACHE:-/var/cache/tlsnic-vm}
flavour=amd64
# Debian 12's newest kernel line (6.12 LTS): kTLS as upstream has it since 6.5 (MSG_EOR,
# poll that waits for a whole record), with TLS_DEVICE. linux-image-amd64 (6.1) also works.
meta=${TLSNIC_VM_KERNEL:-linux-image-6.12-amd64}

die() { echo "vm/kernel.sh: $*" >&2; exit 1; }

current_kver() {
  [ -s "$cache/current" ] || return 1
  cat "$cache/current"
}

fetch() {
  command -v apt-get >/dev/null || die "apt-get not found (the VM harness takes its kernel from Debian's packages)"
  local img kver
  # The ABI the metapackage points at, e.g. linux-image-6.12.117+deb12-amd64.
  img=$(apt-cache depends "$meta" 2>/dev/null |
        sed -n "s/^ *Depends: \(linux-image-[0-9][^ ]*-$flavour\)\$/\1/p" | head -1)
  [ -n "$img" ] || die "apt-cache knows no $meta (run apt-get update)"
  kver=${img#linux-image-}
  local dir="$cache/$kver"
  # The headers and what they build with: linux-headers-*-common, linux-kbuild-*.
  local want=("linux-image-$kver" "linux-headers-$kver")
  want+=($(apt-cache depends "linux-headers-$kver" 2>/dev/null |
           sed -n 's/^ *Depends: \(linux-headers-[^ ]*-common\|linux-kbuild-[^ ]*\)$/\1/p'))
  [ "${#want[@]}" -eq 4 ] || die "cannot resolve the packages of linux-headers-$kver (${want[*]})"
  mkdir -p "$dir/debs"
  local missing=()
  for p in "${want[@]}"; do
    ls "$dir/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "vm/kernel.sh: downloading ${missing[*]} into $dir/debs"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "${missing[@]}") ||
      { rm -rf "$tmp"; die "apt-get download failed"; }
    mv "$tmp"/*.deb "$dir/debs/"
    rm -rf "$tmp"
  fi
  echo "$kver" > "$cache/current.tmp"
  mv "$cache/current.tmp" "$cache/current"
  # Older ABIs are of no further use.
  for old in "$cache"/*/; do
    old=${old%/}
    [ "$(basename "$old")" = "$kver" ] || [ ! -d "$old/debs" ] || rm -rf "$old"
  done
  echo "vm/kernel.sh: kernel $kver cached in $dir"
}

prepare() {
  local kver
  kver=$(current_kver) || die "no kernel in $cache (run scripts/bootstrap.sh, or vm/kernel.sh fetch as root)"
  local dir="$cache/$kver"
  is_prepared "$dir" && return 0
  # One preparation at a time (CTest runs tests in parallel).
  exec 9> "$cache/.lock"
  flock 9
  [ -f "$dir/prepared" ] || prepare_root "$kver" "$dir"
  is_prepared "$dir" || prepare_initramfs "$kver" "$dir"
  exec 9>&-
}

initramfs_sum() { sha256sum "$here/initramfs-init" | cut -c1-16; }

is_prepared() {
  [ -f "$1/prepared" ] && [ -f "$1/initramfs.cpio" ] &&
    [ "$(cat "$1/initramfs.sum" 2>/dev/null)" = "$(initramfs_sum)" ]
}

prepare_root() {
  local kver=$1 dir=$2
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
  command -v depmod >/dev/null || die "depmod not found (Debian package kmod)"
  [ -x /bin/busybox ] || die "/bin/busybox not found (Debian package busybox-static)"
  file_is_static /bin/busybox || die "/bin/busybox is not static (Debian package busybox-static)"
  echo "vm/kernel.sh: preparing $kver in $dir" >&2
  rm -rf "$dir/root" "$dir/vmlinux" "$dir/initramfs.cpio" "$dir/initramfs"
  mkdir -p "$dir/root"
  for deb in "$dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$dir/root"
  done
  depmod -b "$dir/root" "$kver"
  # The headers' Makefile includes the common headers by absolute path (/usr/src/...).
  sed -i "s|^include /usr/src/|include $dir/root/usr/src/|" \
    "$dir/root/usr/src/linux-headers-$kver/Makefile"

  # The uncompressed kernel boots about twice as fast under TCG (no decompression in the
  # emulated CPU); QEMU starts it through its PVH note. bzImage's payload is one xz (6.1)
  # or zstd (6.12) stream.
  local vmlinuz="$dir/root/boot/vmlinuz-$kver" off
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1 || true)
  if [ -n "$off" ]; then
    tail -c +"$((off + 1))" "$vmlinuz" | xz -dcq > "$dir/vmlinux.tmp" 2>/dev/null || true
  else
    off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$vmlinuz" | head -1 | cut -d: -f1 || true)
    [ -n "$off" ] || die "no xz or zstd stream in $vmlinuz"
    tail -c +"$((off + 1))" "$vmlinuz" | zstd -dcq > "$dir/vmlinux.tmp" 2>/dev/null || true
  fi
  [ "$(head -c 4 "$dir/vmlinux.tmp" | od -An -c | tr -d ' ')" = "177ELF" ] ||
    die "could not extract vmlinux from $vmlinuz"
  mv "$dir/vmlinux.tmp" "$dir/vmlinux"

  touch "$dir/prepared"
}

prepare_initramfs() {
  local kver=$1 dir=$2
  # initramfs: static busybox, the modules that mount the host's root (virtio PCI, 9p,
  # overlayfs) in dependency order, and the first-stage init.
  local ird="$dir/initramfs"
  rm -rf "$ird"
  mkdir -p "$ird"/{bin,dev,proc,sys,mnt,newroot,lib/modules}
  cp /bin/busybox "$ird/bin/busybox"
  ln -s busybox "$ird/bin/sh"
  : > "$ird/modules"
  local m path
  for m in virtio_pci 9pnet_virtio 9p overlay; do
    modprobe -d "$dir/root" -S "$kver" --show-depends "$m" | while read -r verb path _; do
      [ "$verb" = insmod ] || continue
      local name
      name=$(basename "$path")
      if ! grep -q "^${name%%.ko*}.ko" "$ird/modules"; then
        case "$name" in
          *.ko.xz) name=${name%.xz}; xz -dc "$path" > "$ird/lib/modules/$name" ;;
          *.ko.zst) name=${name%.zst}; zstd -dcq "$path" > "$ird/lib/modules/$name" ;;
          *) cp "$path" "$ird/lib/modules/$name" ;;
        esac
        echo "$name" >> "$ird/modules"
      fi
    done
  done
  cp "$here/initramfs-init" "$ird/init"
  chmod 755 "$ird/init"
  (cd "$ird" && find . | LC_ALL=C sort |
     busybox cpio -o -H newc -R 0:0 2>/dev/null > "$dir/initramfs.cpio.tmp") || true
  [ -s "$dir/initramfs.cpio.tmp" ] || die "could not build the initramfs"
  mv "$dir/initramfs.cpio.tmp" "$dir/initramfs.cpio"
  rm -rf "$ird"
  initramfs_sum > "$dir/initramfs.sum"
}

file_is_static() {
  # An ELF with no program interpreter is static.
  ! readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'
}

env_out() {
  local kver
  kver=$(current_kver) || die "no kernel in $cache (run scripts/bootstrap.sh)"
  local dir="$cache/$kver"
  echo "KVER=$kver"
  echo "ROOT=$dir/root"
  echo "VMLINUX=$dir/vmlinux"
  echo "INITRAMFS=$dir/initramfs.cpio"
  echo "KDIR=$dir/root/usr/src/linux-headers-$kver"
}

case "${1:-}" in
  fetch) fetch ;;
  prepare) prepare ;;
  env) env_out ;;
  *) echo "usage: vm/kernel.sh fetch|prepare|env" >&2; exit 2 ;;
esac
