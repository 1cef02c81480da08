#!/usr/bin/env bash
# Every Bundle the golden cases and the valid contract corpus produce, through the real FHIR R4
# validator (tests/node/validate-fhir.mjs: @medplum/core plus required-binding checks).
# Bundles are made by the CLI itself, with each golden case's history, as a clinic would run it.
set -euo pipefail
connector=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for dir in "$root"/tests/golden/cases/*/; do
  record=$(ls "$dir"record.* 2>/dev/null | head -1)
  history=()
  [ -f "$dir/history.ndjson" ] && history=(--history "$dir/history.ndjson")
  # Rejected records (exit 2) yield no bundle, which is what their case expects.
  "$connector" map "${history[@]}" "$record" >> "$work/bundles.ndjson" 2>/dev/null || [ $? -eq 2 ]
done
for f in "$root"/tests/contract/valid/* "$root"/mappings/examples/*.json; do
  "$connector" map "$f" >> "$work/bundles.ndjson" 2>/dev/null
done
count=$(wc -l < "$work/bundles.ndjson")
echo "validating $count bundles"
[ "$count" -ge 40 ] || { echo "too few bundles: $count"; exit 1; }
node "$root/tests/node/validate-fhir.mjs" "$work/bundles.ndjson" | grep -v '^ok '
