#!/usr/bin/env bash
# scripts/net.sh: `up` makes two namespaces whose only routes are the connected ones, in
# 198.18.0.0/15 and 2001:db8::/32, over vnet_hdr TUN interfaces; `up` again replaces a
# leftover; `down` removes everything and may be repeated (also with nothing there).
# scripts/lib/testbed.sh (under net.sh and every script using the pair): a script that
# fails or is killed (SIGTERM) leaves neither its namespaces, nor its work folder, nor the
# processes it started in them, and keeps its exit status.
#
#   net_topology.sh NET_SH          (root; exits 77 otherwise)
set -euo pipefail
net_sh=$1
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
tb_require_root
prefix="tlsnic-it-topo-$$"
info=""
trap '"$net_sh" down "$prefix" || true; rm -f "$info"' EXIT
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
  grep -q "vnet_hdr on" <<<"$(ip -n "$ns" -d link show "$ifname")" || fail "$ns: $ifname has no vnet_hdr"
  echo "$ns: $ifname, routes: $routes"
done

"$net_sh" down "$prefix"
"$net_sh" down "$prefix" # idempotent
for side in host peer; do
  [ ! -e "/run/netns/$prefix-$side" ] || fail "$prefix-$side left behind"
done

# A script on the library that fails, or is terminated while it waits for a process it
# started in its namespace.
# shellcheck disable=SC2016 # expanded by the child
lib_script='. "$1"; tb_workdir tlsnic-it-topo; tb_netns tlsnic-it-topo
  tb_spawn peer sleep 300; echo "$tb_prefix $tb_work $!" >"$3"
  case "$2" in fail) false ;; term) wait ;; esac'
info=$(mktemp /tmp/tlsnic-it-topo.XXXXXX)
for how in fail term; do
  : >"$info"
  bash -c "$lib_script" _ "$(dirname "$net_sh")/lib/testbed.sh" "$how" "$info" &
  lib_pid=$!
  if [ "$how" = term ]; then
    for ((i = 0; i < 100; i++)); do [ -s "$info" ] && break; sleep 0.05; done
    kill -TERM "$lib_pid"
  fi
  rc=0
  wait "$lib_pid" || rc=$?
  read -r lib_prefix lib_work lib_child <"$info" || true
  [ -n "${lib_child:-}" ] || fail "$how: the script on the library did not get going (exit $rc)"
  want_rc=1
  [ "$how" = term ] && want_rc=143
  [ "$rc" = "$want_rc" ] || fail "$how: exit status $rc, want $want_rc"
  for side in host peer; do
    [ ! -e "/run/netns/$lib_prefix-$side" ] || fail "$how: $lib_prefix-$side left behind"
  done
  [ ! -e "$lib_work" ] || fail "$how: work folder $lib_work left behind"
  ! kill -0 "$lib_child" 2>/dev/null || fail "$how: process $lib_child left running"
  echo "testbed.sh, script ending by $how: exit $rc; $lib_prefix-host/-peer, $lib_work, pid $lib_child: gone"
done
echo "PASS: topology up/down"
