#!/usr/bin/env bash
# The EHR as it is (issue 11, first part): config-check reads the EHR's CapabilityStatement and
# says how each resource type would be written, against the sandbox playing a full server and an
# Epic-like one; then the running daemon meets an EHR that stops taking transactions (the sandbox
# switched to its batch profile): delivery pauses with a write_refused event, nothing becomes a
# dead letter, the records wait, and once the EHR takes transactions again everything is delivered
# once, by itself. Prints "N passed, M failed". Waits poll with a deadline.
set -uo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
source "$root/tests/integration/lib.sh"
trap 'stop_daemon; stop_sandboxes; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

start_main_sandbox || exit 1
d=$work/clinic
mkdir -p "$d/inbox"
config=$d/connector.jsonc
cat > "$config" <<JSON
{ "store": { "path": "outbox.db" },
  "ehr": { "base_url": "$BASE_main", "ca_file": "$certs/ca.pem", "client_cert_file": "$certs/client.pem",
           "client_key_file": "$certs/client.key", "connections": 2, "timeout_seconds": 10 },
  "sync": { "base_delay_ms": 1, "max_delay_ms": 1000 },
  "inbox": { "dir": "inbox", "poll_ms": 100 },
  "admin": { "listen": "127.0.0.1:0" },
  "log": { "path": "sync-log.jsonl" } }
JSON
drop() {  # drop NAME PREFIX PATIENTS: a batch of whole pathways into the inbox
  node "$root/tests/integration/make-records.mjs" --patients "$3" --prefix "$2" > "$d/inbox/.$1.tmp" &&
    mv "$d/inbox/.$1.tmp" "$d/inbox/$1.ndjson"
}
count_of() { "$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records; console.log(r['$1']||0)"; }
settled() { [ "$("$bin" status --config "$config" --json | node -e "
  const r=JSON.parse(require('fs').readFileSync(0,'utf8')).records;
  console.log((r.pending||0)+(r.in_flight||0)+(r.retry_scheduled||0)+(r.held||0))")" = 0 ]; }
