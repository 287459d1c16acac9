#!/usr/bin/env bash
# The layout's promises, checked on the sources and on what the build made:
#   1. includes only point down: a file of a layer includes public headers of its own
#      layer and of the layers before it (src/record < offload < host | device < wire
#      < daemon; host and device are siblings and never include each other);
#   2. the host libraries and the preload library carry no device or daemon code: no
#      symbol of those layers is defined or referenced in them (nm);
#   3. the preload library exports only the libc / libssl calls it wraps.
# Usage: check_layout.sh SOURCE_DIR PRELOAD_SO HOST_LIB.a...
set -euo pipefail
src=$1 preload=$2
shift 2
host_libs=("$@")
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# --- 1. includes -------------------------------------------------------------------------
declare -A layer_of_header
layers=(record offload host device wire daemon)
for layer in "${layers[@]}"; do
  for h in "$src/src/$layer/include/tlsnic/"*.h; do
    layer_of_header["tlsnic/$(basename "$h")"]=$layer
  done
done
allowed() { # layer -> layers it may include
  case $1 in
    record) echo "record" ;;
    offload) echo "record offload" ;;
    host) echo "record offload host" ;;
    device) echo "record offload device" ;;
    wire) echo "record offload device wire" ;;
    daemon) echo "record offload device wire daemon" ;;
  esac
}
checked=0
for layer in "${layers[@]}"; do
  ok=" $(allowed "$layer") "
  while IFS= read -r line; do
    file=${line%%:*}
    header=$(sed -n 's/.*#include "\(tlsnic\/[^"]*\)".*/\1/p' <<<"$line")
    [ -n "$header" ] || continue
    checked=$((checked + 1))
    target=${layer_of_header[$header]:-}
    if [ -z "$target" ]; then
      fail "$file includes $header, which no layer's include/ holds"
    elif [[ $ok != *" $target "* ]]; then
      fail "$file ($layer) includes $header of $target: includes must point down"
    fi
  done < <(grep -rn '#include "tlsnic/' "$src/src/$layer" --include='*.c' --include='*.h' || true)
done
[ "$checked" -gt 50 ] || fail "only $checked includes checked: the scan is broken"

# --- 2. no device or daemon symbol in host code --------------------------------------------
# Prefixes of every function and object the device, wire and daemon layers define.
forbidden='^(tlsnic_nic_|tlsnic_frame_|tlsnic_tcp_csum|tlsnic_tcp_pseudo|tlsnic_csum16|tlsnic_fwd_|tlsnic_tun_|tlsnic_sim|tlsnic_wire_|tlsnic_fault|tlsnic_pcap|tlsnic_ctl_server_|tlsnic_fence_|tlsnic_state_|tlsnic_shm_reader_|tlsnic_daemon_|tlsnic_flowtable_|tlsnic_xor_hook|gso_plan|gso_build)'
# The prefixes must match what those layers really define, or the check proves nothing.
device_defined=$(nm --defined-only "${host_libs[0]%/*}/../device/libtlsnic_device.a" 2>/dev/null |
                 awk 'NF == 3 && $2 ~ /[TDRB]/ {print $3}' | grep -cE "$forbidden" || true)
[ "$device_defined" -gt 5 ] || fail "the forbidden prefixes match only $device_defined device symbols"
for lib in "${host_libs[@]}" "$preload"; do
  [ -f "$lib" ] || { fail "$lib not built"; continue; }
  bad=$(nm "$lib" 2>/dev/null | awk '{print $NF}' | grep -E "$forbidden" | sort -u || true)
  [ -z "$bad" ] || fail "$(basename "$lib") carries device/daemon symbols: $(tr '\n' ' ' <<<"$bad")"
done

# --- 3. exports of the preload library ------------------------------------------------------
exported=$(nm -D --defined-only "$preload" | awk '{print $3}')
tlsnic_exported=$(grep -E '^tlsnic_' <<<"$exported" || true)
[ -z "$tlsnic_exported" ] || fail "the preload library exports its internals: $(tr '\n' ' ' <<<"$tlsnic_exported")"
grep -qx setsockopt <<<"$exported" || fail "the preload library does not export setsockopt: wrong file?"

if [ "$failures" -gt 0 ]; then
  echo "layout: $failures failure(s)" >&2
  exit 1
fi
echo "layout: $checked includes point down; host libraries and $(basename "$preload") carry no device or daemon symbol; exports: $(wc -w <<<"$exported") wrapped calls"
