#!/usr/bin/env bash
# The connector's main job, today: map the example records of one patient's care pathway
# (consultation -> injection session -> follow-up) to FHIR R4 transaction Bundles and say what
# each yields. The Bundles themselves land in build/quickstart/bundles.ndjson.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh

out=build/quickstart
mkdir -p "$out"
# One NDJSON file in care order: each record sees the earlier ones as its patient's history.
for kind in consultation procedure follow_up; do
  tr -d '\n' < "mappings/examples/$kind.json"
  echo
done > "$out/pathway.ndjson"

echo
echo "== What each example record yields =="
build/bin/migraine-connector map --summary "$out/pathway.ndjson"
build/bin/migraine-connector map "$out/pathway.ndjson" > "$out/bundles.ndjson"
echo
echo "== Validating the Bundles against the FHIR R4 definitions =="
node tests/node/validate-fhir.mjs "$out/bundles.ndjson"
echo
echo "Bundles: $out/bundles.ndjson (one per line; 'map --pretty FILE' indents one)"
