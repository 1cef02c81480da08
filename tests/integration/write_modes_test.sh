#!/usr/bin/env bash
# The whole pathway in each write mode (issue 11): consultation, procedure, follow-up, then an
# amendment of the procedure and an entered-in-error of the follow-up, for 2 patients, delivered
# by sync --once against the sandbox playing the EHR each mode is for. Afterwards:
#   - transaction (full), batch (batch) and single against the full server hold the same
#     resources: the same identifiers, each once, with the same statuses (retractions applied);
#   - single against the Epic-like EHR holds exactly that state's share of the types it lets a third
#     party create, plus one note per procedure and follow-up for what it does not take;
#   - no run was refused anything, so nothing the profile forbids was attempted.
# Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

certs=$work/certs
"$root/certs/make-dev-certs.sh" "$certs" > /dev/null || exit 1
node "$root/tests/integration/make-records.mjs" --patients 2 --prefix WM --ehr-owned > "$work/ehr-patients.ndjson"
start_sandbox main "$certs/server.pem" "$certs/server.key" --client-ca "$certs/ca.pem" --require-client-cert \
  --preload "$work/ehr-patients.ndjson" || exit 1
node "$root/tests/integration/make-records.mjs" --patients 2 --prefix WM > "$work/records.ndjson"
# Revision 2 of each procedure (nothing discarded now, a note added) and each follow-up entered in error.
node -e '
const fs = require("fs");
for (const r of fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse)) {
  if (r.record_type === "procedure") { r.revision = 2; r.units_discarded = 0; r.notes = "amended: nothing discarded"; }
  else if (r.record_type === "follow_up") { r.revision = 2; r.status = "entered-in-error"; }
  else continue;
  console.log(JSON.stringify(r));
}' "$work/records.ndjson" > "$work/changes.ndjson"

# What the EHR holds, one line per resource: type, business key (identifier or tag), status.
holdings() {
  local types=$1
  for t in $types; do
    ctl get "$t?_count=1000" | node -e "
      const b = JSON.parse(require('fs').readFileSync(0, 'utf8'));
      for (const e of b.entry || []) {
        const r = e.resource;
        const ids = r.identifier ? [].concat(r.identifier) : [];
        const key = ids.length ? ids[0].value : (r.meta && r.meta.tag || []).map((t) => t.code).join('+');
        console.log([r.resourceType, key, r.status || (r.meta && r.meta.tag || []).map((t) => t.code).join('+')].join(' | '));
      }"
  done | sort
}
all_types="Organization Practitioner Patient Device Encounter Condition ServiceRequest Medication Procedure
MedicationAdministration MedicationStatement Observation AdverseEvent ChargeItem DetectedIssue Provenance DocumentReference"
epic_types="Condition Observation Procedure ServiceRequest DocumentReference"

run_mode() {  # run_mode MODE PROFILE: the pathway, then the changes; leaves the EHR as it ends
  local mode=$1 profile=$2 d=$work/$1-$2
  mkdir -p "$d"
  cat > "$d/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "write_mode": "$mode" },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 5 },
  "log": { "path": "sync.log" } }
JSON
  ctl reset
  ctl profile "$profile"
  "$bin" ingest --config "$d/connector.jsonc" "$work/records.ndjson" > /dev/null
  "$bin" sync --once --config "$d/connector.jsonc" > "$d/sync1.out" 2>&1
  "$bin" ingest --config "$d/connector.jsonc" "$work/changes.ndjson" > /dev/null
  "$bin" sync --once --config "$d/connector.jsonc" > "$d/sync2.out" 2>&1
  check "$mode/$profile: every revision delivered, none dead" \
    grep -q "records: pending 0 in_flight 0 retry_scheduled 0 delivered 10 dead 0" <("$bin" status --config "$d/connector.jsonc")
  check "$mode/$profile: nothing refused (nothing the profile forbids was attempted)" \
    [ "$(ctl stats | node -e "console.log(Object.keys(JSON.parse(require('fs').readFileSync(0,'utf8')).refused).length)")" = 0 ]
}

run_mode transaction full
holdings "$all_types" > "$work/transaction.txt"
check "transaction: the follow-ups' observations are entered in error" \
  [ "$(grep -c '^Observation | WM-F-.* | entered-in-error$' "$work/transaction.txt")" -gt 0 ]
check "transaction: each resource once" [ -z "$(cut -d'|' -f1,2 "$work/transaction.txt" | uniq -d)" ]

for pair in batch:batch single:full; do
  mode=${pair%%:*}; profile=${pair##*:}
  run_mode "$mode" "$profile"
  holdings "$all_types" > "$work/$mode.txt"
  check "$mode/$profile: the same resources, keys and statuses as the transaction ($(wc -l < "$work/$mode.txt"))" \
    diff "$work/transaction.txt" "$work/$mode.txt"
done

run_mode single single
holdings "$epic_types" > "$work/epic.txt"
grep -E '^(Condition|Observation|Procedure|ServiceRequest) ' "$work/transaction.txt" > "$work/expected-epic.txt"
check "single/single: what the Epic-like EHR lets it create, as the transaction wrote it" \
  diff "$work/expected-epic.txt" <(grep -v '^DocumentReference ' "$work/epic.txt")
check "single/single: a note per procedure and follow-up, the follow-ups' entered in error" \
  [ "$(grep -c '^DocumentReference | WM-P-[01]/note | current$' "$work/epic.txt")/$(grep -c '^DocumentReference | WM-F-[01]/note | entered-in-error$' "$work/epic.txt")" = 2/2 ]
check "single/single: the patients are the EHR's own, none created" [ "$(ctl count Patient)" = 2 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
