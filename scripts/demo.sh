#!/usr/bin/env bash
# Builds tlsnic (in ./build) and runs the demo: a real OpenSSL handshake for each TLS
# version x cipher, then records sealed and opened by tlsnic, checked by OpenSSL.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec build/tools/tlsnic demo
