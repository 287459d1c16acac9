#!/usr/bin/env bash
# Builds tlsnic with ThreadSanitizer and runs the unit tests that use threads (CTest label
# "threads": the socket layer with close racing calls in progress, the semantics tests, the
# record store's seqlock with a writer thread, the daemon's control server). Any report
# fails the run (halt_on_error).
# Usage: scripts/test-tsan.sh [build-dir]   (default: build-tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build-tsan}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DTLSNIC_TSAN=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
# second_deadlock_stack: both stacks of a lock-order report; report_signal_unsafe=0: cmocka
# longjmps out of its signal handler only when a test has already failed.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 report_signal_unsafe=0 ${TSAN_OPTIONS:-}"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -L threads -j 2
