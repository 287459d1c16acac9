#!/usr/bin/env bash
# Installs everything tlsnic needs from Debian packages. Idempotent; run as root.
set -euo pipefail

# clang + libclang-rt-14-dev (libFuzzer's runtime) + llvm (llvm-symbolizer, for readable
# sanitizer stacks): the fuzz build, scripts/test-fuzz.sh.
packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev llvm
  libssl-dev libcmocka-dev
  openssl gnutls-bin curl nginx wrk procps
  libgnutls28-dev iproute2 tshark gnuplot-nox python3 util-linux jq
  qemu-system-x86 busybox-static kmod xz-utils zstd ethtool
)

if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: needs root to install packages (${packages[*]})" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "bootstrap: all packages present"
else
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The guest kernel of the VM tests (vm/, tests/vm): Debian's kernel and headers as .debs,
# downloaded into /var/cache/tlsnic-vm and extracted there (nothing installed; cached).
"$(dirname "$0")/../vm/kernel.sh" fetch
"$(dirname "$0")/../vm/kernel.sh" prepare
