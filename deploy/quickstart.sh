#!/usr/bin/env bash
# The connector's main job against the bundled EHR sandbox: the example records of one patient's
# care pathway (consultation -> injection session -> follow-up) are checked, mapped to FHIR R4,
# stored in the durable outbox, and delivered over mutual TLS to a strict FHIR server; then what
# the EHR holds is printed. Everything lands in build/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh

out=build/quickstart
rm -rf "$out"
mkdir -p "$out"
# One NDJSON file in care order: each record sees the earlier ones as its patient's history.
for kind in consultation procedure follow_up; do
  tr -d '\n' < "mappings/examples/$kind.json"
  echo
done > "$out/pathway.ndjson"

echo
echo "== 1. What each example record yields =="
build/bin/migraine-connector map --summary "$out/pathway.ndjson"

echo
echo "== 2. The EHR sandbox (a strict FHIR R4 server), with development certificates =="
certs/make-dev-certs.sh "$out/certs"
root=$PWD work=$out
source tests/integration/lib.sh
trap stop_sandboxes EXIT
start_sandbox ehr "$out/certs/server.pem" "$out/certs/server.key" --client-ca "$out/certs/ca.pem" --require-client-cert
base=$BASE_ehr
echo "listening at $base (client certificate required)"
cat > "$out/connector.jsonc" <<JSON
{
  "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$base", "ca_file": "certs/ca.pem",
           "client_cert_file": "certs/client.pem", "client_key_file": "certs/client.key" }
}
JSON

echo
echo "== 3. Into the durable outbox =="
build/bin/migraine-connector ingest --config "$out/connector.jsonc" "$out/pathway.ndjson"

echo
echo "== 4. Delivered to the EHR =="
build/bin/migraine-connector sync --once --config "$out/connector.jsonc"
build/bin/migraine-connector status --config "$out/connector.jsonc"

echo
echo "== 5. What the EHR now holds =="
for type in Patient Practitioner Organization Device Encounter Condition Observation MedicationStatement \
            ServiceRequest Medication Procedure MedicationAdministration ChargeItem AdverseEvent \
            DetectedIssue Provenance; do
  printf '  %-26s %s\n' "$type" "$(node tests/integration/sandbox-ctl.mjs "$base" "$out/certs" count "$type")"
done
