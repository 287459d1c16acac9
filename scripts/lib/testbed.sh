# shellcheck shell=bash
# The tlsnicd testbed, for every script that runs tlsnicd in the real packet path (the
# integration tests, the demo, `tlsnic bench`, its checks): sourced, never run.
#
#   <prefix>-host: tlsnic-h (TUN) 198.18.0.1/24 2001:db8:0:1::1/64 ──┐
#                                                                    tlsnicd (device + wire)
#   <prefix>-peer: tlsnic-p (TUN) 198.18.0.2/24 2001:db8:0:1::2/64 ──┘
#
# The TUN interfaces are persistent, with virtio-net headers (vnet_hdr); tlsnicd attaches
# to them. Only the connected routes exist: nothing in either namespace is routed anywhere
# else. Addresses come from 198.18.0.0/15 and 2001:db8::/32 only.
#
# A script's life with it:
#
#   . scripts/lib/testbed.sh
#   tb_require_root tun                  # exit 77 (CTest skip) without root or /dev/net/tun
#   tb_workdir tlsnic-it; work=$tb_work  # /tmp/tlsnic-it.XXXXXX, removed at exit
#   tb_netns tlsnic-it-plain             # namespaces tlsnic-it-plain-<pid>-host / -peer
#   tb_tlsnicd=build/tools/tlsnicd
#   tb_daemon_start --loss 0.02          # returns once its control socket listens (<= 10 s)
#   tb_spawn peer ./receiver >"$work/recv.out"; recv_pid=$!
#   tb_in host ./sender ...
#   tb_daemon_stop || fail "tlsnicd exited with an error"
#
# tb_workdir and tb_netns install an EXIT trap (INT and TERM exit through it) that, also
# when the script fails: stops every background job the script still has (the daemon
# included; bounded, SIGKILL after 5 s), on a failure (status neither 0 nor 77) calls the
# script's tb_on_failure if it defines one and shows the daemon log's tail, deletes the
# namespaces, and removes the work folder (kept if TLSNIC_KEEP_WORK is set). The script
# keeps its exit status. A script that needs an EXIT trap of its own must not use these.
#
# Functions report trouble on stderr and return non-zero; they do not rely on errexit, so
# they behave the same in `if`, `||` and under `set -euo pipefail` (which callers use: a
# plain call that fails then ends the script, through the trap).

# The fixed addresses and interfaces of the pair (scripts use these, never literals).
tb_host_if=tlsnic-h tb_peer_if=tlsnic-p
tb_host_v4=198.18.0.1 tb_peer_v4=198.18.0.2
tb_host_v6=2001:db8:0:1::1 tb_peer_v6=2001:db8:0:1::2

# State, set by the functions below. tb_tlsnicd (the daemon binary) and tb_daemon_wrapper
# (a command to run it under, e.g. (taskset -c 0)) are the caller's to set.
tb_work="" tb_prefix="" tb_host_ns="" tb_peer_ns="" tb_ctl="" tb_daemon_log=""
tb_daemon_pid="" tb_tlsnicd=${tb_tlsnicd:-}
tb_daemon_wrapper=()
_tb_namespaces=() _tb_trap_on=0

# tb_say MSG: a diagnostic on stderr, named after the script that says it.
tb_say() { echo "${0##*/}: $*" >&2; }

# ---- skip detection (exit 77 is CTest's skip, SKIP_RETURN_CODE in the CMake files) ----

# tb_require_root [tun]: exits 77 unless root (and, with "tun", /dev/net/tun exists).
# shellcheck disable=SC2120 # the argument is optional
tb_require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root${1:+ and /dev/net/tun}"
    exit 77
  fi
  if [ "${1:-}" = tun ] && [ ! -c /dev/net/tun ]; then
    echo "SKIP: needs root and /dev/net/tun"
    exit 77
  fi
}

# tb_require_tools TOOL...: exits 77 naming the first TOOL not on PATH.
tb_require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (./scripts/bootstrap.sh)"; exit 77; }
  done
}

# ---- bounded waiting ----

