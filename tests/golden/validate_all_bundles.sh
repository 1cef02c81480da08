#!/usr/bin/env bash
# Every Bundle the golden cases and the valid contract corpus produce, through four validators,
# each of which must pass:
#   validate-fhir.mjs                  @medplum/core, required bindings, transaction rules,
#                                      extension content against its StructureDefinition
#   check-r4-schema-and-invariants.mjs HL7's R4 JSON Schema (ajv) and every error-level R4
#                                      FHIRPath invariant (HL7's fhirpath engine)
#   validate-us-core.mjs               US Core 6.1.0, for the profiles each resource claims
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
  # Rejected (exit 2) and held (exit 3) records yield no bundle, which is what their case expects.
  rc=0
  "$connector" map "${history[@]}" "$record" >> "$work/bundles.ndjson" 2>/dev/null || rc=$?
  case $rc in 0|2|3) ;; *) echo "map failed with exit $rc on $record"; exit 1 ;; esac
done
# The valid corpus and the examples as one stream, so follow-ups meet the procedures they review
# (a .json record becomes one line: JSON strings hold no raw newlines).
for f in "$root"/tests/contract/valid/* "$root"/mappings/examples/*.json; do
  case $f in *.ndjson) cat "$f" ;; *) tr -d '\n\r' < "$f"; echo ;; esac
done > "$work/corpus.ndjson"
"$connector" map "$work/corpus.ndjson" >> "$work/bundles.ndjson" 2>/dev/null
count=$(wc -l < "$work/bundles.ndjson")
echo "validating $count bundles"
[ "$count" -ge 40 ] || { echo "too few bundles: $count"; exit 1; }
status=0
for validator in validate-fhir.mjs check-r4-schema-and-invariants.mjs validate-us-core.mjs; do
  echo "== $validator"
  node "$root/tests/node/$validator" "$work/bundles.ndjson" 2>/dev/null | grep -v '^ok ' || status=1
done
exit $status
