#!/usr/bin/env bash
# Runs in the guest (tests/vm/kdev.sh starts it through vm/run.sh): the upstream kernel's
# TLS offload (net/tls/tls_device.c) drives tlsnic's device model through tlsnic.ko.
# Two namespaces, srv and cli, joined only by the devices tn0 / tn1 that tlsnic-kdevd
# attaches and wires together; an unmodified `openssl s_server -WWW -sendfile` with KTLS
# in its OpenSSL config (no preload library) serves a file to curl.
#
#   kdev_guest.sh MODE KDEVD KMOD
#
#   offload  TLS 1.2 AES-128-GCM and AES-256-GCM: byte-exact; the server counts
#            TlsTxDevice; the device model encrypted about the file's size (ethtool -S);
#            TLS 1.3: the kernel does not offload 1.3 to devices (6.12): TlsTxSw, and the
#            device encrypts nothing. Wire capture and key log to $TLSNIC_VM_OUT.
#   loss     2 % of the wire's frames lost, TLS 1.2: byte-exact; once with the device's
#            checkpoints, once without (every resync from the kernel's records that the
#            driver sends with a segment out of order, tls_get_record).
#   rx       the receive side: openssl s_client (KTLS, TLS 1.2) in cli downloads from
#            s_server in srv, so the kernel offloads the client's RX to tn1 (TlsRxDevice)
#            and tn1's device model decrypts: byte-exact, the device decrypted about the
#            file's size, no tag failure; then with 2 % loss on the wire, AES-256-GCM,
#            byte-exact: once as the device comes (it places headers after a gap itself
#            where it can), once with --rx-no-guess: every resync is a request to the
#            kernel (RESYNC_REQ), answered by the kernel (TlsRxDeviceResync, tls_dev_resync).
#   unload   a download through tn0 with a second path (veth) beside it; mid-download
#            rmmod is refused while the devices are attached; then tlsnic-kdevd is killed
#            (its files close, the devices go, queued frames are discarded) and tlsnic.ko
#            unloaded: the kernel has moved the socket to its software fallback, the
#            download completes over the veth, byte-exact, and neither path's capture
#            holds plaintext.
#
# Files for the host's checks go to $TLSNIC_VM_OUT (wire pcaps, key log, canary count).
set -euo pipefail