write_of() { node "$root/tests/integration/https-request.mjs" GET "$admin/api/status" | node -e "
  const t=require('fs').readFileSync(0,'utf8'); const w=JSON.parse(t.slice(t.indexOf('\n')+1)).write; console.log($1)"; }
stat_of() { ctl stats | node -e "const s=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }

# config-check against a full server: one transaction per record, every type in it.
"$bin" config-check --config "$config" > "$work/full.out"; rc=$?
check "full server: config-check passes" [ "$rc" -eq 0 ]
check "full server: transaction, chosen from the CapabilityStatement" \
  grep -q "^ok     ehr.write_mode auto: transaction (the EHR advertises transaction and conditional writes" "$work/full.out"
check "full server: each type the connector writes is named with how it is sent (17)" \
  [ "$(grep -Ec "^ +[A-Za-z]+ +in the transaction: conditional create" "$work/full.out")" -eq 17 ]

# config-check against an Epic-like EHR: no transaction or batch; what it will not take is named.
ctl profile single
"$bin" config-check --config "$config" > "$work/single.out"; rc=$?
check "Epic-like EHR: config-check passes" [ "$rc" -eq 0 ]
check "... naming the mode and why" grep -q \
  "^ok     ehr.write_mode auto: single (the EHR advertises neither transaction nor batch" "$work/single.out"
check "... Patient is found by identifier, never created: the EHR does not allow creating it" \
  grep -Eq "^ +Patient +one request: found by identifier, never created \(the EHR does not allow create of Patient\)$" "$work/single.out"
check "... a type it does not list is named" \
  grep -Eq "^ +ChargeItem +not sent \(the EHR's CapabilityStatement does not list ChargeItem\)$" "$work/single.out"
check "... Observation goes one request at a time, amendments by id" \
  grep -Eq "^ +Observation +one request: created once .*; amendments update the id the ledger names$" "$work/single.out"
check "config-check only read /metadata: nothing else was asked of the EHR" [ "$(stat_of \
  "Object.entries(s.interactions).filter(([k]) => k !== 'capabilities').reduce((a, [, n]) => a + n, 0)")" -eq 0 ]
ctl profile full

# The daemon meets an EHR that stops taking transactions.
start_daemon "$config"
delivered() { [ "$(count_of delivered)" -eq "$1" ] && settled; }
read_at_start() { [ "$(write_of 'w && w.mode')" = transaction ]; }
check "the daemon read the CapabilityStatement at start: transaction (admin API)" wait_for 20 read_at_start
check "... deliverable, every type sent" [ "$(write_of 'w.deliverable && w.types.every(t => t.sent) && w.types.length')" = 17 ]
check "... the EHR's software named" [ "$(write_of 'w.ehr_software.length > 0')" = true ]
check "... and the strategy is in the sync log" \
  grep -q '"event":"write_strategy".*ehr.write_mode auto: transaction (the EHR advertises transaction' "$d/sync-log.jsonl"
drop first A 4
check "full server: the first batch (12 records) is delivered" wait_for 60 delivered 12
ctl profile batch
refused_before=$(stat_of 's.refused.transaction||0')
drop second B 4
refused() { grep -q '"event":"write_refused"' "$d/sync-log.jsonl"; }
check "batch-only EHR: the refusal is logged as write_refused" wait_for 30 refused
check "... naming the status and the EHR's issue type" \
  grep -q '"event":"write_refused".*HTTP 405 not-supported: the EHR does not take records written this way' "$d/sync-log.jsonl"
sleep 3  # the pause doubles while refused: a few rounds of asking
refusals=$(( $(stat_of 's.refused.transaction||0') - refused_before ))
check "... asked again, but not per record ($refusals refused transactions for 12 records)" [ "$refusals" -ge 1 -a "$refusals" -le 8 ]
check "... nothing is dead-lettered" [ "$(count_of dead)" -eq 0 ]
check "... counted in the metrics" eval 'node "$root/tests/integration/https-request.mjs" GET "$admin/metrics" |
  grep -Eq "^migraine_write_refusals_total [1-9]"'

batch_mode() { [ "$(write_of 'w && w.mode + " " + w.deliverable')" = "batch true" ]; }
check "... it reads the CapabilityStatement again: batch" wait_for 40 batch_mode
check "... and logs the change" grep -q '"event":"write_strategy".*auto: batch (the EHR advertises batch, not transaction)' "$d/sync-log.jsonl"
check "the plan change costs no dead letter: all 24 are delivered, by itself" wait_for 90 delivered 24
check "... none dead" [ "$(count_of dead)" -eq 0 ]
check "... each once at the EHR (24 encounters)" [ "$(ctl count Encounter)" -eq 24 ]
check "... the second 12 in batch Bundles" [ "$(stat_of 's.interactions.batch||0')" -gt 0 ]

# The EHR becomes Epic-like: one request per resource; patients are its own, found by MRN.
ctl profile single
refused_before=$(stat_of 'Object.values(s.refused).reduce((a, n) => a + n, 0)')
drop third C 2
held_for_patient() { grep -q '"event":"held".*waits for the patient at the EHR: no Patient with the clinic.s MRN yet' "$d/sync-log.jsonl"; }
check "single: a record whose patient the EHR does not have is held, naming why" wait_for 60 held_for_patient
check "... not dead" [ "$(count_of dead)" -eq 0 ]
node "$root/tests/integration/make-records.mjs" --patients 2 --prefix C --ehr-owned > "$work/c-patients.ndjson"
ctl preload "$work/c-patients.ndjson" > /dev/null
check "once the EHR has the patients, their records go on by themselves" wait_for 90 delivered 30
check "... none dead" [ "$(count_of dead)" -eq 0 ]
single_mode() { [ "$(write_of 'w && w.mode')" = single ]; }
check "... the strategy shown is single" wait_for 30 single_mode
check "... and status (which reads the store) says so, naming what is left out" \
  grep -q "^writing to the EHR: single (the EHR advertises neither transaction nor batch); left out: .*MedicationAdministration" \
  <("$bin" status --config "$config")
check "... what the EHR will not take is named in the sync log" \
  grep -q '"event":"delivered","record_id":"C-P-0".*left out: .*MedicationAdministration: the EHR does not allow create of MedicationAdministration' "$d/sync-log.jsonl"
check "... no Encounter created where the EHR forbids it (still 24)" [ "$(ctl count Encounter)" -eq 24 ]
check "... the doses, charges and reactions it will not take are in a note, one per procedure and follow-up (4)" \
  [ "$(ctl count DocumentReference)" -eq 4 ]
check "... said so in the sync log" \
  grep -q '"event":"delivered","record_id":"C-P-0".*MedicationAdministration: the EHR does not allow create of MedicationAdministration; folded into a DocumentReference note' "$d/sync-log.jsonl"
check "... the procedures are there, once each (10)" [ "$(ctl count Procedure)" -eq 10 ]
refused_after=$(stat_of 'Object.values(s.refused).reduce((a, n) => a + n, 0)')
check "... refused along the way: the batches that told it the EHR changed, nothing per resource" \
  [ "$(stat_of "Object.keys(s.refused).filter(k => !['transaction','batch'].includes(k)).length")" -eq 0 ]
echo "  (refusals while the EHR changed under the daemon: $((refused_after - refused_before)))"
stop_daemon

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
