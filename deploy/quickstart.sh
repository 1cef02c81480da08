#!/usr/bin/env bash
# The connector's main job against the bundled EHR sandbox, as a clinic runs it: the daemon takes
# the example care pathway of one patient (consultation -> injection session -> follow-up) from its
# inbox folder and its HTTPS ingest API, stores it in the durable outbox, maps it to FHIR R4 and
# delivers it over mutual TLS to a strict FHIR server, while the sync log, the metrics and the
# status page show what happens. Then what the EHR holds is printed. Everything lands in
# build/quickstart/. With --keep-running the daemon and the sandbox stay up (Ctrl-C stops them)
# so the status page can be opened in a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
keep_running=no
[ "${1:-}" = --keep-running ] && keep_running=yes
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
mkdir -p "$out/inbox"
printf 'quickstart-%s%s\n' "$RANDOM" "$RANDOM" > "$out/ingest.token"
cat > "$out/connector.jsonc" <<JSON
{
  "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$base", "ca_file": "certs/ca.pem",
           "client_cert_file": "certs/client.pem", "client_key_file": "certs/client.key" },
  "inbox": { "dir": "inbox", "poll_ms": 200 },
  "ingest_api": { "listen": "127.0.0.1:0", "token_file": "ingest.token", "client_ca_file": "certs/ca.pem",
                  "cert_file": "certs/server.pem", "key_file": "certs/server.key" },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "sync-log.jsonl" },
  "alerts": { }
}
JSON
bin=build/bin/migraine-connector

echo
echo "== 3. The daemon: inbox folder, ingest API, status page =="
build/bin/migraine-connector config-check --config "$out/connector.jsonc"
"$bin" run --config "$out/connector.jsonc" > "$out/daemon.out" 2> "$out/daemon.err" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; stop_sandboxes' EXIT
for _ in $(seq 100); do grep -q "status page" "$out/daemon.err" && break; sleep 0.1; done
cat "$out/daemon.err"
api=$(sed -n 's|.*ingest API on \(https://[^ ]*/v1/records\).*|\1|p' "$out/daemon.err")
admin=$(sed -n 's|.*admin API on \(http://[^ ]*\)/$|\1|p' "$out/daemon.err")

echo
echo "== 4. Records arrive: two files through the inbox, one record through the API =="
# The practice system writes under a temporary name and renames: the daemon takes only whole files.
for kind in consultation procedure; do
  cp "mappings/examples/$kind.json" "$out/inbox/$kind.json.tmp"
  mv "$out/inbox/$kind.json.tmp" "$out/inbox/$kind.json"
done
for _ in $(seq 100); do [ -f "$out/inbox/processed/procedure.json" ] && break; sleep 0.1; done
ls "$out/inbox/processed"
node tests/integration/https-request.mjs POST "$api" --ca "$out/certs/ca.pem" --cert "$out/certs/client.pem" \
  --key "$out/certs/client.key" --token "$(cat "$out/ingest.token")" --type application/json \
  --body-file mappings/examples/follow_up.json
pending() {
  node tests/integration/https-request.mjs GET "$admin/api/status" | tail -n +2 |
    node -e "const j=JSON.parse(require('fs').readFileSync(0,'utf8')).records; console.log(j.pending+j.in_flight+j.retry_scheduled+j.held)"
}
for _ in $(seq 300); do [ "$(pending)" = 0 ] && break; sleep 0.2; done

echo
echo "== 5. What IT staff see: the sync log, the status, a few metrics (no patient data in any) =="
"$bin" log --config "$out/connector.jsonc"
echo
"$bin" status --config "$out/connector.jsonc"
echo
node tests/integration/https-request.mjs GET "$admin/metrics" |
  grep -E '^migraine_(records\{|deliveries_total|delivery_latency_seconds_count|certificate_expiry_days|ready )'
echo "readiness: $(node tests/integration/https-request.mjs GET "$admin/readyz" | tail -n +2)"

echo
echo "== 6. What the EHR now holds =="
for type in Patient Practitioner Organization Device Encounter Condition Observation MedicationStatement \
            ServiceRequest Medication Procedure MedicationAdministration ChargeItem AdverseEvent \
            DetectedIssue Provenance; do
  printf '  %-26s %s\n' "$type" "$(node tests/integration/sandbox-ctl.mjs "$base" "$out/certs" count "$type")"
done

echo
echo "Status page: $admin/   metrics: $admin/metrics   sync log: $out/sync-log.jsonl"
if [ "$keep_running" = yes ]; then
  echo "The daemon and the EHR sandbox keep running; drop files into $out/inbox. Ctrl-C stops both."
  wait "$daemon"
else
  echo "(deploy/quickstart.sh --keep-running leaves them up to look at the status page in a browser)"
fi
