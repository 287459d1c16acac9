#!/usr/bin/env bash
# The tlsnicd topology: two network namespaces joined only through tlsnicd.
#
#   <prefix>-host: tlsnic-h (TUN) 198.18.0.1/24 2001:db8:0:1::1/64 ──┐
#                                                                    tlsnicd (device + wire)
#   <prefix>-peer: tlsnic-p (TUN) 198.18.0.2/24 2001:db8:0:1::2/64 ──┘
#
# The TUN interfaces are persistent, with virtio-net headers (vnet_hdr); tlsnicd attaches
# to them (TUNSETIFF with TSO offloads). Only the connected routes exist: nothing in either
# namespace is routed anywhere else. Addresses come from 198.18.0.0/15 and 2001:db8::/32.
#
# Usage: scripts/net.sh up|down|status [prefix]     (prefix: $TLSNIC_NET_PREFIX or "tlsnic")
# `up` first removes any leftover of the same prefix; `down` is idempotent and succeeds
# whatever is left (also after a crash). Namespaces die with their last user: a tlsnicd
# still attached keeps its (unnamed) namespaces until it exits.
set -euo pipefail

cmd=${1:-}
prefix=${2:-${TLSNIC_NET_PREFIX:-tlsnic}}
host_ns="$prefix-host"
peer_ns="$prefix-peer"
host_if=tlsnic-h
peer_if=tlsnic-p
host_v4=198.18.0.1
peer_v4=198.18.0.2
host_v6=2001:db8:0:1::1
peer_v6=2001:db8:0:1::2

die() { echo "net.sh: $*" >&2; exit 1; }

[[ $prefix =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad prefix '$prefix'"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, TUN)"

ns_exists() { [ -e "/run/netns/$1" ]; }

down() {
  local ns
  for ns in "$host_ns" "$peer_ns"; do
    if ns_exists "$ns"; then
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

side_up() { # ns ifname v4 v6
  local ns=$1 ifname=$2 v4=$3 v6=$4
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" tuntap add dev "$ifname" mode tun vnet_hdr
  # /proc/sys/net shows the namespace of the process that reads it (no procps needed).
  ip netns exec "$ns" sh -c "echo 0 >/proc/sys/net/ipv6/conf/$ifname/disable_ipv6 &&
    echo 0 >/proc/sys/net/ipv6/conf/$ifname/accept_ra &&
    echo 0 >/proc/sys/net/ipv6/conf/$ifname/accept_dad"
  ip -n "$ns" addr add "$v4/24" dev "$ifname"
  ip -n "$ns" addr add "$v6/64" dev "$ifname" nodad
  ip -n "$ns" link set "$ifname" up
}

case "$cmd" in
  up)
    down
    trap 'down' ERR
    side_up "$host_ns" "$host_if" "$host_v4" "$host_v6"
    side_up "$peer_ns" "$peer_if" "$peer_v4" "$peer_v6"
    trap - ERR
    echo "net.sh: up: $host_ns ($host_if $host_v4 $host_v6) <-> $peer_ns ($peer_if $peer_v4 $peer_v6)"
    ;;
  down)
    down
    ;;
  status)
    for ns in "$host_ns" "$peer_ns"; do
      if ns_exists "$ns"; then
        echo "== $ns"; ip -n "$ns" -br addr; ip -n "$ns" route; ip -n "$ns" -6 route
      else
        echo "== $ns: absent"
      fi
    done
    ;;
  *)
    die "usage: net.sh up|down|status [prefix]"
    ;;
esac