# tb_poll SECONDS CMD...: runs CMD every 0.05 s until it succeeds (0); 1 once SECONDS have
# passed (at most SECONDS * 20 tries, and never past the deadline however slow CMD is).
tb_poll() {
  local secs=$1 i now deadline
  shift
  now=${EPOCHREALTIME/[.,]/}
  deadline=$((now + secs * 1000000))
  for ((i = 0; i < secs * 20; i++)); do
    "$@" && return 0
    now=${EPOCHREALTIME/[.,]/}
    ((now < deadline)) || break
    sleep 0.05
  done
  return 1
}

# tb_wait_for FILE PATTERN SECONDS: until FILE holds PATTERN (a program's "listening").
tb_wait_for() {
  tb_poll "$3" grep -qs -- "$2" "$1" && return 0
  tb_say "timed out waiting for '$2' in $1"
  return 1
}

# tb_wait_listening NS PORT SECONDS: until a TCP socket listens on PORT in NS (tb_in's NS).
tb_wait_listening() {
  tb_poll "$3" _tb_listening "$1" "$2" && return 0
  tb_say "nothing listens on port $2 in $(_tb_ns "$1") after $3 s"
  return 1
}
_tb_listening() {
  local out
  out=$(tb_in "$1" ss -ltn 2>/dev/null) && [[ $out == *":$2 "* ]]
}

# ---- the namespace pair ----

_tb_check_prefix() {
  [[ $1 =~ ^[A-Za-z0-9_.-]{1,40}$ ]] && return 0
  tb_say "bad namespace prefix '$1'"
  return 2
}

# _tb_side_up NS IFNAME V4 V6: one namespace with its TUN, addresses, and nothing else.
_tb_side_up() {
  local ns=$1 ifname=$2 v4=$3 v6=$4
  # /proc/sys/net shows the namespace of the process that reads it (no procps needed).
  ip netns add "$ns" &&
    ip -n "$ns" link set lo up &&
    ip -n "$ns" tuntap add dev "$ifname" mode tun vnet_hdr &&
    ip netns exec "$ns" sh -c "echo 0 >/proc/sys/net/ipv6/conf/$ifname/disable_ipv6 &&
      echo 0 >/proc/sys/net/ipv6/conf/$ifname/accept_ra &&
      echo 0 >/proc/sys/net/ipv6/conf/$ifname/accept_dad" &&
    ip -n "$ns" addr add "$v4/24" dev "$ifname" &&
    ip -n "$ns" addr add "$v6/64" dev "$ifname" nodad &&
    ip -n "$ns" link set "$ifname" up
}

# tb_net_up PREFIX: (re)makes PREFIX-host and PREFIX-peer; a leftover of the same prefix is
# removed first; on failure nothing of it is left. Not removed at exit (see tb_netns).
tb_net_up() {
  _tb_check_prefix "$1" || return
  tb_net_down "$1"
  if ! { _tb_side_up "$1-host" "$tb_host_if" "$tb_host_v4" "$tb_host_v6" &&
    _tb_side_up "$1-peer" "$tb_peer_if" "$tb_peer_v4" "$tb_peer_v6"; }; then
    tb_net_down "$1"
    tb_say "could not make the namespaces $1-host / $1-peer"
    return 1
  fi
}

