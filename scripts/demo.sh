#!/usr/bin/env bash
# Builds tlsnic and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
if [ -x build/tools/tlsnic ]; then
  exec build/tools/tlsnic demo "$@"
fi
echo "demo: the tlsnic CLI is not built yet; running the record-layer known-answer tests instead"
exec build/tests/unit/record/test_record