mode=$1 kdevd=$2 kmod=$3
out=${TLSNIC_VM_OUT:?run me through vm/run.sh}
work=$(mktemp -d)
size=$((2 * 1000 * 1000))
[ "$mode" != loss ] || size=$((1000 * 1000)) # each loss costs a retransmission timeout or so
daemon_pid="" server_pid="" capture_pid=""
cleanup() {
  local rc=$?
  for pid in $server_pid $capture_pid $daemon_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del srv 2>/dev/null || true
  ip netns del cli 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "--- daemon log"; cat "$work"/daemon*.log 2>/dev/null | tail -n 20 || true
    echo "--- server log"; tail -n 20 "$work/server.log" 2>/dev/null || true
    echo "--- dmesg"; dmesg | tail -n 30
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
wait_for() { # COMMAND... : true within 20 s
  local i
  for ((i = 0; i < 200; i++)); do "$@" && return 0; sleep 0.1; done
  fail "timed out waiting for: $*"
}
stat_of() { # NS DEV NAME: one ethtool -S counter
  ip netns exec "$1" ethtool -S "$2" | awk -v k="$3:" '$1 == k { print $2 }'
}
tls_stat() { ip netns exec srv awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat; }
cli_tls_stat() { ip netns exec cli awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat; }

cd "$work"
modprobe tls
insmod "$kmod" || fail "insmod $kmod"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
  -out cert.pem -subj /CN=tlsnic-kdev -days 2 2>/dev/null
# Random blocks, each ending in plaintext canaries that must never cross the wire.
for b in $(seq 1 $((size / 100000))); do
  head -c $((100000 - 16 * 32)) /dev/urandom
  for i in $(seq 1 16); do printf 'TLSNIC-CANARY-PLAINTEXT-%03d-%03d\n' "$b" "$i"; done
done > file.bin
[ "$(stat -c %s file.bin)" = "$size" ] || fail "file.bin is not $size bytes"
want=$(sha256sum < file.bin | cut -d' ' -f1)
echo "$want" > "$out/want.sha256"
cat > openssl.cnf <<'CNF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = tls_system_default
[tls_system_default]
Options = KTLS
CNF

daemon_n=0
start_daemon() { # tlsnic-kdevd options; devices tn0 (srv) and tn1 (cli)
  daemon_n=$((daemon_n + 1))
  rm -f ready
  "$kdevd" --dev tn0 --dev tn1 --ready "$work/ready" "$@" 2>"$work/daemon$daemon_n.log" &
  daemon_pid=$!
  wait_for test -f ready
  ip netns add srv 2>/dev/null || true
  ip netns add cli 2>/dev/null || true
  ip link set tn0 netns srv
  ip link set tn1 netns cli
  ip -n srv link set lo up
  ip -n cli link set lo up
  ip -n srv addr add 198.18.0.1/24 dev tn0
  ip -n cli addr add 198.18.0.2/24 dev tn1
  ip -n srv link set tn0 up
  ip -n cli link set tn1 up
  grep -q 'tls-hw-tx-offload: on' <<<"$(ip netns exec srv ethtool -k tn0)" ||
    fail "tn0 does not offer TLS TX offload: $(ip netns exec srv ethtool -k tn0 | grep tls)"
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || fail "tlsnic-kdevd exited with an error: $(tail -n 5 "$work/daemon$daemon_n.log")"
  daemon_pid=""
  ip netns del srv
  ip netns del cli
}
port=4432
start_server() { # s_server options
  port=$((port + 1))
  ip netns exec srv env OPENSSL_CONF="$work/openssl.cnf" timeout 300 openssl s_server \
    -accept "198.18.0.1:$port" -cert cert.pem -key key.pem -WWW -sendfile \
    -keylogfile "$work/keylog" "$@" >>server.log 2>&1 &
  server_pid=$!
  wait_for sh -c "ip netns exec srv ss -ltn | grep -q ':$port '"
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
fetch() { # OUTFILE curl-options...
  local f=$1
  shift
  local t0=$(date +%s.%N)
  ip netns exec cli timeout 240 curl -sSk --max-time 200 "$@" "https://198.18.0.1:$port/file.bin" \
    -o "$f" || fail "curl $* failed"
  [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$want" ] || fail "download $* not byte-exact ($(stat -c %s "$f") bytes)"
  echo "  download ($*): $size bytes byte-exact in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
}

sclient_fetch() { # OUTFILE CIPHER: the file through openssl s_client (kTLS RX), byte-exact
  local f=$1 t0=$(date +%s.%N)
  printf 'GET /file.bin HTTP/1.0\r\n\r\n' |
    ip netns exec cli env OPENSSL_CONF="$work/openssl.cnf" timeout 240 openssl s_client \
      -connect "198.18.0.1:$port" -tls1_2 -cipher "$2" -quiet > "$f.http" 2>sclient.err ||
    fail "s_client failed: $(tail -n 3 sclient.err)"
  python3 - "$f.http" "$f" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b"")
PY
  [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$want" ] ||
    fail "s_client download ($2) not byte-exact ($(stat -c %s "$f") bytes): $(tail -n 3 sclient.err)"
  echo "  s_client download ($2): $size bytes byte-exact in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
}

case "$mode" in
rx)
  for run in clean loss loss-no-guess; do
    cipher=ECDHE-ECDSA-AES256-GCM-SHA384
    case $run in
    clean)
      start_daemon --pcap "$out/wire-rx.pcap"
      cipher=ECDHE-ECDSA-AES128-GCM-SHA256 ;;
    loss) start_daemon --loss 0.02 --seed 11 --pcap "$out/wire-rx-loss.pcap" ;;
    *) start_daemon --loss 0.02 --seed 11 --rx-no-guess --pcap "$out/wire-rx-loss-ng.pcap" ;;
    esac
    grep -q 'tls-hw-rx-offload: on' <<<"$(ip netns exec cli ethtool -k tn1)" ||
      fail "tn1 does not offer TLS RX offload: $(ip netns exec cli ethtool -k tn1 | grep tls)"
    rxdev0=$(cli_tls_stat TlsRxDevice) resync0=$(cli_tls_stat TlsRxDeviceResync)
    decerr0=$(cli_tls_stat TlsDecryptError)
    # With loss, whether a data frame towards the client is lost depends on how the two
    # directions' frames interleave (one random stream) and on TSO batching: up to three
    # downloads, each byte-exact, until one made the device ask the kernel (no-guess).
    for try in 1 2 3; do
      start_server -tls1_2
      sclient_fetch got.bin "$cipher"
      stop_server
      sleep 0.3 # the daemon hands its counters to the driver every 100 ms
      [ "$run" != loss-no-guess ] || [ "$(stat_of cli tn1 drv_rx_tls_resync_req)" -gt 0 ] && break
      echo "  (download $try: the device never had to ask the kernel, once more)"
    done
    [ "$(($(cli_tls_stat TlsRxDevice) - rxdev0))" = "$try" ] ||
      fail "$run: the client's RX was not offloaded (TlsRxDevice $rxdev0 -> $(cli_tls_stat TlsRxDevice); s_client: $(tail -n 3 sclient.err))"
    [ "$(cli_tls_stat TlsDecryptError)" = "$decerr0" ] || fail "$run: TlsDecryptError went up"
    dec=$(stat_of cli tn1 rx_tls_decrypted_bytes) marked=$(stat_of cli tn1 drv_rx_tls_decrypted_packets)
    req=$(stat_of cli tn1 rx_tls_resync_req_start) ans=$(stat_of cli tn1 rx_tls_resync_req_end)
    ok=$(stat_of cli tn1 rx_tls_resync_res_ok) err=$(stat_of cli tn1 rx_tls_err)
    kresync=$(($(cli_tls_stat TlsRxDeviceResync) - resync0))
    echo "  $run ($cipher, $try download(s)): TlsRxDevice +$try; device decrypted $dec bytes, $marked frames marked decrypted;" \
      "tag failures $err; resync requests $req, answered $ans, resynced $ok; TlsRxDeviceResync +$kresync"
    echo "    cli: $(ip -n cli -s link show tn1 | awk '/RX:/ { getline; print "tn1 rx packets " $2 ", dropped " $4 }');" \
      "TCP: $(ip netns exec cli nstat -az TcpExtTCPOFOQueue TcpExtTCPRcvQDrop TcpExtTCPBacklogDrop 2>/dev/null | awk 'NR > 1 { printf "%s %s ", $1, $2 }')"
    [ "$err" = 0 ] || fail "$run: the device saw $err tag failures"
    [ "$marked" -gt 0 ] || fail "$run: no frame reached the kernel marked decrypted"
    if [ "$run" = clean ]; then
      # No loss on the wire, yet often not every byte: OpenSSL sets TLS_RX at the server's
      # ChangeCipherSpec, and the server's Finished (45 bytes) may already sit in the socket
      # then, having passed the device before it had the flow. The device meets the
      # stream 45 bytes past the context's start, asks the kernel, and decrypts again
      # from the record after the one the kernel answers for.
      [ "$dec" -ge $((size * 9 / 10)) ] && [ "$dec" -le $((size + size / 20)) ] ||
        fail "clean: the device decrypted $dec bytes for a $size-byte file"
    else
      [ "$dec" -ge $((try * size / 2)) ] || fail "$run: the device decrypted only $dec of $try x $size bytes"
    fi
    if [ "$run" = loss-no-guess ]; then
      [ "$(stat_of cli tn1 drv_rx_tls_resync_req)" -gt 0 ] && [ "$kresync" -gt 0 ] &&
        [ "$ok" -gt 0 ] || fail "$run: no resync request went through the kernel"
    fi
    stop_daemon
  done
  echo "PASS: upstream kTLS offloaded the client's RX (TLS 1.2) to tlsnic's device model: byte-exact, with loss resynced through the kernel"
  ;;