# tb_net_down PREFIX: removes PREFIX-host and PREFIX-peer; idempotent, succeeds whatever is
# left. Namespaces die with their last user: a tlsnicd still attached keeps them (unnamed).
tb_net_down() {
  _tb_check_prefix "$1" || return
  _tb_ns_del "$1-host" "$1-peer"
}
_tb_ns_del() {
  local ns
  for ns in "$@"; do
    if [ -e "/run/netns/$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
  done
}

# tb_net_status PREFIX: addresses and routes of both namespaces (or that one is absent).
tb_net_status() {
  local ns
  for ns in "$1-host" "$1-peer"; do
    if [ -e "/run/netns/$ns" ]; then
      echo "== $ns"; ip -n "$ns" -br addr; ip -n "$ns" route; ip -n "$ns" -6 route
    else
      echo "== $ns: absent"
    fi
  done
}

# tb_netns NAME: the script's own pair, NAME-<pid>-host / -peer (tb_host_ns, tb_peer_ns;
# unique per run, so tests run in parallel), removed at exit even if making it failed.
tb_netns() {
  tb_trap_exit
  tb_prefix="$1-$$"
  _tb_check_prefix "$tb_prefix" || return
  tb_host_ns="$tb_prefix-host" tb_peer_ns="$tb_prefix-peer"
  _tb_namespaces+=("$tb_host_ns" "$tb_peer_ns")
  tb_net_up "$tb_prefix"
}

# tb_veth_pair NS_A NS_B: two more namespaces joined directly by a veth pair (tb0
# 198.19.0.1/24 in NS_A, tb1 198.19.0.2/24 in NS_B): the path without tlsnicd, for
# comparison. Removed at exit.
tb_veth_pair() {
  local a=$1 b=$2
  tb_trap_exit
  _tb_namespaces+=("$a" "$b")
  _tb_ns_del "$a" "$b"
  ip netns add "$a" && ip netns add "$b" &&
    ip -n "$a" link set lo up && ip -n "$b" link set lo up &&
    ip -n "$a" link add tb0 type veth peer name tb1 netns "$b" &&
    ip -n "$a" addr add 198.19.0.1/24 dev tb0 && ip -n "$b" addr add 198.19.0.2/24 dev tb1 &&
    ip -n "$a" link set tb0 up && ip -n "$b" link set tb1 up && return 0
  tb_say "could not make the veth pair $a <-> $b"
  return 1
}

# tb_netns_down: removes the script's namespaces now (the exit trap then has none left).
tb_netns_down() {
  if [ "${#_tb_namespaces[@]}" -gt 0 ]; then _tb_ns_del "${_tb_namespaces[@]}"; fi
  _tb_namespaces=()
}

# tb_steer_rx NS CPU: the receive processing of NS's TUN (host or peer) runs on CPU: RPS
# on every receive queue of the interface. A frame tlsnicd writes into the TUN then only
# starts the stack on tlsnicd's core; TCP (the ACK, the sends it releases) runs on CPU, in
# softirq, as a NIC's interrupt would put it there. CPU -1 turns steering off (mask 0).
# Checked by reading back.
tb_steer_rx() {
  local ns if mask q
  ns=$(_tb_ns "$1")
  case "$1" in host) if=$tb_host_if ;; peer) if=$tb_peer_if ;; *) tb_say "tb_steer_rx: host or peer"; return 2 ;; esac
  if [ "$2" -ge 0 ] 2>/dev/null; then mask=$(printf '%x' $((1 << $2))); else mask=0; fi
  # `ip netns exec` mounts the namespace's own /sys, where its interfaces are.
  # shellcheck disable=SC2016 # expanded by the inner shell
  ip netns exec "$ns" sh -c 'for q in /sys/class/net/$1/queues/rx-*/rps_cpus; do
      [ -e "$q" ] || exit 3; echo "$2" >"$q" || exit 4; done' steer "$if" "$mask" || {
    tb_say "could not steer $if's receive processing in $ns (no RPS?)"
    return 1
  }
  q=$(ip netns exec "$ns" cat "/sys/class/net/$if/queues/rx-0/rps_cpus" 2>/dev/null | tr -d ',')
  [[ $q =~ ^[0-9a-fA-F]+$ ]] && [ $((16#$q)) = $((16#$mask)) ] || {
    tb_say "$if in $ns: rps_cpus reads '${q}', not $mask"
    return 1
  }
}

# ---- running in a namespace ----

_tb_ns() {
  case "$1" in
    host) echo "$tb_host_ns" ;;
    peer) echo "$tb_peer_ns" ;;
    *) echo "$1" ;;
  esac
}

# tb_in NS CMD...: runs CMD in NS (host, peer, or a namespace's name), in the foreground.
tb_in() {
  local ns
  ns=$(_tb_ns "$1")
  shift
  ip netns exec "$ns" "$@"
}

# tb_spawn NS CMD...: starts CMD in NS in the background; $! is CMD's own pid (not that of
# a subshell, as `tb_in NS CMD &` would give), so that kill and wait reach it.
# Redirections on the call apply to CMD.
tb_spawn() {
  local ns
  ns=$(_tb_ns "$1")
  shift
  ip netns exec "$ns" "$@" &
}

# ---- the work folder ----

