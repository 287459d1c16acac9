#!/usr/bin/env bash
# The bytes every `tlsnic bench` scenario puts on the wire are what they claim to be:
# the receiver runs with --verify, so plain TCP content is compared byte for byte, NULL
# records are parsed, and the TLS scenarios (SSL_write, tlsnic software, tlsnic offload
# through tlsnicd) are decrypted and authenticated by OpenSSL's
# SSL_read after the same real handshake: a TLS stack tlsnic did not write. For TLS 1.2 and
# 1.3, each with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305; record sizes 1457 and 16384.
#
#   valid.sh BUILD_DIR NET_SH
#
# Root only (exits 77 otherwise); own namespaces (198.18.0.0/15); removed on exit.
set -euo pipefail
build=$1 net_sh=$2
# shellcheck source=scripts/lib/testbed.sh
. "$(dirname "$net_sh")/lib/testbed.sh"
tb_require_root tun
tb_tlsnicd=$build/tools/tlsnicd eval_bin=$build/bench/bench_eval
tb_workdir tlsnic-valid
work=$tb_work
tb_netns tlsnic-valid
tb_on_failure() { tb_show_log "$work"/recv*.err; }
fail() { echo "FAIL: $*"; exit 1; }

tb_daemon_start

scenarios=tcp,ssl,sw,dev,null
n_scen=5 sizes=1457,16384 n_sizes=2
total=0
port=5300
for version in 1.2 1.3; do
  for cipher in aes128 aes256 chacha; do
    # One receiver per suite: the NULL records' layout depends on it.
    port=$((port + 3))
    tb_spawn peer "$eval_bin" recv --addr "$tb_peer_v4" --port "$port" --verify \
      --version "$version" --cipher "$cipher" --timeout 300 >"$work/recv$version$cipher.out" \
      2>"$work/recv$version$cipher.err"
    recv_pid=$!
    tb_wait_for "$work/recv$version$cipher.err" listening 10
    tb_in host "$eval_bin" send --addr "$tb_peer_v4" --port "$port" \
      --version "$version" --cipher "$cipher" --ctl "$tb_ctl" --scenarios "$scenarios" \
      --sizes "$sizes" --mb 2 --rounds 1 --json "$work/samples.jsonl" --timeout 240 \
      || fail "sender failed: TLS $version $cipher"
    total=$((total + n_scen * n_sizes))
    kill "$recv_pid"
    wait "$recv_pid" || true
  done
done

conns=$(cat "$work"/recv*.out | wc -l)
bad=$(cat "$work"/recv*.out | grep -vc ' ok 1$' || true)
[ "$conns" = "$total" ] || fail "$conns connections verified, $total expected"
[ "$bad" = 0 ] || fail "$bad connection(s) did not verify: $(grep -v ' ok 1$' "$work"/recv*.out | head -5)"
# Every connection delivered exactly the content sent (2 MB).
short=$(awk '$4 != 2000000' "$work"/recv*.out | wc -l)
[ "$short" = 0 ] || fail "$short connection(s) did not deliver exactly the 2 MB sent"
# The offload really ran in device mode and the device encrypted (the sender checks the
# socket's mode; the daemon's counter proves the bytes went through the device).
jq -e -s '[.[] | select(.scenario == "dev") | .mode == "device"] | all' \
  "$work/samples.jsonl" >/dev/null || fail "an offload sample was not in device mode"
enc=$(tb_daemon_stats | awk '$1 == "tx_tls_encrypted_bytes" { print $2 }')
[ "${enc:-0}" -ge $((2 * 3 * 2 * 2000000)) ] || fail "the device encrypted only ${enc:-0} bytes"
echo "PASS: $conns connections (6 suites x scenarios $scenarios x records $sizes) verified by the receiver; device encrypted $enc bytes"
