#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then ctest (unit, golden, contract corpus,
# the FHIR validator over every golden bundle, CLI behaviour). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# deploy/test.sh --sanitize: the same suite built with ASan + UBSan into build-sanitize/.
# deploy/test.sh --fuzz [SECONDS]: every libFuzzer target for SECONDS (default 30) each, in build-fuzz/.
if [ "${1:-}" = --fuzz ]; then
  deploy/install-deps.sh --fuzz
  exec tests/fuzz/run.sh --seconds "${2:-30}"
fi
deploy/install-deps.sh
if [ "${1:-}" = --sanitize ]; then
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMIGRAINE_SANITIZE=ON > /dev/null
  cmake --build build-sanitize -j "$(nproc)"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/deploy/sanitizers.supp
  cd build-sanitize
  ctest --output-on-failure -j "$(nproc)" "${@:2}"
  exit
fi
deploy/build.sh
deploy/package.sh > /dev/null  # the Debian package, for tests/integration/package_test.sh
cd build
ctest --output-on-failure -j "$(nproc)"