# tb_workdir NAME: a fresh folder /tmp/NAME.XXXXXX in tb_work, removed at exit; the
# daemon's control socket (tb_ctl) and log (tb_daemon_log) go in it.
tb_workdir() {
  tb_trap_exit
  tb_work=$(mktemp -d "/tmp/$1.XXXXXX") || return
  tb_ctl="$tb_work/ctl.sock"
  tb_daemon_log="$tb_work/daemon.log"
}

# ---- the daemon ----

# tb_daemon_start [tlsnicd options...]: starts $tb_tlsnicd between tb_host_ns and
# tb_peer_ns with its control socket at tb_ctl (under tb_daemon_wrapper, stderr appended
# to tb_daemon_log after a "=== tlsnicd OPTIONS" line), and returns once it is ready (the
# control socket listens): 1 if it exits first or is not ready within 10 s. A daemon of
# this script still running is stopped first (its exit status ignored).
# shellcheck disable=SC2120 # options are optional
tb_daemon_start() {
  if [ -z "$tb_tlsnicd" ] || [ -z "$tb_work" ] || [ -z "$tb_host_ns" ]; then
    tb_say "tb_daemon_start needs tb_tlsnicd, tb_workdir and tb_netns"
    return 2
  fi
  if [ -n "$tb_daemon_pid" ]; then tb_daemon_stop || true; fi
  rm -f "$tb_work/ready"
  echo "=== tlsnicd $*" >>"$tb_daemon_log"
  "${tb_daemon_wrapper[@]}" "$tb_tlsnicd" --host-ns "$tb_host_ns" --wire-ns "$tb_peer_ns" \
    --ctl "$tb_ctl" --ready-file "$tb_work/ready" "$@" 2>>"$tb_daemon_log" &
  tb_daemon_pid=$!
  tb_poll 10 _tb_daemon_ready_or_gone || true
  grep -qs ready "$tb_work/ready" && kill -0 "$tb_daemon_pid" 2>/dev/null && return 0
  if kill -0 "$tb_daemon_pid" 2>/dev/null; then
    tb_say "tlsnicd not ready after 10 s"
  else
    wait "$tb_daemon_pid" 2>/dev/null || true
    tb_daemon_pid=""
    tb_say "tlsnicd exited before it was ready"
  fi
  return 1
}
_tb_daemon_ready_or_gone() {
  grep -qs ready "$tb_work/ready" || ! kill -0 "$tb_daemon_pid" 2>/dev/null
}

# tb_daemon_stop: SIGTERM (the daemon prints its counters and flushes its captures) and
# wait, SIGKILL after 10 s; returns the daemon's exit status (non-zero: it failed).
tb_daemon_stop() {
  local pid=$tb_daemon_pid
  [ -n "$pid" ] || return 0
  tb_daemon_pid=""
  _tb_stop TERM 10 "$pid"
}

# tb_daemon_kill: SIGKILL, as a crash would (the namespaces and TUNs stay for a restart).
tb_daemon_kill() {
  local pid=$tb_daemon_pid
  [ -n "$pid" ] || return 0
  tb_daemon_pid=""
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# tb_daemon_stats: the running daemon's counters on stdout (`tlsnicd stats`).
tb_daemon_stats() { "$tb_tlsnicd" stats --ctl "$tb_ctl"; }

# tb_counter NAME FILE: the value of counter NAME in FILE ("name value" lines; the last one
# wins; 0 when absent), printed whole however large (mawk would print 2.5e+09).
tb_counter() { awk -v k="$1" '$1 == k { v = $2 } END { printf "%.0f\n", v + 0 }' "$2" 2>/dev/null || echo 0; }

# tb_wait_counter NAME MIN SECONDS FILE: until the daemon's counter NAME exceeds MIN (each
# poll's counters left in FILE); 1 if it did not within SECONDS.
tb_wait_counter() {
  tb_poll "$3" _tb_counter_above "$@"
}
_tb_counter_above() {
  tb_daemon_stats >"$4" 2>/dev/null || true
  awk -v k="$1" -v min="$2" '$1 == k && $2 > min { found = 1 } END { exit !found }' "$4"
}

# ---- TLS servers in the testbed ----

# The header `openssl s_server -WWW` sends before a file's bytes.
# shellcheck disable=SC2034 # for the scripts
tb_s_server_header=$'HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n'

# tb_tls_server_files CN: key.pem, cert.pem (self-signed, P-256) and openssl.cnf (which
# switches KTLS on, so that OpenSSL uses the kTLS socket API) in the current folder.
tb_tls_server_files() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
    -out cert.pem -subj "/CN=$1" -days 2 2>/dev/null || { tb_say "openssl req failed"; return 1; }
  printf '%s\n' 'openssl_conf = openssl_init' '[openssl_init]' 'ssl_conf = ssl_module' \
    '[ssl_module]' 'system_default = tls_system_default' '[tls_system_default]' \
    'Options = KTLS' >openssl.cnf
}

