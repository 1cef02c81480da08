#!/usr/bin/env bash
# Identifiers full of search syntax, against the EHR sandbox (which reads conditional URLs as FHIR
# search does: percent-decoding, then "," is "or", "|" splits system and code, "\" escapes):
# one consultation for each of a dozen MRNs holding , | $ \ + & # % space é, and one that is a
# prefix of another, each lands on exactly its own Patient; sending them all again from a fresh
# store creates nothing. Prints "N passed, M failed".
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_sandboxes; rm -rf "$work"' EXIT
start_main_sandbox || exit 1

# The MRNs, and one consultation for each (record ids ID-0, ID-1, ...).
MRNS_FILE=$work/mrns.json node - "$root/mappings/examples/consultation.json" > "$work/records.ndjson" <<'JS'
const fs = require('fs');
const mrns = ['MRN-100', 'MRN-100,234', 'MRN+100234', 'MRN 100 234', 'MRN&1#2', 'MRN%41', 'MRN|7', 'MRN$8',
              'MRN\\9', 'Zoë-é', 'MRN-10', 'MRN-100\\,234', 'MRN,'];
fs.writeFileSync(process.env.MRNS_FILE, JSON.stringify(mrns));
const base = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
mrns.forEach((mrn, i) => {
  const r = structuredClone(base);
  r.record_id = `ID-${i}`;
  r.patient.mrn = mrn;
  console.log(JSON.stringify(r));
});
JS
n=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/mrns.json','utf8')).length)")

config() {  # config NAME: a store of its own
  mkdir -p "$work/$1"
  cat > "$work/$1/connector.jsonc" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 5 } }
JSON
  echo "$work/$1/connector.jsonc"
}
deliver() {  # deliver CONFIG: ingest the records and sync until done
  "$bin" ingest --config "$1" "$work/records.ndjson" > /dev/null || return 1
  for _ in $(seq 1 10); do "$bin" sync --once --config "$1" > /dev/null 2>&1 && return 0; done
  return 1
}

# Each Encounter's subject must be the one Patient whose MRN is its record's; each MRN one Patient.
patients_check() {
  ctl get 'Patient?_count=1000' > "$work/patients.json"
  ctl get 'Encounter?_count=1000' > "$work/encounters.json"
  node - "$work/mrns.json" "$work/patients.json" "$work/encounters.json" <<'JS'
const fs = require('fs');
const [mrns, patients, encounters] = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
const mrnOf = new Map();
for (const e of patients.entry ?? []) {
  const id = e.resource.identifier.find((i) => i.system === 'https://clinic.example/fhir/mrn');
  if (mrnOf.has(e.resource.id)) throw new Error('duplicate id');
  mrnOf.set(e.resource.id, id.value);
}
const perMrn = new Map();
for (const m of mrnOf.values()) perMrn.set(m, (perMrn.get(m) ?? 0) + 1);
let ok = true;
for (const m of mrns) {
  if (perMrn.get(m) !== 1) { console.log(`MRN #${mrns.indexOf(m)}: ${perMrn.get(m) ?? 0} Patients`); ok = false; }
}
if (mrnOf.size !== mrns.length) { console.log(`${mrnOf.size} Patients for ${mrns.length} MRNs`); ok = false; }
for (const e of encounters.entry ?? []) {
  const record = e.resource.identifier[0].value.split('/')[0];           // ID-i/encounter
  const want = mrns[Number(record.slice(3))];
  const got = mrnOf.get(e.resource.subject.reference.replace('Patient/', ''));
  if (got !== want) { console.log(`${record}: its Encounter's subject is the Patient of MRN #${mrns.indexOf(got)}`); ok = false; }
}
process.exit(ok ? 0 : 1);
JS
}

check "every record is delivered" deliver "$(config first)"
check "each MRN has exactly its own Patient, and each Encounter its record's Patient" patients_check
check "$n Encounters" [ "$(ctl count Encounter)" -eq "$n" ]
check "a resend from a fresh store is delivered" deliver "$(config again)"
check "... and creates nothing: still one Patient per MRN" patients_check
check "... still $n Encounters" [ "$(ctl count Encounter)" -eq "$n" ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
