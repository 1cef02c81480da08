#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then ctest (unit, golden, contract corpus,
# the FHIR validator over every golden bundle, CLI behaviour). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
cd build
ctest --output-on-failure -j "$(nproc)"