# tb_marker_file SIZE FILE: SIZE bytes (whole megabytes) of random data in which every
# megabyte ends in 64 plaintext marker lines "TLSNIC-CANARY-PLAINTEXT-<mb>-<n>": a capture
# that holds one carried plaintext of the file.
tb_marker_file() {
  local b i
  for ((b = 1; b <= $1 / 1000000; b++)); do
    head -c $((1000000 - 64 * 32)) /dev/urandom
    for ((i = 1; i <= 64; i++)); do printf 'TLSNIC-CANARY-PLAINTEXT-%03d-%03d\n' "$b" "$i"; done
  done >"$2"
  [ "$(stat -c %s "$2")" = "$1" ] || { tb_say "$2 is $(stat -c %s "$2") bytes, not $1"; return 1; }
}

# tb_http_body HEADER IN OUT: OUT is IN without its leading HEADER (empty if IN does not
# start with exactly HEADER, so a wrong answer never passes as the file).
tb_http_body() {
  if head -c ${#1} "$2" 2>/dev/null | cmp -s - <(printf '%s' "$1"); then
    tail -c +$((${#1} + 1)) "$2" >"$3"
  else
    : >"$3"
  fi
}

# ---- teardown ----

# tb_show_log FILE...: the tail of each FILE that exists, under a "--- FILE" line (stderr).
tb_show_log() {
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    echo "--- ${f##*/} (tail)" >&2
    tail -n 25 "$f" >&2 || true
  done
}

# _tb_stop SIGNAL SECONDS PID...: signals each PID (children of this shell), waits
# (bounded) for them to go, SIGKILLs what is left; returns the exit status of the last PID.
_tb_stop() {
  local sig=$1 secs=$2 pid rc=0 forced=""
  shift 2
  # stderr off inside: bash 5.2 may print "wait_for: No record of process N" (N: one of its
  # own earlier children) when a child it signalled exits while it runs `sleep`.
  {
    kill -"$sig" "$@" || true
    if ! tb_poll "$secs" _tb_all_gone "$@"; then
      forced=1
      kill -KILL "$@" || true
    fi
    for pid in "$@"; do
      rc=0
      wait "$pid" || rc=$?
    done
  } 2>/dev/null
  [ -z "$forced" ] || tb_say "still running after SIG$sig and $secs s, killed: $*"
  return "$rc"
}
_tb_all_gone() {
  local pid
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then return 1; fi
  done
  return 0
}

# tb_trap_exit: installs the exit trap described at the top (once; INT/TERM exit through it).
tb_trap_exit() {
  [ "$_tb_trap_on" = 1 ] && return 0
  _tb_trap_on=1
  trap _tb_on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
_tb_on_exit() {
  local rc=$? pids=()
  set +e
  trap - EXIT INT TERM
  mapfile -t pids < <(jobs -p) # a subshell keeps the job list: these are the script's jobs
  [ "${#pids[@]}" = 0 ] || _tb_stop TERM 5 "${pids[@]}"
  tb_daemon_pid=""
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    if declare -F tb_on_failure >/dev/null; then tb_on_failure; fi
    [ -z "$tb_daemon_log" ] || tb_show_log "$tb_daemon_log"
  fi
  tb_netns_down
  if [ -n "$tb_work" ]; then
    if [ -n "${TLSNIC_KEEP_WORK:-}" ]; then echo "work folder kept: $tb_work" >&2; else rm -rf "$tb_work"; fi
  fi
  exit "$rc"
}