offload)
  start_daemon --pcap "$out/wire.pcap"
  for cipher in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384; do
    dev0=$(tls_stat TlsTxDevice) enc0=$(stat_of srv tn0 tx_tls_encrypted_bytes)
    start_server -tls1_2
    fetch got.bin --tls-max 1.2 --ciphers "$cipher"
    stop_server
    grep -q "KTLS SENDFILE 'file.bin' OK" server.log || fail "s_server did not use kTLS sendfile"
    sleep 0.3 # the daemon hands its counters to the driver every 100 ms
    dev1=$(tls_stat TlsTxDevice) enc1=$(stat_of srv tn0 tx_tls_encrypted_bytes)
    [ "$((dev1 - dev0))" = 1 ] || fail "$cipher: TlsTxDevice went from $dev0 to $dev1"
    enc=$((enc1 - enc0))
    [ "$enc" -ge "$size" ] && [ "$enc" -le $((size + size / 20)) ] ||
      fail "$cipher: the device encrypted $enc bytes for a $size-byte file"
    echo "  $cipher: TlsTxDevice +1, device encrypted $enc bytes ($(stat_of srv tn0 tx_tls_encrypted_packets) packets so far)"
  done
  sw0=$(tls_stat TlsTxSw) enc0=$(stat_of srv tn0 tx_tls_encrypted_bytes)
  start_server -tls1_3
  fetch got13.bin --tlsv1.3
  stop_server
  sleep 0.3
  [ "$(($(tls_stat TlsTxSw) - sw0))" = 1 ] || fail "TLS 1.3 did not use software kTLS"
  [ "$(stat_of srv tn0 tx_tls_encrypted_bytes)" = "$enc0" ] || fail "the device encrypted TLS 1.3 bytes"
  echo "  TLS 1.3: software kTLS (TlsTxSw +1; the kernel offloads only TLS 1.2 to devices), device untouched"
  ip netns exec srv ethtool -S tn0 | sed 's/^/    /'
  ip netns exec srv cat /proc/net/tls_stat | awk '$2 != 0' | sed 's/^/    /'
  stop_daemon
  cp keylog "$out/keylog"
  echo "PASS: upstream kTLS offloaded TLS 1.2 (AES-128/256-GCM) to tlsnic's device model: byte-exact"
  ;;
