#!/usr/bin/env bash
# scripts/net.sh: `up` makes two namespaces whose only routes are the connected ones, in
# 198.18.0.0/15 and 2001:db8::/32, over vnet_hdr TUN interfaces; `up` again replaces a
# leftover; `down` removes everything and may be repeated (also with nothing there).
#
#   net_topology.sh NET_SH          (root; exits 77 otherwise)
set -euo pipefail
net_sh=$1
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root"; exit 77; fi
prefix="tlsnic-it-topo-$$"
trap '"$net_sh" down "$prefix" || true' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$net_sh" up "$prefix"
"$net_sh" up "$prefix" # a leftover of the same prefix is replaced, not an error

for side in host peer; do
  ns="$prefix-$side"
  [ -e "/run/netns/$ns" ] || fail "$ns missing"
  # Every global address in the documentation / benchmarking ranges.
  while read -r addr; do
    case "$addr" in
      198.18.* | 198.19.* | 2001:db8:*) ;;
      *) fail "$ns: address $addr outside 198.18.0.0/15 and 2001:db8::/32" ;;
    esac
  done < <(ip -n "$ns" -o addr show scope global | awk '{ print $4 }')
  # Routes: only the connected ones, no default, nothing elsewhere.
  routes=$( (ip -n "$ns" -4 route show; ip -n "$ns" -6 route show | grep -v '^fe80') | awk '{ print $1 }' | sort | tr '\n' ' ')
  [ "$routes" = "198.18.0.0/24 2001:db8:0:1::/64 " ] || fail "$ns: unexpected routes: $routes"
  ifname=$(ip -n "$ns" -o link show type tun | awk -F': ' '{ print $2 }')
  ip -n "$ns" -d link show "$ifname" | grep -q "vnet_hdr on" || fail "$ns: $ifname has no vnet_hdr"
  echo "$ns: $ifname, routes: $routes"
done

"$net_sh" down "$prefix"
"$net_sh" down "$prefix" # idempotent
for side in host peer; do
  [ ! -e "/run/netns/$prefix-$side" ] || fail "$prefix-$side left behind"
done
echo "PASS: topology up/down"
