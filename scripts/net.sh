#!/usr/bin/env bash
# The tlsnicd topology by hand: two network namespaces joined only through tlsnicd
# (drawing, addresses and guarantees: scripts/lib/testbed.sh, which the tests, the demo and
# the bench use directly).
#
# Usage: scripts/net.sh up|down|status [prefix]     (prefix: $TLSNIC_NET_PREFIX or "tlsnic")
#   up      makes <prefix>-host (tlsnic-h 198.18.0.1 2001:db8:0:1::1) and <prefix>-peer
#           (tlsnic-p 198.18.0.2 2001:db8:0:1::2); first removes any leftover of the prefix
#   down    idempotent, succeeds whatever is left (also after a crash); a tlsnicd still
#           attached keeps its (unnamed) namespaces until it exits
#   status  addresses and routes of both
# Then: tlsnicd --host-ns <prefix>-host --wire-ns <prefix>-peer [--ctl PATH] ...
set -euo pipefail
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/testbed.sh"

cmd=${1:-}
prefix=${2:-${TLSNIC_NET_PREFIX:-tlsnic}}
die() { echo "net.sh: $*" >&2; exit 1; }

[[ $prefix =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad prefix '$prefix'"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, TUN)"

case "$cmd" in
  up)
    tb_net_up "$prefix" || die "up failed"
    echo "net.sh: up: $prefix-host ($tb_host_if $tb_host_v4 $tb_host_v6) <-> $prefix-peer ($tb_peer_if $tb_peer_v4 $tb_peer_v6)"
    ;;
  down) tb_net_down "$prefix" ;;
  status) tb_net_status "$prefix" ;;
  *) die "usage: net.sh up|down|status [prefix]" ;;
esac