loss)
  for opt in "" --no-checkpoints; do
    start_daemon --loss 0.02 --seed 7 $opt --pcap "$out/wire${opt:+-nockpt}.pcap"
    # Which frames the wire loses depends on how the two directions' frames interleave
    # (one random stream) and on how the kernel batches them (TSO): a download may lose
    # only ACKs. Up to three downloads, each byte-exact, until one lost a data frame.
    for try in 1 2 3; do
      start_server -tls1_2
      fetch got.bin --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256
      stop_server
      sleep 0.3
      [ "$(stat_of srv tn0 drv_tx_tls_ooo)" -gt 0 ] && break
      echo "  (download $try: no data frame lost, once more)"
    done
    ooo=$(stat_of srv tn0 drv_tx_tls_ooo) recs=$(stat_of srv tn0 drv_tx_tls_resync_records)
    dooo=$(stat_of srv tn0 tx_tls_ooo) ckpt=$(stat_of srv tn0 tx_tls_ooo_ckpt)
    dump=$(stat_of srv tn0 tx_tls_dump_packets) rbytes=$(stat_of srv tn0 tx_tls_resync_bytes)
    nosync=$(stat_of srv tn0 tx_tls_drop_no_sync_data)
    echo "  loss 2 % ${opt:-with checkpoints} (download $try): driver: $ooo segments out of order, $recs records sent with them;" \
      "device: $dooo out of order, $ckpt from checkpoints, $dump records re-sealed from the kernel's, $rbytes prefix bytes, $nosync no-sync drops"
    [ "$ooo" -gt 0 ] && [ "$recs" -gt 0 ] || fail "no retransmission reached the driver out of order"
    if [ -n "$opt" ]; then
      [ "$dump" -gt 0 ] || fail "without checkpoints no resync came from the kernel's records"
    fi
    stop_daemon
  done
  echo "PASS: 2 % loss: retransmissions resynced (device checkpoints; the kernel's records via tls_get_record), byte-exact"
  ;;
unload)
  start_daemon --pcap "$out/wire-tlsnic.pcap"
  # A second path, preferred less (metric 100): what the connection takes once tn0 is gone.
  ip link add vs netns srv type veth peer name vc netns cli
  ip -n srv addr add 198.18.0.1/32 dev vs
  ip -n cli addr add 198.18.0.2/32 dev vc
  ip -n srv link set vs up
  ip -n cli link set vc up
  ip -n srv route add 198.18.0.0/24 dev vs metric 100
  ip -n cli route add 198.18.0.0/24 dev vc metric 100
  ip netns exec cli dumpcap -i vc -w "$out/wire-veth.pcapng" 2>dumpcap.log &
  capture_pid=$!
  wait_for grep -q "Capturing on" dumpcap.log
  start_server -tls1_2
  ip netns exec cli timeout 240 curl -sSk --max-time 200 --limit-rate 100K --tls-max 1.2 \
    --ciphers ECDHE-ECDSA-AES128-GCM-SHA256 "https://198.18.0.1:$port/file.bin" -o got.bin &
  curl_pid=$!
  wait_for sh -c "[ \$(stat -c %s got.bin 2>/dev/null || echo 0) -gt 100000 ]"
  [ "$(tls_stat TlsCurrTxDevice)" = 1 ] || fail "the download is not offloaded"
  ! rmmod tlsnic 2>/dev/null || fail "tlsnic.ko unloaded while its devices were attached"
  at=$(stat -c %s got.bin)
  kill -KILL "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  stat -c %s got.bin > "$out/at_kill" # what the veth must still carry: the rest
  daemon_pid=""
  rmmod tlsnic || fail "rmmod tlsnic failed"
  ! grep -q '^tlsnic ' <<<"$(lsmod)" || fail "tlsnic.ko still loaded"
  echo "  offloaded download at $at of $size bytes: rmmod refused (devices attached); tlsnic-kdevd killed, tlsnic.ko unloaded"
  wait "$curl_pid" || fail "the download did not survive the unload"
  [ "$(sha256sum < got.bin | cut -d' ' -f1)" = "$want" ] || fail "download not byte-exact after the unload"
  stop_server
  sleep 1
  kill "$capture_pid"
  wait "$capture_pid" 2>/dev/null || true
  capture_pid=""
  echo "  the rest went over the veth, encrypted by the kernel's software fallback: byte-exact"
  dmesg | grep -E 'WARNING|BUG|Oops' && fail "the kernel complained"
  echo "PASS: unload mid-download: no plaintext expected on either path (the host checks the captures)"
  ;;
*)
  fail "unknown mode $mode"
  ;;
esac
