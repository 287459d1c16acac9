#!/usr/bin/env bash
# Builds tlsnic with AddressSanitizer + UndefinedBehaviorSanitizer and runs the unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build-asan}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DTLSNIC_SANITIZE=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -L unit -j 2
