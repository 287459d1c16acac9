#!/usr/bin/env bash
# Builds tlsnic (in ./build) and runs the demo (`tlsnic demo`): as root, tlsnicd between two
# network namespaces with an unmodified openssl s_server in device mode and curl / s_client
# downloading through it; without root, the in-process demo (libssl handshakes, records
# sealed and opened by tlsnic, checked by libssl).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec build/tools/tlsnic demo
